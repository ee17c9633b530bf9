"""What a local stack is started with (`StackOptions`), and the local-only tuning it implies:
the fixed webhook token and the vendor's rate limit scaled to a faster clock."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final, TextIO

from devstack.local_aws import REGION
from warmgate.adapters.budget import DEFAULT_BURST

# Fixed rather than generated: the sample events (events/webhook-*.json) carry this token, so
# `invoke WebhookFunction -e events/webhook-campaign-pending.json` is accepted. Local only.
LOCAL_WEBHOOK_TOKEN: Final = "local-webhook-token"  # noqa: S105 - local only, by design
VENDOR_REQUESTS_PER_MINUTE: Final = 240  # Mailivery's limit per API key (contract §1)


@dataclass(frozen=True)
class StackOptions:
    api_port: int = 0  # 0 = any free port (make run uses 3000, like sam local start-api)
    sandbox_port: int = 0
    moto_port: int = 0
    region: str = REGION
    parameter_overrides: Mapping[str, str] = field(default_factory=dict)
    env_vars_file: Path | None = None
    # Local-only speed-up: WorkQueue's 210 s makes a failing message reach the DLQ after ~17 min;
    # tests use 1-2 s so the redrive happens within seconds. Applied to every queue.
    visibility_timeout_seconds: int | None = None
    # Local-only speed-up: every SQS trigger's MaximumBatchingWindowInSeconds (None: the
    # template's). Tests use 0: the one-invocation-at-a-time stack then waits on no window.
    batching_window_seconds: int | None = None
    schedule_seconds: float = 60.0
    webhook_token: str = LOCAL_WEBHOOK_TOKEN
    # Where handlers' stdout (Powertools JSON logs, EMF) goes; None = this process's stdout.
    function_stdout: TextIO | None = None
    poll_idle_seconds: float = 0.1
    # Where each event on the bus is printed as one line (make run); None: not printed.
    event_lines: TextIO | None = None
    # Local-only, for load tests: the vendor's minute lasts 60 / time_scale s. The sandbox's
    # rate-limit window and storms run on that clock, and every function's request budget is
    # raised to match (scaled_requests_per_minute), as bench/throughput.py scales them.
    # Everything else (timeouts, delays, leases, Retry-After) stays in real seconds.
    time_scale: float = 1.0
    # Set for every function after the template's and --env-vars' values: local tuning the
    # template does not declare (SECRET_MAX_AGE_SECONDS, CLAIM_LEASE_SECONDS …).
    function_overrides: Mapping[str, str] = field(default_factory=dict)


def scaled_requests_per_minute(time_scale: float) -> int:
    """MAILIVERY_REQUESTS_PER_MINUTE for a vendor minute of 60 / time_scale s: the budget
    refills (per_minute - burst) a minute, so a refill of (240 - burst) per scaled minute is
    (240 - burst) * time_scale per real one; its burst stays the same number of tokens. Any
    window of 60 / time_scale s then admits at most 240 calls, as a real minute does."""
    return round((VENDOR_REQUESTS_PER_MINUTE - DEFAULT_BURST) * time_scale) + DEFAULT_BURST
