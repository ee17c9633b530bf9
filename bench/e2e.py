"""End to end on the local stack (devstack.stack.LocalStack): webhook accepted → vendor start
call issued, per mailbox.

Each mailbox goes the production way: POST /mailboxes through the local API (OnboardingFunction
issues the consent link), the sandbox plays the owner consenting, Mailivery's campaign.pending
webhook reaches WebhookFunction over HTTP, WorkQueue (moto) carries it, the stack's SQS poller
invokes WorkerFunction, which re-reads the campaign and calls start-warmup.

- accepted: when WebhookFunction logs "webhook accepted" for the campaign, i.e. once SQS took
  the message and just before the 202 (read from the handlers' output as it is written);
- start issued: the sandbox's log time of PATCH /campaigns/{id}/start-warmup.

Baseline (same run, same stack): the same latency with one mailbox in flight at a time
(consent, wait for its start, next). The measured run then offers consents at a steady rate,
as owners click at their own pace; the ratio is what concurrency and queueing add.

The stack runs the vendor budget at real time (240/min), which would make this a slower copy
of the throughput benchmark; here the budget and the sandbox's limit are raised to 6,000/min
(the most Settings accepts) so the figure is the pipeline's own latency. The onboarding calls
(setup) happen before any measurement.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, Final, TextIO, cast

import httpx

from bench.report import Row, Table, median, percentile, ratio
from bench.throughput import epoch_seconds

RAISED_LIMIT: Final = 6000  # Settings' maximum for MAILIVERY_REQUESTS_PER_MINUTE
BUDGETED_FUNCTIONS: Final = ("OnboardingFunction", "WorkerFunction")
START_SUFFIX: Final = "/start-warmup"


class LogTap(io.TextIOBase):
    """The handlers' stdout: notes when each campaign's webhook was accepted and its start call
    answered (from the Powertools JSON lines), and discards the rest."""

    def __init__(self) -> None:
        super().__init__()
        self._buffer = ""
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self.accepted: dict[str, float] = {}
        self.started: dict[str, float] = {}

    def writable(self) -> bool:
        return True

    def write(self, text: str) -> int:
        now = time.time()
        with self._lock:
            self._buffer += text
            *lines, self._buffer = self._buffer.split("\n")
            for line in lines:
                self._note(line, now)
        return len(text)

    def _note(self, line: str, now: float) -> None:
        if '"webhook accepted"' not in line and START_SUFFIX not in line:
            return
        try:
            record = json.loads(line)
        except ValueError:
            return
        campaign_id = str(record.get("campaign_id"))
        if record.get("message") == "webhook accepted":
            self.accepted.setdefault(campaign_id, now)
        elif record.get("message") == "mailivery call" and str(record.get("path", "")).endswith(
            START_SUFFIX
        ):
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


def run(*, quick: bool) -> Table:
    from devstack.stack import LocalStack, StackOptions

    mailboxes = 40 if quick else 200
    sequential = 5 if quick else 10
    rate = 10.0  # consents per second, below what one process running every handler can take
    tap = LogTap()
    table = Table(
        "e2e",
        f"End to end on the local stack: webhook accepted → start-warmup issued, {mailboxes} "
        f"mailboxes at {rate:g} consents/s",
    )
    options = StackOptions(
        schedule_seconds=3600,  # the reconciler stays out of the way
        poll_idle_seconds=0.1,  # the stack's default: an idle poller looks again after 100 ms
        # write/flush are all redirect_stdout and logging use of it (as devstack's own stream)
        function_stdout=cast(TextIO, tap),
    )
    with LocalStack(options) as stack, tapped_logger(tap):
        for logical_id in BUDGETED_FUNCTIONS:
            function = stack.functions[logical_id]
            function.environment["MAILIVERY_REQUESTS_PER_MINUTE"] = str(RAISED_LIMIT)
            function.load()  # re-import: settings are read at import
        with (
            stack.sandbox_control() as control,
            httpx.Client(base_url=stack.api_url, timeout=30) as api,
        ):
            control.set_rate_limit(RAISED_LIMIT)
            urls = []
            for n in range(sequential + mailboxes):
                response = api.post(
                    "/mailboxes",
                    json={
                        "email": f"e2e{n:04d}@contoso.com",
                        "first_name": "E2e",
                        "requested_by": "bench",
                    },
                )
                response.raise_for_status()
                urls.append(str(response.json()["consent_url"]))

            # Baseline: one mailbox in flight at a time.
            baseline_ids = []
            for url in urls[:sequential]:
                campaign_id = str(control.consent(url=url)["campaign"]["id"])
                baseline_ids.append(campaign_id)
                tap.wait_started({campaign_id}, timeout=30)

            # Measured: consents at a steady rate, whatever the stack is doing.
            measured_ids = []
            began = time.monotonic()
            for n, url in enumerate(urls[sequential:]):
                delay = began + n / rate - time.monotonic()
                if delay > 0:
                    time.sleep(delay)
                measured_ids.append(str(control.consent(url=url)["campaign"]["id"]))
            offered_s = time.monotonic() - began
            finished = tap.wait_started(set(measured_ids), timeout=60 + mailboxes / rate)
            calls = control.calls()
            deliveries = control.webhook_deliveries(type="campaign.pending")

    unloaded = latencies(baseline_ids, tap.accepted, calls)
    loaded = latencies(measured_ids, tap.accepted, calls)
    if not unloaded or not loaded:
        raise RuntimeError("no start-warmup call was observed; is the local stack working?")
    reference = median(unloaded) * 1000
    for label, q in (("p50", 50.0), ("p95", 95.0), ("p99", 99.0)):
        value = percentile(loaded, q) * 1000
        table.add(
            Row(
                f"accepted → start issued, {label}",
                value,
                "ms",
                baseline=reference,
                ratio=ratio(value, reference),
            )
        )
    table.add(
        Row(
            "mailboxes started / measured",
            len(loaded),
            "",
            baseline=mailboxes,
            ratio=ratio(len(loaded), mailboxes),
        )
    )
    failed_deliveries = sum(1 for d in deliveries if d.get("status_code") != 202)
    table.add(Row("webhook deliveries not answered 202", failed_deliveries, ""))
    table.notes += [
        f"baseline = median of {len(unloaded)} mailboxes run one at a time in the same stack "
        f"(no queueing); measured = {mailboxes} consents offered at {rate:g}/s "
        f"({offered_s:.1f} s), all started: {finished}",
        "the stack runs every handler in one process, one invocation at a time, and polls an "
        "idle queue every 100 ms, so these are a local pipeline's latencies, not Lambda's "
        "(no cold starts, no batching window: WorkerFunction's MaximumBatchingWindowInSeconds "
        "20 is not emulated and would add up to 20 s in AWS)",
        f"vendor budget and sandbox limit raised to {RAISED_LIMIT}/min for this benchmark",
    ]
    table.extra = {
        "mailboxes": mailboxes,
        "rate_per_s": rate,
        "unloaded_ms": [x * 1000 for x in unloaded],
        "loaded_ms": [x * 1000 for x in loaded],
    }
    return table
