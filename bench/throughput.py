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

import threading
import time
from dataclasses import dataclass
from typing import Any, Final

import boto3

from bench.backlog import QUEUE_DEPTH, Feeder, WaitMeter, queue_empty, seed_backlog
from bench.budget_alone import QUICK_TAKERS, TAKERS, TAKERS_SCALE, contention_rows
from bench.harness import (
    API_KEY,
    TABLE,
    aws_environment,
    quiet_handlers,
    use_budget,
)
from bench.pacing import (
    BURST,
    VENDOR_LIMIT,
    Window,
    busiest_window,
    epoch_seconds,
    first_minute,
    in_process_aws,
    steady_state,
    vendor_limit_row,
)
from bench.report import Goal, Row, Table, ratio
from bench.servers import BackgroundServer
from devstack.sandbox import SandboxControl
from devstack.sqs_poller import poll_once
from devstack.template import create_queues, create_table
from devstack.testkit import (
    LambdaContext,
    applied_environment,
    load_function,
)
from warmgate.adapters.budget import SEND_MARGIN, RateBudget

TIME_SCALE: Final = 5.0
QUICK_TIME_SCALE: Final = 10.0  # --quick: half the wall time; the workers still wait for tokens
CALLS_PER_CAMPAIGN: Final = 2  # GET /campaigns/{id} (re-read) + PATCH start-warmup
INSTANCES: Final = 2  # WorkerFunction's ScalingConfig.MaximumConcurrency
SHARE_GOAL: Final = 0.98
MIN_WAITED_SHARE: Final = 0.15
MACHINE_BOUND: Final = "machine-bound: workers hardly waited for tokens; lower TIME_SCALE"


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


@dataclass
class Drain:
    """What one drain of the backlog measured."""

    backlog: int
    scale: float
    wall: float
    expected_s: float
    calls: list[dict[str, Any]]
    campaigns: list[dict[str, Any]]
    received: list[int]
    starved: list[int]  # empty receives while part of the backlog was still held back
    waited_s: float
    reference: RateBudget

    @property
    def refill_per_minute(self) -> float:
        return 60 * self.reference.refill_per_second

    @property
    def waited_share(self) -> float:
        """Time inside the budget's sleep / (workers x wall)."""
        return self.waited_s / (INSTANCES * self.wall) if self.wall else 0.0


def drain_backlog(quick: bool, scale: float) -> Table:
    backlog = 140 if quick else 1000
    drain = run_drain(backlog, scale)
    table = Table(
        "throughput",
        f"Throughput under the vendor limit: {backlog} pending campaigns, {INSTANCES} workers, "
        f"time scale {scale:g}x (1 scaled minute = {60 / scale:g} s)",
    )
    times = sorted(epoch_seconds(c["time"]) for c in drain.calls if c["status"] != 429)
    steady = steady_state(times, BURST, scale)
    table.rows += pace_rows(drain, times, steady) + outcome_rows(drain, times)
    table.notes += drain_notes(drain, steady)
    table.extra = {
        "backlog": backlog,
        "time_scale": scale,
        "instances": INSTANCES,
        "vendor_calls": len(drain.calls),
        "received": drain.received,
        "steady_calls": steady.calls,
        "steady_scaled_seconds": steady.scaled_seconds,
        "waited_s": drain.waited_s,
        "starved_polls": drain.starved,
    }
    return table


def run_drain(backlog: int, scale: float) -> Drain:
    """The backlog seeded, fed to WorkQueue and drained by INSTANCES workers against the
    sandbox in its own process; what the sandbox logged afterwards."""
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
        feeder = Feeder(sqs, queue_url, seed_backlog(backlog, dynamodb, control))
        feeder.top_up()
        meter = WaitMeter(scale)
        reference = RateBudget(dynamodb, TABLE, per_minute=VENDOR_LIMIT, burst=BURST)
        expected_s = (
            (backlog * CALLS_PER_CAMPAIGN - BURST) / (60 * reference.refill_per_second) * 60 / scale
        )
        workers = DrainWorkers(sqs, queue_url, worker_instances(queue_url, scale, meter))
        wall = workers.run(feeder, deadline_s=3 * expected_s + 30)
        return Drain(
            backlog,
            scale,
            wall,
            expected_s,
            control.calls(),
            control.campaigns(),
            workers.received,
            workers.starved,
            meter.waited,
            reference,
        )


def worker_instances(queue_url: str, scale: float, meter: WaitMeter) -> list[Any]:
    """INSTANCES fresh worker modules, each with its own budget on the scaled clock."""
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
    return instances


class DrainWorkers:
    """One thread per worker instance, polling WorkQueue as Lambda's poller would, until the
    backlog is on the queue and the queue is empty (or the deadline passed)."""

    def __init__(self, sqs: Any, queue_url: str, instances: list[Any]) -> None:
        self._sqs = sqs
        self._queue_url = queue_url
        self._queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        self._instances = instances
        self._done = threading.Event()
        self._errors: list[BaseException] = []
        self._feeder_done = threading.Event()
        self.received = [0] * len(instances)
        self.starved = [0] * len(instances)

    def run(self, feeder: Feeder, deadline_s: float) -> float:
        """Drains; returns the wall time. A worker thread's exception is raised here."""
        self._feeder_done = feeder.exhausted
        started = time.monotonic()
        threads = [
            threading.Thread(target=self._drain, args=(i,)) for i in range(len(self._instances))
        ]
        for thread in threads:
            thread.start()
        deadline = started + deadline_s
        while not self._done.is_set() and time.monotonic() < deadline:
            time.sleep(0.1)
            if not feeder.exhausted.is_set():
                feeder.top_up()
            elif queue_empty(self._sqs, self._queue_url):  # cheap now: at most QUEUE_DEPTH
                self._done.set()
        self._done.set()
        for thread in threads:
            thread.join(timeout=30)
        if self._errors:
            raise RuntimeError(f"a worker thread failed: {self._errors[0]!r}") from self._errors[0]
        return time.monotonic() - started

    def _drain(self, index: int) -> None:
        handler = self._instances[index].lambda_handler
        try:
            while not self._done.is_set():
                got, _ = poll_once(
                    self._sqs, self._queue_url, self._queue_arn, handler, LambdaContext()
                )
                self.received[index] += got
                if not got:
                    self.starved[index] += not self._feeder_done.is_set()
                    time.sleep(0.05)
        except BaseException as exc:  # raised by run(), not lost in a thread
            self._errors.append(exc)
            self._done.set()


def pace_rows(drain: Drain, times: list[float], steady: Window) -> list[Row]:
    """How fast the workers called the vendor, against the budget's ceiling and the limit."""
    refill = drain.refill_per_minute
    limit_share = steady.per_minute / VENDOR_LIMIT
    ceiling_share = refill / VENDOR_LIMIT
    # Workers that (almost) never wait for a token were slower than the budget: a rate below
    # the goal then measures this machine, and only a smaller TIME_SCALE measures the budget.
    machine_bound = (
        drain.waited_share < MIN_WAITED_SHARE and steady.per_minute < SHARE_GOAL * refill
    )
    first = first_minute(times, drain.scale)
    most_in_minute = drain.reference.most_in(60)
    busiest = busiest_window([t * drain.scale for t in times], 60.0)
    return [
        Row(
            "vendor calls / scaled min, steady state",
            steady.per_minute,
            "/min",
            baseline=refill,
            ratio=ratio(steady.per_minute, refill),
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
        vendor_limit_row("vendor calls in the first scaled minute", first, most_in_minute),
        vendor_limit_row("vendor calls in the busiest rolling scaled minute", busiest),
    ]


def outcome_rows(drain: Drain, times: list[float]) -> list[Row]:
    """What the drain achieved: campaigns started, at what cost in calls and time."""
    throttled = sum(1 for c in drain.calls if c["status"] == 429)
    started = sum(1 for c in drain.campaigns if c["status"] == "active")
    per_campaign = ratio(len(times), started)
    return [
        Row("429 answers from the sandbox", throttled, "", goal=Goal("<=", 0)),
        Row(
            "vendor calls per campaign started",
            per_campaign,
            "",
            baseline=CALLS_PER_CAMPAIGN,
            ratio=ratio(per_campaign, CALLS_PER_CAMPAIGN),
        ),
        Row(
            "campaigns started",
            started,
            "",
            baseline=drain.backlog,
            ratio=ratio(started, drain.backlog),
            goal=Goal(">=", 1.0, on="ratio"),
        ),
        Row(
            "wall time",
            drain.wall,
            "s",
            baseline=drain.expected_s,
            ratio=ratio(drain.wall, drain.expected_s),
        ),
        Row("time the workers waited for tokens", drain.waited_share, "%"),
    ]


def drain_notes(drain: Drain, steady: Window) -> list[str]:
    backlog = drain.backlog
    return [
        f"the ceiling is RateBudget's (per_minute {VENDOR_LIMIT}, burst {BURST}, send margin "
        f"{SEND_MARGIN:g} s): the first row's baseline is its sustained rate "
        f"{drain.refill_per_minute:.1f}/min (burst spent), the first minute's the most a "
        f"minute of grants can hold ({drain.reference.most_in(60)}); the vendor counts calls "
        "as they arrive",
        f"steady state = from the {BURST}th vendor call (the initial burst spent) to the last "
        f"one, {steady.calls} calls over {steady.scaled_seconds:.0f} scaled s; the burst is left "
        "out because no later window can repeat it",
        "wall time baseline = the time the ceiling allows for "
        f"{backlog * CALLS_PER_CAMPAIGN} calls ({backlog} x {CALLS_PER_CAMPAIGN}); "
        "waited = time inside the budget's sleep / (workers x wall): near 100 % means the "
        "budget, not this machine, set the pace",
        f"messages received by the workers: {sum(drain.received)} for {backlog} campaigns: a "
        "message whose token wait ran past acquire()'s 1 s comes back later; if that happened "
        "at start-warmup, its re-read is repeated: calls per campaign above 2",
        f"the backlog enters WorkQueue {QUEUE_DEPTH} deep as the workers drain it (moto's "
        "ReceiveMessage costs O(queue length) per message, so 1,000 at once would measure "
        f"moto); empty receives while part of it was still held back: {sum(drain.starved)}",
    ]
