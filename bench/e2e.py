"""End to end on the local stack (devstack.stack.LocalStack): webhook accepted → vendor start
call issued, per mailbox, with WorkerFunction's batching window emulated; and what each
onboarding costs in requests, priced by bench.cost.

Each mailbox goes the production way: POST /mailboxes through the local API (OnboardingFunction
issues the consent link), the sandbox plays the owner consenting, Mailivery's campaign.pending
webhook reaches WebhookFunction over HTTP, WorkQueue (moto) carries it, the stack's SQS poller
gathers a batch for up to MaximumBatchingWindowInSeconds (template.yaml) and invokes
WorkerFunction, which re-reads the campaign and calls start-warmup.

- accepted: when WebhookFunction logs "webhook accepted" for the campaign, i.e. once SQS took
  the message and just before the 202 (read from the handlers' output as it is written);
- start issued: the sandbox's log time of PATCH /campaigns/{id}/start-warmup.

Phases, one stack:
  one at a time  each mailbox consents only once the previous one started: a lone webhook
                 waits out the whole batching window (the issue's goal: p95 ≤ 2 s);
  under load     consents offered at a steady 10/s, as owners click at their own pace, with
                 the template's window and (not with --quick) with other windows, for the
                 choice of window: latency against worker invocations per message;
  worst case     10 % of Mailivery calls answered 5xx and every start refused 3 times before
                 it is accepted (the sandbox refuses them); the worker's re-enqueue delays are
                 cut to 0 (a botocore hook on SendMessage) and the window to 0, so the retries
                 that take minutes in AWS, one invocation each, take seconds here.
The requests of the first phase (the happy path, at a pace where no webhooks share a batch)
and of the worst case are counted (AWS calls by botocore event hooks, invocations, their wall
time, log bytes) for bench.cost.

The vendor budget and the sandbox's limit are raised to 6,000/min (the most Settings accepts):
at 240/min this would only repeat the throughput benchmark. A first onboarding warms every
function (clients, secrets) before anything is measured.
"""

from __future__ import annotations

import io
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any, Final, TextIO, cast

import httpx

from bench.aws_calls import AwsCalls
from bench.cost import (
    ONBOARDINGS,
    FunctionUsage,
    Usage,
    cost_details,
    per_invocation_dollars,
    total_rows,
)
from bench.pacing import epoch_seconds
from bench.report import Goal, Row, Table, median, percentile, ratio
from warmgate.adapters import aws

RAISED_LIMIT: Final = 6000  # Settings' maximum for MAILIVERY_REQUESTS_PER_MINUTE
BUDGETED_FUNCTIONS: Final = ("OnboardingFunction", "WorkerFunction")
WORKER: Final = "WorkerFunction"
START_SUFFIX: Final = "/start-warmup"
LONE_P95_GOAL_MS: Final = 2000.0
RATE: Final = 10.0  # consents per second under load, below what one process can take
REFUSALS: Final = 3  # worst case: start refused this many times before it is accepted
VENDOR_5XX_RATE: Final = 0.10
DEFER_CAP_SECONDS: Final = 0
SETTLE_TIMEOUT_S: Final = 60.0
VISIBILITY_TIMEOUT_S: Final = 5


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


@dataclass
class Run:
    """The stack, its clients and the measurement taps, for the phases below."""

    stack: Any
    api: httpx.Client
    control: Any
    tap: LogTap
    meter: Meter
    worker_source: Any
    counter: Counter[str] = field(default_factory=Counter)

    def email(self, prefix: str) -> str:
        self.counter[prefix] += 1
        return f"{prefix}{self.counter[prefix]:04d}@contoso.com"

    def onboard(self, email: str) -> str:
        """POST /mailboxes as an integrator would: a 5xx (Mailivery failed) is asked again."""
        for _ in range(10):
            response = self.api.post(
                "/mailboxes", json={"email": email, "first_name": "E2e", "requested_by": "bench"}
            )
            if response.status_code in (200, 201):
                return str(response.json()["consent_url"])
            if response.status_code not in (502, 503):
                response.raise_for_status()
        raise RuntimeError(f"no consent link for {email} after 10 attempts")

    def consent(self, url: str) -> str:
        return str(self.control.consent(url=url)["campaign"]["id"])

    def settle(self, timeout: float = SETTLE_TIMEOUT_S) -> None:
        """Until WorkQueue holds nothing (visible, in flight or delayed): every call of the
        phase made and counted."""
        sqs = self.stack.aws.client("sqs")
        url = self.stack.queue_url("WorkQueue")
        deadline = time.monotonic() + timeout
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        while time.monotonic() < deadline:
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)
            if all(int(v) == 0 for v in attributes["Attributes"].values()):
                return
            time.sleep(0.05)
        raise RuntimeError("WorkQueue did not drain")

    def one_at_a_time(self, count: int) -> list[str]:
        ids = []
        for _ in range(count):
            campaign_id = self.consent(self.onboard(self.email("lone")))
            ids.append(campaign_id)
            if not self.tap.wait_started({campaign_id}, timeout=30):
                raise RuntimeError(f"campaign {campaign_id} was not started")
        self.settle()
        return ids

    def under_load(self, count: int, window: int) -> tuple[list[str], int, float]:
        """`count` consents at RATE/s with the given window: (campaign ids, worker
        invocations, seconds the consents took to offer)."""
        self.worker_source.batching_window = window
        urls = [self.onboard(self.email(f"load{window}w")) for _ in range(count)]
        invocations = self.meter.invocations[WORKER]
        ids = []
        began = time.monotonic()
        for n, url in enumerate(urls):
            delay = began + n / RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ids.append(self.consent(url))
        offered = time.monotonic() - began
        if not self.tap.wait_started(set(ids), timeout=60 + count / RATE + window):
            raise RuntimeError("not every campaign under load was started")
        self.settle()
        return ids, self.meter.invocations[WORKER] - invocations, offered

    def worst_case(self, count: int, cap: DeferCap) -> dict[str, int]:
        """`count` onboardings with 10 % vendor 5xx and every start refused REFUSALS times;
        returns how the mailboxes ended (state → count)."""
        emails = [self.email("worst") for _ in range(count)]
        for email in emails:
            self.control.set_connection(email, ok=False, refusals=REFUSALS)
        window, self.worker_source.batching_window = self.worker_source.batching_window, 0
        cap.on = True
        self.control.set_faults(
            error_rate=VENDOR_5XX_RATE, error_statuses=[500, 502, 503], paths=["^/api/v1/"], seed=7
        )
        try:
            for email in emails:
                self.consent(self.onboard(email))
            ended = self._ended(emails)
            self.settle()
        finally:
            self.control.clear_faults()
            cap.on = False
            self.worker_source.batching_window = window
        return ended

    def _ended(self, emails: list[str]) -> dict[str, int]:
        """Once every mailbox is warming or parked: how many of each."""
        table = self.stack.resources["MailboxTable"].ref
        dynamodb = self.stack.aws.client("dynamodb")  # the stack's own client: not counted
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            states = Counter(_state(dynamodb, table, email) for email in emails)
            if set(states) <= {"warming", "start_failed (parked)"}:
                return dict(states)
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worst case did not settle: {dict(states)}")
            time.sleep(0.05)


def _state(dynamodb: Any, table: str, email: str) -> str:
    item = dynamodb.get_item(
        TableName=table, Key={"pk": {"S": f"mailbox#{email}"}}, ConsistentRead=True
    ).get("Item", {})
    state = item.get("state", {}).get("S", "missing")
    return f"{state} (parked)" if item.get("parked", {}).get("BOOL") else state


def run(*, quick: bool) -> list[Table]:
    from devstack.stack import LocalStack, StackOptions

    lone = 3 if quick else 10
    loaded = 20 if quick else 100
    worst = 5 if quick else 20
    other_windows = [] if quick else [0, 5]  # the evidence for the window: a full run
    meter = Meter(AwsCalls())  # entered once the stack made its session
    tap = LogTap(meter.current)
    cap = DeferCap(DEFER_CAP_SECONDS)
    options = StackOptions(
        schedule_seconds=3600,  # the reconciler stays out of the way
        # A record that fails (a re-read that met 5xx at every retry) comes back after this
        # instead of WorkQueue's 1100 s, as it would, much later, in AWS.
        visibility_timeout_seconds=VISIBILITY_TIMEOUT_S,
        poll_idle_seconds=0.1,  # the stack's default: an idle poller looks again after 100 ms
        # write/flush are all redirect_stdout and logging use of it (as devstack's own stream)
        function_stdout=cast(TextIO, tap),
    )
    with (
        LocalStack(options) as stack,
        # The stack starts warmgate's botocore session afresh: the hooks go on that one,
        # and every function is loaded again below so that its clients carry them.
        meter.calls,
        registered(aws.session(), "before-parameter-build.sqs.SendMessage", cap),
        tapped_logger(tap),
        stack.sandbox_control() as control,
        httpx.Client(base_url=stack.api_url, timeout=30) as api,
    ):
        for logical_id, function in stack.functions.items():
            if logical_id in BUDGETED_FUNCTIONS:
                function.environment["MAILIVERY_REQUESTS_PER_MINUTE"] = str(RAISED_LIMIT)
            function.load()  # re-import: settings are read at import, clients made now
        for function in stack.functions.values():
            meter.wrap(function)
        control.set_rate_limit(RAISED_LIMIT)
        source = next(s for s in stack.sqs_sources if s.function.logical_id == WORKER)
        window = source.batching_window
        memory_gb = {n: f.spec.memory_mb / 1024 for n, f in stack.functions.items()}
        run_ = Run(stack, api, control, tap, meter, source)
        phases = PhaseClock()
        source.batching_window = 0  # warm-up: every function run once, its secrets cached
        run_.one_at_a_time(1)
        source.batching_window = window
        phases.lap("start and warm-up")

        before = snapshot(meter, tap)
        lone_ids = run_.one_at_a_time(lone)
        happy = usage_between(before, snapshot(meter, tap), lone, memory_gb)
        phases.lap("one at a time")
        load_ids, load_invocations, offered = run_.under_load(loaded, window)
        phases.lap("under load")

        compared = {}
        for other in other_windows:
            ids, invocations, _ = run_.under_load(loaded, other)
            compared[other] = (ids, invocations)
        source.batching_window = window
        phases.lap("other windows")

        before = snapshot(meter, tap)
        ended = run_.worst_case(worst, cap)
        worst_usage = usage_between(before, snapshot(meter, tap), worst, memory_gb)
        phases.lap("worst case")
        calls = control.calls()
        accepted = dict(tap.accepted)

    latency = latency_table(
        window, lone_ids, load_ids, load_invocations, offered, compared, accepted, calls, loaded
    )
    for other, (ids, invocations) in compared.items():
        extra = (invocations / len(ids) - load_invocations / len(load_ids)) * ONBOARDINGS
        latency.notes.append(
            f"window {other} s instead of {window} s at this load: {extra:+.0f} worker "
            f"invocations per {ONBOARDINGS:,} onboardings, "
            f"{extra * per_invocation_dollars(happy, WORKER):+.4f} $ (requests, X-Ray traces, "
            "their log lines, the batch's receive and delete; bench.cost)"
        )
    cost = Table(
        "cost",
        f"Cost per 1,000 onboardings, eu-west-1 list prices (happy path: {lone} onboardings "
        f"one at a time; worst case: {worst}, each start refused {REFUSALS} times, "
        f"{VENDOR_5XX_RATE:.0%} of Mailivery calls 5xx)",
    )
    cost.rows += total_rows(happy, worst_usage)
    cost.details += cost_details(happy, worst_usage)
    cost.notes += [
        f"worst case: the mailboxes ended {ended} (a start that also met a 5xx can use up "
        "MAX_START_ATTEMPTS and park; a new request would start it)",
        *cost_notes(happy, worst_usage),
    ]
    cost.extra = {"happy": _usage_json(happy), "worst": _usage_json(worst_usage)}
    latency.extra["phase_seconds"] = phases.laps
    return [latency, cost]


def latency_table(
    window: int,
    lone_ids: list[str],
    load_ids: list[str],
    load_invocations: int,
    offered: float,
    compared: dict[int, tuple[list[str], int]],
    accepted: dict[str, float],
    calls: list[dict[str, Any]],
    loaded: int,
) -> Table:
    table = Table(
        "e2e",
        f"End to end on the local stack: webhook accepted → start-warmup issued, batching window "
        f"{window} s emulated (template.yaml)",
    )
    lone_s = latencies(lone_ids, accepted, calls)
    load_s = latencies(load_ids, accepted, calls)
    if not lone_s or not load_s:
        raise RuntimeError("no start-warmup call was observed; is the local stack working?")
    reference = median(lone_s) * 1000
    for label, q in (("p50", 50.0), ("p95", 95.0)):
        table.add(
            Row(
                f"one mailbox at a time, {label}",
                percentile(lone_s, q) * 1000,
                "ms",
                goal=Goal("<=", LONE_P95_GOAL_MS, "ms") if label == "p95" else None,
            )
        )
    for label, q in (("p50", 50.0), ("p95", 95.0), ("p99", 99.0)):
        value = percentile(load_s, q) * 1000
        table.add(
            Row(
                f"{loaded} at {RATE:g}/s, {label}",
                value,
                "ms",
                baseline=reference,
                ratio=ratio(value, reference),
            )
        )
    table.add(
        Row(
            f"{loaded} at {RATE:g}/s, worker invocations per message",
            load_invocations / len(load_ids),
            "",
        )
    )
    for other, (ids, invocations) in compared.items():
        other_s = latencies(ids, accepted, calls)
        table.add(
            Row(
                f"  same load, window {other} s: p95",
                percentile(other_s, 95) * 1000,
                "ms",
                baseline=percentile(load_s, 95) * 1000,
                ratio=ratio(percentile(other_s, 95), percentile(load_s, 95)),
            )
        )
        table.add(
            Row(
                f"  same load, window {other} s: worker invocations per message",
                invocations / len(ids),
                "",
                baseline=load_invocations / len(load_ids),
                ratio=ratio(invocations / len(ids), load_invocations / len(load_ids)),
            )
        )
    table.notes += [
        f"one at a time: {len(lone_s)} mailboxes, each consented once the previous one started, "
        f"so each webhook waits out the {window} s window alone; baseline of the load rows = "
        "their median",
        f"under load: {loaded} consents offered at {RATE:g}/s ({offered:.1f} s); the rows "
        "marked 'same load' repeat it with another window, baseline = the template's window",
        "the stack runs every handler in one process, one invocation at a time, and polls an "
        "idle queue every 100 ms (Lambda long-polls), so these are a local pipeline's "
        "latencies, not Lambda's (no cold starts)",
        f"vendor budget and sandbox limit raised to {RAISED_LIMIT}/min for this benchmark",
    ]
    table.extra = {
        "window_s": window,
        "lone_ms": [x * 1000 for x in lone_s],
        "loaded_ms": [x * 1000 for x in load_s],
        "invocations_per_message": {
            window: load_invocations / len(load_ids),
            **{w: inv / len(ids) for w, (ids, inv) in compared.items()},
        },
    }
    return table


def cost_notes(happy: Usage, worst: Usage) -> list[str]:
    from bench.cost import LAMBDA_LOG_LINES_BYTES, MAILIVERY_ROUND_TRIP_S, PRICES_AS_OF, REGION

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


def _usage_json(usage: Usage) -> dict[str, Any]:
    return {
        "onboardings": usage.onboardings,
        "functions": {n: vars(f) for n, f in usage.functions.items()},
        "aws_calls": dict(usage.aws_calls),
        "read_units": usage.read_units,
        "write_units": usage.write_units,
    }
