"""Throughput under the vendor limit: drain a backlog of pending campaigns with two workers.

N campaign.pending messages (expected mailboxes, pending campaigns in the sandbox) for
WorkQueue (moto, in this process; fed QUEUE_DEPTH deep, see Feeder); two worker instances
(threads, each its own freshly imported functions/worker/app.py, as WorkerFunction's
MaximumConcurrency 2 allows) drain it through devstack.sqs_poller.poll_once (BatchSize 10),
sharing the DynamoDB budget item, against the Mailivery sandbox (its own process) enforcing 240
requests per rolling minute. Each campaign costs two vendor calls (re-read, start-warmup).

Time is scaled: the sandbox's rate-limit clock and the budget's clock (and its sleeps) run
TIME_SCALE times (QUICK_TIME_SCALE with --quick) faster than the wall clock, so a "minute"
lasts 60 / TIME_SCALE s. Everything else (SQS delays, HTTP) runs in real time, so a deferred
message waits longer in scaled time than in production: the scaled run can only be slower than
the real one, never flatter it.

The ceiling comes from RateBudget (a GCRA: per_minute, burst, emission interval T): any window
of W s holds at most burst + floor(W / T) grants, and T is sized so that a minute plus the send
margin holds at most per_minute. Once the burst is spent (steady state) the rate is 60 / T a
minute: with the production burst of 3, 236/min = 98.3 % of the vendor's 240.

A second part takes the budget alone: 2 and then 10 instances (threads, each its own RateBudget
and client) taking tokens as fast as it lets them, against moto's DynamoDB, on a faster scaled
clock: no window over the limit, the rate each reaches, and the DynamoDB writes per token.
"""

from __future__ import annotations

import bisect
import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import boto3

from bench.aws_calls import AwsCalls
from bench.harness import (
    API_KEY,
    TABLE,
    aws_environment,
    expectation,
    pending_body,
    quiet_handlers,
    use_budget,
)
from bench.report import Goal, Row, Table, ratio
from bench.servers import BackgroundServer
from devstack.sandbox import SandboxControl
from devstack.sqs_poller import poll_once
from devstack.template import create_queues, create_table
from devstack.testkit import (
    LambdaContext,
    applied_environment,
    atomic_dynamodb_writes,
    load_function,
)
from warmgate import aws
from warmgate.rate_budget import DEFAULT_BURST, SEND_MARGIN, BudgetExhausted, RateBudget
from warmgate.repository import MailboxRepository

TIME_SCALE: Final = 5.0
QUICK_TIME_SCALE: Final = 10.0  # --quick: half the wall time; the workers still wait for tokens
# The budget alone: how many instances take tokens at once, for how long, how much faster.
TAKERS: Final = (2, 10)
QUICK_TAKERS: Final = (10,)  # --quick: the drain above already has two takers
TAKERS_SCALE: Final = 20.0
VENDOR_LIMIT: Final = 240  # requests per minute per API key (contract §1)
BURST: Final = DEFAULT_BURST  # as the worker uses it
CALLS_PER_CAMPAIGN: Final = 2  # GET /campaigns/{id} (re-read) + PATCH start-warmup
INSTANCES: Final = 2  # WorkerFunction's ScalingConfig.MaximumConcurrency
SHARE_GOAL: Final = 0.98
MIN_WAITED_SHARE: Final = 0.15
QUEUE_DEPTH: Final = 60  # 3 batches of 10 per worker: neither can run dry between top-ups
MACHINE_BOUND: Final = "machine-bound: workers hardly waited for tokens; lower TIME_SCALE"


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


class WaitMeter:
    """The budget's sleep, counted: how long the workers waited for tokens (wall seconds)."""

    def __init__(self, scale: float) -> None:
        self._scale = scale
        self._lock = threading.Lock()
        self.waited = 0.0

    def sleep(self, scaled_seconds: float) -> None:
        real = scaled_seconds / self._scale
        time.sleep(real)
        with self._lock:
            self.waited += real


def run(*, quick: bool) -> Table:
    table = drain_backlog(quick, QUICK_TIME_SCALE if quick else TIME_SCALE)
    takers = QUICK_TAKERS if quick else TAKERS
    for count in takers:
        table.rows += contention_rows(count, 65.0 if quick else 300.0)
    table.notes.append(
        f"budget alone: {' and '.join(map(str, takers))} instances, each its own RateBudget and "
        f"client, taking tokens back to back (acquire, max_wait 1 s; refused: back after "
        f"retry_after, as the worker defers) against moto's DynamoDB in this process, clock "
        f"scaled {TAKERS_SCALE:g}x; busiest = the most calls in any rolling minute, timed as "
        "they would go out (when acquire returns); writes per token include those that found "
        "the bucket empty or guessed its state wrong"
    )
    return table


def contention_rows(takers: int, scaled_seconds: float) -> list[Row]:
    """The budget alone under `takers` concurrent instances: rate, busiest window, writes."""
    grants: list[float] = []
    lock = threading.Lock()
    with (
        in_process_aws(),
        applied_environment(aws_environment(None)),
        AwsCalls(aws.session()) as calls,
    ):
        create_table(boto3.client("dynamodb"), "MailboxTable", TABLE)
        budgets = [
            RateBudget(
                aws.client("dynamodb"),
                TABLE,
                per_minute=VENDOR_LIMIT,
                burst=BURST,
                clock=lambda: time.time() * TAKERS_SCALE,
                sleep=lambda scaled: time.sleep(scaled / TAKERS_SCALE),
            )
            for _ in range(takers)
        ]
        end = time.time() + scaled_seconds / TAKERS_SCALE

        def take(budget: RateBudget) -> None:
            while time.time() < end:
                try:
                    budget.acquire(max_wait=1.0)
                except BudgetExhausted as exhausted:  # as the worker would: come back later
                    time.sleep(exhausted.retry_after / TAKERS_SCALE)
                    continue
                with lock:  # when the request would go out: as the vendor would count it
                    grants.append(time.time() * TAKERS_SCALE)

        threads = [threading.Thread(target=take, args=(budget,)) for budget in budgets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        writes = calls.total().count("dynamodb", "UpdateItem")
    grants.sort()
    steady = steady_state(grants, BURST, 1.0)
    busiest = busiest_window(grants, 60.0)
    return [
        Row(
            f"budget alone, {takers} takers: grants / scaled min, steady state",
            steady.per_minute,
            "/min",
            baseline=60 * budgets[0].refill_per_second,
            ratio=ratio(steady.per_minute, 60 * budgets[0].refill_per_second),
        ),
        Row(
            f"budget alone, {takers} takers: busiest rolling minute",
            busiest,
            "",
            baseline=VENDOR_LIMIT,
            ratio=ratio(busiest, VENDOR_LIMIT),
            goal=Goal("<=", VENDOR_LIMIT),
        ),
        Row(
            f"budget alone, {takers} takers: DynamoDB writes per token",
            ratio(writes, len(grants)),
            "",
        ),
    ]


def drain_backlog(quick: bool, scale: float) -> Table:
    backlog = 140 if quick else 1000
    table = Table(
        "throughput",
        f"Throughput under the vendor limit: {backlog} pending campaigns, {INSTANCES} workers, "
        f"time scale {scale:g}x (1 scaled minute = {60 / scale:g} s)",
    )
    with (
        in_process_aws(),
        BackgroundServer(
            "sandbox",
            "--api-key",
            API_KEY,
            "--rate-limit",
            str(VENDOR_LIMIT),
            "--time-scale",
            str(scale),
        ) as sandbox,
        SandboxControl(sandbox.url) as control,
        applied_environment(
            {
                **aws_environment(None),
                "MAILBOX_TABLE_NAME": TABLE,
                "MAILIVERY_BASE_URL": f"{sandbox.url}/api/v1",
                "MAILIVERY_API_KEY": API_KEY,
                "MAILIVERY_REQUESTS_PER_MINUTE": str(VENDOR_LIMIT),
            }
        ),
        quiet_handlers(),
    ):
        dynamodb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
        create_table(dynamodb, "MailboxTable", TABLE)
        queue_url = create_queues(sqs)["WorkQueue"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        feeder = Feeder(sqs, queue_url, seed_backlog(backlog, dynamodb, control))
        feeder.top_up()

        meter = WaitMeter(scale)
        reference = RateBudget(dynamodb, TABLE, per_minute=VENDOR_LIMIT, burst=BURST)
        refill_per_minute = 60 * reference.refill_per_second
        instances = []
        with applied_environment({"WORK_QUEUE_URL": queue_url}):
            for _ in range(INSTANCES):
                instance = load_function("worker")
                use_budget(
                    instance,
                    lambda db: RateBudget(
                        db,
                        TABLE,
                        per_minute=VENDOR_LIMIT,
                        burst=BURST,
                        clock=lambda: time.time() * scale,
                        sleep=meter.sleep,
                    ),
                )
                instances.append(instance)

        expected_s = (backlog * CALLS_PER_CAMPAIGN - BURST) / refill_per_minute * 60 / scale
        done = threading.Event()
        received = [0] * INSTANCES
        starved = [0] * INSTANCES  # empty receives while part of the backlog was still held
        errors: list[BaseException] = []

        def drain(index: int) -> None:
            handler = instances[index].lambda_handler
            try:
                while not done.is_set():
                    got, _ = poll_once(sqs, queue_url, queue_arn, handler, LambdaContext())
                    received[index] += got
                    if not got:
                        starved[index] += not feeder.exhausted.is_set()
                        time.sleep(0.05)
            except BaseException as exc:  # reported below, not lost in a thread
                errors.append(exc)
                done.set()

        started = time.monotonic()
        threads = [threading.Thread(target=drain, args=(i,)) for i in range(INSTANCES)]
        for thread in threads:
            thread.start()
        deadline = started + 3 * expected_s + 30
        while not done.is_set() and time.monotonic() < deadline:
            time.sleep(0.1)
            if not feeder.exhausted.is_set():
                feeder.top_up()
            elif queue_empty(sqs, queue_url):  # cheap now: at most QUEUE_DEPTH messages
                done.set()
        done.set()
        for thread in threads:
            thread.join(timeout=30)
        wall = time.monotonic() - started
        calls = control.calls()
        campaigns = control.campaigns()

    if errors:
        raise RuntimeError(f"a worker thread failed: {errors[0]!r}") from errors[0]
    times = sorted(epoch_seconds(c["time"]) for c in calls if c["status"] != 429)
    throttled = sum(1 for c in calls if c["status"] == 429)
    started_count = sum(1 for c in campaigns if c["status"] == "active")
    steady = steady_state(times, BURST, scale)
    first = first_minute(times, scale)
    busiest = busiest_window([t * scale for t in times], 60.0)
    limit_share = steady.per_minute / VENDOR_LIMIT
    waited_share = meter.waited / (INSTANCES * wall) if wall else 0.0
    # Workers that (almost) never wait for a token were slower than the budget: a rate below
    # the goal then measures this machine, and only a smaller TIME_SCALE measures the budget.
    machine_bound = waited_share < MIN_WAITED_SHARE and steady.per_minute < (
        SHARE_GOAL * refill_per_minute
    )
    ceiling_share = refill_per_minute / VENDOR_LIMIT
    table.rows += [
        Row(
            "vendor calls / scaled min, steady state",
            steady.per_minute,
            "/min",
            baseline=refill_per_minute,
            ratio=ratio(steady.per_minute, refill_per_minute),
            goal=Goal(">=", SHARE_GOAL, on="ratio"),
            status_note=MACHINE_BOUND if machine_bound else None,
        ),
        Row(
            "  as a share of the 240/min vendor limit",
            limit_share,
            "%",
            baseline=ceiling_share,
            ratio=ratio(limit_share, ceiling_share),
            goal=Goal(">=", SHARE_GOAL, "%"),
            status_note=(
                f"unreachable: the budget's ceiling is {ceiling_share * 100:.1f} %"
                if ceiling_share < SHARE_GOAL
                else None
            ),
        ),
        Row(
            "vendor calls in the first scaled minute",
            first,
            "",
            baseline=reference.most_in(60),
            ratio=ratio(first, reference.most_in(60)),
            goal=Goal("<=", VENDOR_LIMIT),
        ),
        Row(
            "vendor calls in the busiest rolling scaled minute",
            busiest,
            "",
            baseline=VENDOR_LIMIT,
            ratio=ratio(busiest, VENDOR_LIMIT),
            goal=Goal("<=", VENDOR_LIMIT),
        ),
        Row("429 answers from the sandbox", throttled, "", goal=Goal("<=", 0)),
        Row(
            "vendor calls per campaign started",
            ratio(len(times), started_count),
            "",
            baseline=CALLS_PER_CAMPAIGN,
            ratio=ratio(ratio(len(times), started_count), CALLS_PER_CAMPAIGN),
        ),
        Row(
            "campaigns started",
            started_count,
            "",
            baseline=backlog,
            ratio=ratio(started_count, backlog),
            goal=Goal(">=", 1.0, on="ratio"),
        ),
        Row("wall time", wall, "s", baseline=expected_s, ratio=ratio(wall, expected_s)),
        Row(
            "time the workers waited for tokens",
            waited_share,
            "%",
        ),
    ]
    table.notes += [
        f"the ceiling is RateBudget's (per_minute {VENDOR_LIMIT}, burst {BURST}, send margin "
        f"{SEND_MARGIN:g} s): the first row's baseline is its sustained rate "
        f"{refill_per_minute:.1f}/min (burst spent), the first minute's the most a minute of "
        f"grants can hold ({reference.most_in(60)}); the vendor counts calls as they arrive",
        f"steady state = from the {BURST}th vendor call (the initial burst spent) to the last "
        f"one, {steady.calls} calls over {steady.scaled_seconds:.0f} scaled s; the burst is left "
        "out because no later window can repeat it",
        "wall time baseline = the time the ceiling allows for "
        f"{backlog * CALLS_PER_CAMPAIGN} calls ({backlog} x {CALLS_PER_CAMPAIGN}); "
        "waited = time inside the budget's sleep / (workers x wall): near 100 % means the "
        "budget, not this machine, set the pace",
        f"messages received by the workers: {sum(received)} for {backlog} campaigns: a "
        "message whose token wait ran past acquire()'s 1 s comes back later; if that happened "
        "at start-warmup, its re-read is repeated: calls per campaign above 2",
        f"the backlog enters WorkQueue {QUEUE_DEPTH} deep as the workers drain it (moto's "
        "ReceiveMessage costs O(queue length) per message, so 1,000 at once would measure "
        f"moto); empty receives while part of it was still held back: {sum(starved)}",
    ]
    table.extra = {
        "backlog": backlog,
        "time_scale": scale,
        "instances": INSTANCES,
        "vendor_calls": len(calls),
        "received": received,
        "steady_calls": steady.calls,
        "steady_scaled_seconds": steady.scaled_seconds,
        "waited_s": meter.waited,
        "starved_polls": starved,
    }
    return table


@contextlib.contextmanager
def in_process_aws() -> Iterator[None]:
    """moto in this process, DynamoDB's write atomicity restored for the threads.

    In-process rather than a moto server: a botocore call over loopback HTTP costs this process
    about twice the CPU of one moto intercepts (no urllib3, no reconnect per call: werkzeug
    closes every connection), and this benchmark is about pacing, not CPU: the two workers
    must be able to go faster than the budget lets them, even on a small shared machine."""
    from moto import mock_aws

    with atomic_dynamodb_writes(), mock_aws():
        yield


def seed_backlog(backlog: int, dynamodb: Any, control: SandboxControl) -> list[str]:
    """Expectations in the table and pending campaigns in the sandbox; returns the WorkQueue
    message of each campaign's webhook."""
    repository = MailboxRepository(dynamodb, TABLE)
    bodies = []
    for n in range(backlog):
        email = f"box{n:04d}@contoso.com"
        repository.save(expectation(email), read_version=None)
        campaign_id = str(control.seed_campaign(email=email)["id"])
        bodies.append(pending_body(campaign_id, email))
    return bodies


class Feeder:
    """Keeps WorkQueue about QUEUE_DEPTH deep from the backlog until the backlog is on it.

    moto's ReceiveMessage costs O(queue length) per message returned (its retention check
    recomputes every queue attribute, approximate counts included): with 1,000 messages
    waiting, one receive costs this process most of a CPU second, and the benchmark would
    measure moto. The backlog therefore waits here and enters the queue as the workers drain
    it; the workers must never find the queue empty meanwhile (`starved_polls` counts it).
    """

    def __init__(self, sqs: Any, queue_url: str, bodies: list[str]) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._pending = list(reversed(bodies))  # pop() from the end keeps the original order
        self.exhausted = threading.Event()

    def top_up(self) -> None:
        visible = int(
            self._sqs.get_queue_attributes(
                QueueUrl=self._queue_url, AttributeNames=["ApproximateNumberOfMessages"]
            )["Attributes"]["ApproximateNumberOfMessages"]
        )
        room = QUEUE_DEPTH - visible
        while room >= 10 and self._pending:
            batch = [self._pending.pop() for _ in range(min(10, len(self._pending)))]
            self._sqs.send_message_batch(
                QueueUrl=self._queue_url,
                Entries=[{"Id": str(n), "MessageBody": body} for n, body in enumerate(batch)],
            )
            room -= len(batch)
        if not self._pending:
            self.exhausted.set()


def queue_empty(sqs: Any, queue_url: str) -> bool:
    """Nothing visible, in flight or delayed: every message has been processed and deleted."""
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return all(int(value) == 0 for value in attributes.values())
