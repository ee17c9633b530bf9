"""Throughput under the vendor limit: drain a backlog of pending campaigns with two workers.

N campaign.pending messages (expected mailboxes, pending campaigns in the sandbox) for
WorkQueue (moto, in this process; fed QUEUE_DEPTH deep, see Feeder); two worker instances
(threads, each its own freshly imported functions/worker/app.py, as WorkerFunction's
MaximumConcurrency 2 allows) drain it through devstack.sqs_poller.poll_once (BatchSize 10),
sharing the DynamoDB budget item, against the Mailivery sandbox (its own process) enforcing 240
requests per rolling minute. Each campaign costs two vendor calls (re-read, start-warmup).

Time is scaled: the sandbox's rate-limit clock and the budget's clock (and its sleeps) run
TIME_SCALE times faster than the wall clock, so a "minute" lasts 60 / TIME_SCALE s. Everything
else (SQS delays, HTTP) runs in real time, so a deferred message waits longer in scaled time
than in production: the scaled run can only be slower than the real one, never flatter it.

The ceiling comes from RateBudget's parameters (per_minute, burst; refill r = (per_minute -
burst) / 60 s): any window of W s admits at most burst + W * r calls. The first minute can
reach burst + 60 r = per_minute; once the burst is spent (steady state) the most is 60 r per
minute. With the production burst of 5 that is 235/min = 97.9 % of the vendor's 240.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import boto3

from bench.harness import (
    API_KEY,
    TABLE,
    LambdaContext,
    aws_environment,
    environment,
    expectation,
    load_function,
    pending_body,
    quiet_handlers,
    use_budget,
)
from bench.report import Goal, Row, Table, ratio
from bench.servers import BackgroundServer
from devstack.local_aws import atomic_dynamodb_writes
from devstack.sandbox_control import SandboxControl
from devstack.sqs_poller import poll_once
from devstack.template import create_queues, create_table
from warmgate.rate_budget import DEFAULT_BURST, RateBudget
from warmgate.repository import MailboxRepository

TIME_SCALE: Final = 5.0
VENDOR_LIMIT: Final = 240  # requests per minute per API key (contract §1)
BURST: Final = DEFAULT_BURST  # as the worker uses it
CALLS_PER_CAMPAIGN: Final = 2  # GET /campaigns/{id} (re-read) + PATCH start-warmup
INSTANCES: Final = 2  # WorkerFunction's ScalingConfig.MaximumConcurrency
SHARE_GOAL: Final = 0.97
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
    backlog = 200 if quick else 1000
    refill_per_minute = VENDOR_LIMIT - BURST
    table = Table(
        "throughput",
        f"Throughput under the vendor limit: {backlog} pending campaigns, {INSTANCES} workers, "
        f"time scale {TIME_SCALE:g}x (1 scaled minute = {60 / TIME_SCALE:g} s)",
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
            str(TIME_SCALE),
        ) as sandbox,
        SandboxControl(sandbox.url) as control,
        environment(
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

        meter = WaitMeter(TIME_SCALE)
        instances = []
        with environment({"WORK_QUEUE_URL": queue_url}):
            for _ in range(INSTANCES):
                instance = load_function("worker")
                use_budget(
                    instance,
                    lambda db: RateBudget(
                        db,
                        TABLE,
                        per_minute=VENDOR_LIMIT,
                        burst=BURST,
                        clock=lambda: time.time() * TIME_SCALE,
                        sleep=meter.sleep,
                    ),
                )
                instances.append(instance)

        expected_s = (backlog * CALLS_PER_CAMPAIGN - BURST) / refill_per_minute * 60 / TIME_SCALE
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
    steady = steady_state(times, BURST, TIME_SCALE)
    first = first_minute(times, TIME_SCALE)
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
            baseline=BURST + refill_per_minute,
            ratio=ratio(first, BURST + refill_per_minute),
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
        f"the ceiling is RateBudget's (per_minute {VENDOR_LIMIT}, burst {BURST}): any window of "
        f"W s admits burst + W·r calls, r = {refill_per_minute}/min; the first row's baseline is "
        f"60·r (steady state, burst spent), the first minute's is burst + 60·r = {VENDOR_LIMIT}",
        f"steady state = from the {BURST}th vendor call (the initial burst spent) to the last "
        f"one, {steady.calls} calls over {steady.scaled_seconds:.0f} scaled s; the burst is left "
        "out because no later window can repeat it",
        f"a share of the vendor limit above {refill_per_minute / VENDOR_LIMIT * 100:.1f} % in "
        f"steady state needs a smaller burst: (240 - burst) / 240 ≥ 97 % means burst ≤ 7",
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
        "time_scale": TIME_SCALE,
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
