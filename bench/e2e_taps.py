"""The taps bench.e2e measures through: the handlers' output (when each campaign's webhook was
accepted and its start issued), the functions' invocations, wall time and AWS calls, snapshots
between phases priced by bench.cost, and the hooks that cut re-enqueue delays."""

from __future__ import annotations

import io
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final

from bench.aws_calls import AwsCalls
from bench.cost import FunctionUsage, Usage
from bench.pacing import epoch_seconds

START_SUFFIX: Final = "/start-warmup"


class LogTap(io.TextIOBase):
    """The handlers' stdout: notes when each campaign's webhook was accepted and its start call
    answered (from the Powertools JSON lines), counts the bytes and Mailivery calls of the
    function writing, and discards the rest."""

    def __init__(self, current: Callable[[], str | None]) -> None:
        super().__init__()
        self._current = current  # the function writing (this thread's invocation)
        self._buffer = ""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.accepted: dict[str, float] = {}
        self.started: dict[str, float] = {}
        self.bytes: Counter[str] = Counter()
        self.mailivery_calls: Counter[str] = Counter()

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        now = time.time()
        function = self._current() or "other"
        with self._lock:
            self.bytes[function] += len(text.encode())
            self._buffer += text
            *lines, self._buffer = self._buffer.split("\n")
            for line in lines:
                self._note(line, now, function)
        return len(text)

    def _note(self, line: str, now: float, function: str) -> None:
        if '"webhook accepted"' not in line and '"mailivery call"' not in line:
            return
        try:
            record = json.loads(line)
        except ValueError:
            return
        campaign_id = str(record.get("campaign_id"))
        if record.get("message") == "webhook accepted":
            self.accepted.setdefault(campaign_id, now)
        elif record.get("message") == "mailivery call":
            self.mailivery_calls[function] += 1
            if str(record.get("path", "")).endswith(START_SUFFIX):
                self.started.setdefault(campaign_id, now)
                self._changed.notify_all()

    def wait_started(self, campaign_ids: set[str], timeout: float) -> bool:
        deadline = time.monotonic() + timeout
        with self._lock:
            while not campaign_ids <= self.started.keys():
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return False
                self._changed.wait(remaining)
            return True


@contextmanager
def registered(session: Any, event: str, handler: Callable[..., Any]) -> Iterator[None]:
    """`handler` on `session`'s `event` while the block runs."""
    session.register(event, handler)
    try:
        yield
    finally:
        session.unregister(event, handler)


@contextmanager
def tapped_logger(tap: LogTap) -> Iterator[None]:
    """Powertools' handler keeps the stream it was created with (the process's stdout when
    warmgate.observability was first imported), so it is pointed at the tap explicitly."""
    import logging

    from warmgate.observability import logger

    handler = logger.registered_handler
    if not isinstance(handler, logging.StreamHandler):
        yield
        return
    previous = handler.setStream(tap)
    try:
        yield
    finally:
        handler.setStream(previous)


@dataclass
class Meter:
    """Per function: invocations and their wall time, with the AWS calls made inside each one
    scoped to the function (bench.aws_calls)."""

    calls: AwsCalls
    invocations: Counter[str] = field(default_factory=Counter)
    seconds: dict[str, float] = field(default_factory=dict)
    _local: threading.local = field(default_factory=threading.local)

    def current(self) -> str | None:
        return getattr(self._local, "function", None)

    def wrap(self, function: Any) -> None:
        """Replace `function.invoke` (a devstack LocalFunction) with a measured one."""
        invoke = function.invoke
        name = function.logical_id

        def measured(event: Any, context: Any = None) -> Any:
            self._local.function = name
            started = time.monotonic()
            try:
                with self.calls.scope(name):
                    return invoke(event, context)
            finally:
                self.seconds[name] = self.seconds.get(name, 0.0) + time.monotonic() - started
                self.invocations[name] += 1
                self._local.function = None

        function.invoke = measured


@dataclass(frozen=True)
class Snapshot:
    invocations: Counter[str]
    seconds: dict[str, float]
    log_bytes: Counter[str]
    mailivery_calls: Counter[str]
    aws_calls: Counter[str]
    read_units: float
    write_units: float


def snapshot(meter: Meter, tap: LogTap) -> Snapshot:
    total = meter.calls.total()
    return Snapshot(
        Counter(meter.invocations),
        dict(meter.seconds),
        Counter(tap.bytes),
        Counter(tap.mailivery_calls),
        Counter(total.calls),
        total.read_units,
        total.write_units,
    )


def usage_between(
    before: Snapshot, after: Snapshot, onboardings: int, memory_gb: dict[str, float]
) -> Usage:
    functions = {
        name: FunctionUsage(
            invocations=after.invocations[name] - before.invocations[name],
            seconds=after.seconds.get(name, 0.0) - before.seconds.get(name, 0.0),
            mailivery_calls=after.mailivery_calls[name] - before.mailivery_calls[name],
            log_bytes=after.log_bytes[name] - before.log_bytes[name],
        )
        for name in after.invocations
    }
    return Usage(
        onboardings=onboardings,
        functions=functions,
        aws_calls=dict(after.aws_calls - before.aws_calls),
        read_units=after.read_units - before.read_units,
        write_units=after.write_units - before.write_units,
        memory_gb=memory_gb,
    )


def latencies(
    campaign_ids: list[str], accepted: dict[str, float], calls: list[dict[str, Any]]
) -> list[float]:
    """Seconds from accepted to the vendor's log of the start call, per campaign that has both."""
    started: dict[str, float] = {}
    for call in calls:
        path = str(call["path"])
        if call["method"] == "PATCH" and path.endswith(START_SUFFIX) and call["status"] == 200:
            campaign_id = path.removesuffix(START_SUFFIX).rsplit("/", 1)[-1]
            started.setdefault(campaign_id, epoch_seconds(call["time"]))
    return [started[c] - accepted[c] for c in campaign_ids if c in started and c in accepted]


class PhaseClock:
    """Wall time per phase, for the JSON (what a --quick run spends where)."""

    def __init__(self) -> None:
        self._last = time.monotonic()
        self.laps: dict[str, float] = {}

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self.laps[name] = round(now - self._last, 2)
        self._last = now


class DeferCap:
    """A botocore hook on SendMessage: while `on`, a re-enqueue delay is cut to `cap` seconds.
    Registered before the functions load (a client copies its session's hooks when made)."""

    def __init__(self, cap: int) -> None:
        self.cap = cap
        self.on = False

    def __call__(self, **kwargs: Any) -> None:
        params = kwargs["params"]
        if self.on and params.get("DelaySeconds", 0) > self.cap:
            params["DelaySeconds"] = self.cap
