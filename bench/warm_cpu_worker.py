"""bench.warm_cpu's worker part: batches of 10 campaign.pending messages for expected
mailboxes (DynamoDB on a moto server, Mailivery on the sandbox), each delivered fresh ("start")
and again once the campaigns are warming ("duplicate"); CPU per message against a bare GetItem,
cProfile shares and the AWS calls per message."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import Any, Final

import boto3

from bench.aws_calls import AwsCalls, CallLog
from bench.cpu_profile import (
    BOTOCORE_ENTRY,
    HTTPX_ENTRY,
    ProfileShares,
    StatsDict,
    cpu_ms,
    entry_shares,
    merge,
    profile,
    summary,
)
from bench.harness import (
    API_KEY,
    TABLE,
    aws_environment,
    expectation,
    pending_body,
    quiet_handlers,
    sqs_event,
    use_budget,
)
from bench.report import Goal, Row, median, ratio
from bench.servers import BackgroundServer, running
from devstack.sandbox import SandboxControl
from devstack.template import create_queues, create_table
from devstack.testkit import LambdaContext, applied_environment, load_function
from warmgate.adapters import aws
from warmgate.adapters.budget import RateBudget
from warmgate.adapters.dynamodb import MailboxRepository

WORKER_GOAL_MS: Final = 2.5
# The goals, as ratios to the same run's bare call (what this machine can judge).
WORKER_RATIO_GOALS: Final = {"start": 4.0, "duplicate": 2.0}
DYNAMODB_CALL_GOALS: Final = {"start": 4, "duplicate": 2}
BATCH: Final = 10
PATHS: Final = ("start", "duplicate")


@dataclass
class WorkerBench:
    module: ModuleType
    control: SandboxControl
    dynamodb: Any
    prefix: str = "cpu"
    batches: int = 0

    def fresh_batch(self) -> dict[str, Any]:
        """10 new expectations and their pending campaigns (setup, never timed)."""
        repository = MailboxRepository(self.dynamodb, TABLE)
        bodies = []
        for n in range(BATCH):
            email = f"{self.prefix}{self.batches:04d}-{n}@contoso.com"
            repository.save(expectation(email), read_version=None)
            campaign_id = str(self.control.seed_campaign(email=email)["id"])
            bodies.append(pending_body(campaign_id, email))
        self.batches += 1
        return sqs_event(bodies)

    def deliver(self, event: dict[str, Any]) -> None:
        response = self.module.lambda_handler(event, LambdaContext())
        if response["batchItemFailures"]:
            raise RuntimeError(f"worker failed items: {response['batchItemFailures']}")


@dataclass
class WorkerSamples:
    cpu_ms: dict[str, list[float]]  # path → CPU per message, one sample per batch
    get_ms: list[float]  # the baseline: bare GetItems, taken between the batches
    shares: dict[str, ProfileShares]  # path → cProfile shares over the profiled batches
    counted: dict[str, CallLog]  # path → the AWS calls of one batch


def worker_rows(quick: bool) -> tuple[list[Row], list[str], dict[str, Any]]:
    batches = 3 if quick else 15
    profiled = 1 if quick else 4
    with worker_bench() as bench:
        cpu, get_ms = timed_batches(bench, batches)
        shares = profiled_batches(bench, profiled)
        measured = WorkerSamples(cpu, get_ms, shares, worker_calls(bench.control, bench.dynamodb))
    rows = [row for path in PATHS for row in path_rows(path, measured)]
    return (
        rows,
        worker_notes(measured, batches, profiled),
        worker_extra(measured, batches, profiled),
    )


@contextmanager
def worker_bench() -> Iterator[WorkerBench]:
    """moto and the sandbox in their own processes, the table and queues made, the worker
    loaded in their environment and warmed up (connections, caches, first-use imports)."""
    with (
        running(
            BackgroundServer("moto"),
            BackgroundServer("sandbox", "--api-key", API_KEY, "--rate-limit", "1000000"),
        ) as (moto, sandbox),
        SandboxControl(sandbox.url) as control,
    ):
        with applied_environment(aws_environment(moto.url)):
            # configured as the handler's: the baseline's client
            dynamodb = boto3.client("dynamodb", config=aws.CLIENT_CONFIG)
            sqs = boto3.client("sqs")
            create_table(dynamodb, "MailboxTable", TABLE)
            queue_url = create_queues(sqs)["WorkQueue"]
        env = {
            **aws_environment(moto.url),
            "MAILBOX_TABLE_NAME": TABLE,
            "WORK_QUEUE_URL": queue_url,
            "MAILIVERY_BASE_URL": f"{sandbox.url}/api/v1",
            "MAILIVERY_API_KEY": API_KEY,
        }
        with applied_environment(env), quiet_handlers():
            bench = WorkerBench(load_worker(), control, dynamodb)
            for _ in range(2):
                event = bench.fresh_batch()
                bench.deliver(event)
                bench.deliver(sqs_event([r["body"] for r in event["Records"]]))
            yield bench


def timed_batches(bench: WorkerBench, batches: int) -> tuple[dict[str, list[float]], list[float]]:
    """CPU per message of each path, and the baseline: a bare GetItem of an existing item, same
    server, same kind of client, taken between the batches so it sees the same machine."""
    key = {"pk": {"S": "mailbox#cpu0000-0@contoso.com"}}

    def bare_get() -> None:
        bench.dynamodb.get_item(TableName=TABLE, Key=key, ConsistentRead=True)

    cpu: dict[str, list[float]] = {path: [] for path in PATHS}
    get_ms: list[float] = []
    for _ in range(batches):
        event = bench.fresh_batch()
        cpu["start"].append(cpu_ms(partial(bench.deliver, event)) / BATCH)
        again = sqs_event([r["body"] for r in event["Records"]])
        cpu["duplicate"].append(cpu_ms(partial(bench.deliver, again)) / BATCH)
        get_ms += [cpu_ms(bare_get) for _ in range(BATCH)]
    return cpu, get_ms


def profiled_batches(bench: WorkerBench, profiled: int) -> dict[str, ProfileShares]:
    stats: dict[str, list[StatsDict]] = {path: [] for path in PATHS}
    for _ in range(profiled):
        event = bench.fresh_batch()
        stats["start"].append(profile(partial(bench.deliver, event), 1))
        again = sqs_event([r["body"] for r in event["Records"]])
        stats["duplicate"].append(profile(partial(bench.deliver, again), 1))
    entries = {"botocore": BOTOCORE_ENTRY, "httpx": HTTPX_ENTRY}
    return {path: entry_shares(merge(stats[path]), entries) for path in PATHS}


def path_rows(path: str, measured: WorkerSamples) -> list[Row]:
    value = median(measured.cpu_ms[path])
    shares = measured.shares[path].shares
    inside = shares["botocore"] + shares["httpx"]
    return [
        Row(
            f"worker CPU / message, {path} path",
            value,
            "ms",
            baseline=median(measured.get_ms),
            ratio=ratio(value, median(measured.get_ms)),
            goal=Goal("<=", WORKER_RATIO_GOALS[path], on="ratio"),
            status_note=f"Lambda goal ≤ {WORKER_GOAL_MS:g} ms: not judged on this machine",
        ),
        Row(
            f"worker {path}: DynamoDB calls / message",
            measured.counted[path].count("dynamodb") / BATCH,
            "",
            goal=Goal("<=", DYNAMODB_CALL_GOALS[path]),
        ),
        Row(f"worker {path}: share inside botocore (cProfile)", shares["botocore"], "%"),
        Row(f"worker {path}: share inside httpx (Mailivery calls)", shares["httpx"], "%"),
        Row(f"worker {path}: CPU outside botocore and httpx", value * (1 - inside), "ms"),
    ]


def worker_notes(measured: WorkerSamples, batches: int, profiled: int) -> list[str]:
    messages = profiled * BATCH
    start, duplicate = measured.shares["start"].calls, measured.shares["duplicate"].calls
    return [
        f"worker: median over {batches} batches of {BATCH} messages (CPU of the batch / {BATCH}); "
        "DynamoDB = moto server, Mailivery = sandbox, each in its own process; baseline = one "
        "bare DynamoDB GetItem on the same server (so ratio = cost in GetItem-equivalents); "
        "moto's and the sandbox's werkzeug servers close every connection, so each of these "
        "calls, the baseline's too, also pays a TCP connect that a warm Lambda would reuse",
        "calls per message (profiled runs): start "
        f"{start['botocore'] / messages:.1f} AWS + "
        f"{start['httpx'] / messages:.1f} Mailivery, duplicate "
        f"{duplicate['botocore'] / messages:.1f} AWS + "
        f"{duplicate['httpx'] / messages:.1f} Mailivery",
    ]


def worker_extra(measured: WorkerSamples, batches: int, profiled: int) -> dict[str, Any]:
    messages = profiled * BATCH
    return {
        "worker_batches": batches,
        "worker_start_ms_per_message": summary(measured.cpu_ms["start"]),
        "worker_duplicate_ms_per_message": summary(measured.cpu_ms["duplicate"]),
        "bare_get_item_ms": summary(measured.get_ms),
        "worker_start_profile_shares": measured.shares["start"].shares,
        "worker_duplicate_profile_shares": measured.shares["duplicate"].shares,
        "worker_calls_per_message": {
            path: {k: v / messages for k, v in measured.shares[path].calls.items()}
            for path in PATHS
        },
        "worker_aws_calls_per_message": {
            path: {k: v / BATCH for k, v in log.calls.items()}
            for path, log in measured.counted.items()
        },
    }


def load_worker() -> ModuleType:
    """functions/worker/app.py, with a burst that never runs dry: waiting for tokens is not
    this benchmark's subject."""
    module = load_function("worker")
    use_budget(module, lambda db: RateBudget(db, TABLE, per_minute=6000, burst=5000))
    return module


def worker_calls(control: SandboxControl, dynamodb: Any) -> dict[str, CallLog]:
    """The AWS calls of one batch per path, counted on a second worker instance loaded under
    the counter's hooks: the timed one carries none, which would cost it CPU. The instance
    handles one batch first, as a warm one has (its budget has seen where the item stands)."""
    with AwsCalls(aws.session()) as calls:
        counting = WorkerBench(load_worker(), control, dynamodb, prefix="count")
        counting.deliver(counting.fresh_batch())
        event = counting.fresh_batch()
        with calls.scope("start") as start:
            counting.deliver(event)
        with calls.scope("duplicate") as duplicate:
            counting.deliver(sqs_event([r["body"] for r in event["Records"]]))
    return {"start": start, "duplicate": duplicate}
