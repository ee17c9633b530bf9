"""What 1,000 onboardings cost to run: requests counted on the local stack (bench.e2e), priced
at AWS's public on-demand list prices for eu-west-1.

The prices are the list prices as this was written (November 2026, from what the author knew
of AWS's public price pages), not read from AWS: check them before relying on a figure. No free
tier is applied. Pure functions only; bench.e2e does the counting.

Per onboarding, a scenario counts: each function's invocations, their duration (measured wall
time on the local stack, plus an assumed round trip per Mailivery call, since the sandbox
answers in about a millisecond and Lambda bills the wait), API Gateway requests (the onboarding
and webhook invocations), SQS requests (the functions' own, counted, plus the event source
mapping's receive and delete per worker batch), DynamoDB read and write units (bench.aws_calls),
Secrets Manager calls, EventBridge events and log bytes (no X-Ray: tracing is off).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

from bench.report import Row

REGION: Final = "eu-west-1"
PRICES_AS_OF: Final = "2026-11"
PER_MILLION: Final = 1e-6
# USD, on-demand list prices for eu-west-1 as known when written: to be checked.
PRICES: Final[dict[str, float]] = {
    "lambda_request": 0.20 * PER_MILLION,
    "lambda_gb_second_arm64": 0.0000133334,
    "http_api_request": 1.11 * PER_MILLION,  # HTTP API, first 300 million a month
    "sqs_request": 0.40 * PER_MILLION,  # standard queue, per 64 KiB chunk
    # On-demand, after the November 2024 price cut (half the earlier $1.4135 / $0.283).
    "dynamodb_wru": 0.7068 * PER_MILLION,
    "dynamodb_rru": 0.1415 * PER_MILLION,
    "secrets_manager_call": 0.05 / 10_000,
    "eventbridge_event": 1.00 * PER_MILLION,  # custom events (PutEvents), as Scheduler invocations
    "logs_ingested_gb": 0.57,  # CloudWatch Logs, standard class
}
# Assumed, not measured: Mailivery's latency from eu-west-1 is unknown; Lambda bills the wait.
MAILIVERY_ROUND_TRIP_S: Final = 0.3
# START, END and REPORT: what Lambda itself writes to each invocation's log stream.
LAMBDA_LOG_LINES_BYTES: Final = 330
ONBOARDINGS: Final = 1000


@dataclass
class FunctionUsage:
    invocations: int = 0
    seconds: float = 0.0  # local wall time, summed
    mailivery_calls: int = 0
    log_bytes: int = 0


@dataclass
class Usage:
    """What `onboardings` onboardings used, counted; `per_onboarding` scales it."""

    onboardings: int
    functions: dict[str, FunctionUsage] = field(default_factory=dict)
    aws_calls: Mapping[str, int] = field(default_factory=dict)  # "service.Operation" → count
    read_units: float = 0.0
    write_units: float = 0.0
    memory_gb: Mapping[str, float] = field(default_factory=dict)  # function → MemorySize / 1024
    http_api_functions: tuple[str, ...] = ("OnboardingFunction", "WebhookFunction")
    sqs_triggered: tuple[str, ...] = ("WorkerFunction",)

    def calls(self, service: str, operation: str | None = None) -> int:
        prefix = f"{service}." if operation is None else f"{service}.{operation}"
        return sum(n for name, n in self.aws_calls.items() if name.startswith(prefix))

    def invocations(self, names: tuple[str, ...] | None = None) -> int:
        return sum(f.invocations for n, f in self.functions.items() if names is None or n in names)

    def gb_seconds(self) -> float:
        return sum(
            self.memory_gb.get(name, 0.5) * (f.seconds + f.mailivery_calls * MAILIVERY_ROUND_TRIP_S)
            for name, f in self.functions.items()
        )

    def sqs_requests(self) -> int:
        # The event source mapping: one ReceiveMessage and one DeleteMessageBatch per batch.
        return self.calls("sqs") + 2 * self.invocations(self.sqs_triggered)

    def log_gb(self) -> float:
        written = sum(f.log_bytes for f in self.functions.values())
        return (written + LAMBDA_LOG_LINES_BYTES * self.invocations()) / 1e9


@dataclass(frozen=True)
class Component:
    name: str
    quantity: float  # per 1,000 onboardings
    unit: str
    dollars: float  # per 1,000 onboardings


def components(usage: Usage) -> list[Component]:
    """Cost per component for ONBOARDINGS onboardings, scaled from what `usage` counted."""
    scale = ONBOARDINGS / usage.onboardings
    invocations = usage.invocations() * scale
    gb_s = usage.gb_seconds() * scale
    items = [
        ("Lambda requests", invocations, "", PRICES["lambda_request"]),
        ("Lambda duration (arm64)", gb_s, "GB-s", PRICES["lambda_gb_second_arm64"]),
        (
            "API Gateway HTTP API requests",
            usage.invocations(usage.http_api_functions) * scale,
            "",
            PRICES["http_api_request"],
        ),
        ("SQS requests", usage.sqs_requests() * scale, "", PRICES["sqs_request"]),
        ("DynamoDB write units", usage.write_units * scale, "WRU", PRICES["dynamodb_wru"]),
        ("DynamoDB read units", usage.read_units * scale, "RRU", PRICES["dynamodb_rru"]),
        (
            "Secrets Manager calls",
            usage.calls("secretsmanager") * scale,
            "",
            PRICES["secrets_manager_call"],
        ),
        (
            "EventBridge events",
            usage.calls("events") * scale,
            "",
            PRICES["eventbridge_event"],
        ),
        ("CloudWatch Logs ingested", usage.log_gb() * scale, "GB", PRICES["logs_ingested_gb"]),
    ]
    return [
        Component(name, quantity, unit, quantity * price) for name, quantity, unit, price in items
    ]


def per_invocation_dollars(usage: Usage, function: str) -> float:
    """What one more invocation of `function` costs beyond its work: the request,
    its log lines (as many as `usage` counted per invocation), and for an SQS-triggered one
    the batch's receive and delete."""
    counted = usage.functions[function]
    log_bytes = counted.log_bytes / max(1, counted.invocations) + LAMBDA_LOG_LINES_BYTES
    sqs = 2 * PRICES["sqs_request"] if function in usage.sqs_triggered else 0.0
    return PRICES["lambda_request"] + log_bytes / 1e9 * PRICES["logs_ingested_gb"] + sqs


def total_rows(happy: Usage, worst: Usage) -> list[Row]:
    """The totals: the happy path's dollars per 1,000 onboardings, the worst case's beside it
    (same run, other scenario)."""
    happy_total = sum(c.dollars for c in components(happy))
    worst_total = sum(c.dollars for c in components(worst))
    return [
        Row(
            "happy path, $ per 1,000 onboardings (baseline: worst case)",
            happy_total,
            "",
            baseline=worst_total,
            ratio=worst_total / happy_total if happy_total else None,
        )
    ]


def cost_details(happy: Usage, worst: Usage) -> list[str]:
    """A table per component: quantity and dollars per 1,000 onboardings, both scenarios."""
    header = f"{'component':<44} {'happy path':>22} {'worst case':>22}"
    lines = [header, "-" * len(header)]
    for mine, other in zip(components(happy), components(worst), strict=True):
        lines.append(
            f"{mine.name:<44} {_quantity(mine):>12} ${mine.dollars:>9.5f}"
            f" {_quantity(other):>12} ${other.dollars:>9.5f}"
        )
    lines.append(
        f"{'total':<44} {'':>12} ${sum(c.dollars for c in components(happy)):>9.5f}"
        f" {'':>12} ${sum(c.dollars for c in components(worst)):>9.5f}"
    )
    return lines


def _quantity(component: Component) -> str:
    value = component.quantity
    text = f"{value:,.0f}" if value >= 100 else f"{value:.3g}"
    return f"{text} {component.unit}".strip()


def cost_notes(happy: Usage, worst: Usage) -> list[str]:
    per = {
        name: f"{f.invocations / happy.onboardings:.2f}"
        for name, f in sorted(happy.functions.items())
    }
    return [
        f"prices: AWS on-demand list prices for {REGION} as of {PRICES_AS_OF} as known when "
        "written (bench/cost.py), no free tier: to be checked against AWS's price pages",
        f"happy path, invocations per onboarding: {per}; DynamoDB per onboarding "
        f"{happy.write_units / happy.onboardings:.1f} WRU, "
        f"{happy.read_units / happy.onboardings:.1f} RRU",
        f"Lambda duration = wall time on this machine + {MAILIVERY_ROUND_TRIP_S} s per Mailivery "
        "call (assumed: the sandbox answers in ~1 ms, Mailivery's real latency is unknown), "
        "at each function's MemorySize; logs = the handlers' lines + "
        f"{LAMBDA_LOG_LINES_BYTES} bytes of START/END/REPORT per invocation",
        "SQS = the functions' own requests + one ReceiveMessage and one DeleteMessageBatch per "
        "worker batch; not per onboarding: the event source mapping's idle long polls, the "
        "reconciler's schedule (EventBridge Scheduler, 4,320 a month) and run, the secrets' "
        "re-reads (one per function instance per SECRET_MAX_AGE_SECONDS), Init of cold starts",
        f"Mailivery calls per onboarding: happy {mailivery_calls(happy):.1f}, "
        f"worst {mailivery_calls(worst):.1f}",
    ]


def mailivery_calls(usage: Usage) -> float:
    return sum(f.mailivery_calls for f in usage.functions.values()) / usage.onboardings


def usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "onboardings": usage.onboardings,
        "functions": {n: vars(f) for n, f in usage.functions.items()},
        "aws_calls": dict(usage.aws_calls),
        "read_units": usage.read_units,
        "write_units": usage.write_units,
    }
