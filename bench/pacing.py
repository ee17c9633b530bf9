"""What the throughput benchmarks measure a call log with (rates, windows), and the
in-process moto they run against."""

from __future__ import annotations

import bisect
import contextlib
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Final

from bench.report import Goal, Row, ratio
from devstack.testkit import atomic_dynamodb_writes
from warmgate.adapters.aws import reset_session
from warmgate.adapters.budget import DEFAULT_BURST

VENDOR_LIMIT: Final = 240  # requests per minute per API key (contract §1)
BURST: Final = DEFAULT_BURST  # as the worker uses it


def vendor_limit_row(label: str, calls: int, baseline: float = VENDOR_LIMIT) -> Row:
    """Vendor calls counted in one (scaled) minute, held to the vendor's limit."""
    return Row(
        label,
        calls,
        "",
        baseline=baseline,
        ratio=ratio(calls, baseline),
        goal=Goal("<=", VENDOR_LIMIT),
    )


@dataclass(frozen=True)
class Window:
    calls: int
    scaled_seconds: float

    @property
    def per_minute(self) -> float:
        return self.calls / self.scaled_seconds * 60 if self.scaled_seconds > 0 else 0.0


def steady_state(times: Sequence[float], burst: int, scale: float) -> Window:
    """Calls after the initial burst, over the scaled time from the burst's last call to the
    last call. `times` are wall-clock seconds, sorted. The burst is the bucket's initial content,
    spent at once; leaving it out leaves the rate the refill alone allows."""
    if len(times) <= burst:
        return Window(0, 0.0)
    start = times[burst - 1] if burst > 0 else times[0]
    return Window(len(times) - burst, (times[-1] - start) * scale)


def busiest_window(times: Sequence[float], window: float) -> int:
    """The most of `times` (sorted) in any closed interval [t, t + window]."""
    return max((bisect.bisect_right(times, t + window) - i for i, t in enumerate(times)), default=0)


def first_minute(times: Sequence[float], scale: float) -> int:
    """Calls within the first scaled minute from the first call (at most per_minute if safe)."""
    if not times:
        return 0
    end = times[0] + 60 / scale
    return sum(1 for t in times if t < end)


def epoch_seconds(iso_time: str) -> float:
    """The sandbox's call-log time (`2024-05-01T12:00:00.000000Z`) as epoch seconds."""
    return datetime.fromisoformat(iso_time.replace("Z", "+00:00")).timestamp()


@contextlib.contextmanager
def in_process_aws() -> Iterator[None]:
    """moto in this process, DynamoDB's write atomicity restored for the threads.

    In-process rather than a moto server: a botocore call over loopback HTTP costs this process
    about twice the CPU of one moto intercepts (no urllib3, no reconnect per call: werkzeug
    closes every connection), and this benchmark is about pacing, not CPU: the two workers
    must be able to go faster than the budget lets them, even on a small shared machine."""
    from moto import mock_aws

    # moto intercepts through a botocore hook that a session copies when it is made: warmgate's
    # session, if an earlier benchmark made it before moto was imported, would reach past the
    # mock to AWS itself. A fresh one inside, and none of this one's clients left behind.
    reset_session()
    try:
        with atomic_dynamodb_writes(), mock_aws():
            yield
    finally:
        reset_session()
