"""Warm CPU per invocation: `time.process_time` around each handler call, after a warm-up.

Every server the handlers talk to runs in its own process (bench.servers), so the CPU counted
here is the handler's: its parsing, logging, metrics, botocore's request building and signing,
httpx, and the client side of each loopback HTTP exchange.

- webhook: events/webhook-campaign-pending.json (an API Gateway HTTP API v2 event) against a
  loopback stub answering SendMessage (and, once, GetSecretValue for the path token) with
  canned JSON: no emulator's CPU or latency in the figure.
- worker: batches of 10 campaign.pending messages for expected mailboxes; DynamoDB on a moto
  server, Mailivery on the sandbox. "start" = fresh campaigns and expectations every batch
  (re-read, claim, start-warmup, record); "duplicate" = the same messages delivered again once
  the campaigns are warming (re-read, reads, decision "already done", no vendor write).
  The worker's request budget gets a burst large enough never to wait: waiting for tokens is
  the throughput benchmark's subject, not this one's.

Shares come from cProfile with `time.process_time` as its timer (so time waiting on a socket
is not counted), over separate runs: profiling slows everything, so the ms figures come from
the unprofiled runs and only the proportions from the profiled ones.
"""

from __future__ import annotations

import cProfile
import json
import pstats
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from functools import partial
from types import ModuleType
from typing import Any, Final

import boto3

from bench.aws_calls import AwsCalls, CallLog
from bench.harness import (
    API_KEY,
    TABLE,
    aws_environment,
    expectation,
    pending_body,
    quiet_handlers,
    read_event,
    sqs_event,
    use_budget,
)
from bench.report import Goal, Row, Table, median, ratio
from bench.servers import BackgroundServer, running
from devstack.sandbox import SandboxControl
from devstack.template import create_queues, create_table
from devstack.testkit import LambdaContext, applied_environment, load_function
from warmgate.adapters import aws
from warmgate.adapters.budget import RateBudget
from warmgate.adapters.dynamodb import MailboxRepository
from warmgate.adapters.secrets import reset_secrets

WEBHOOK_GOAL_MS: Final = 1.0
WORKER_GOAL_MS: Final = 2.5
# The goals, as ratios to the same run's bare call (what this machine can judge).
WEBHOOK_RATIO_GOAL: Final = 1.15
WORKER_RATIO_GOALS: Final = {"start": 4.0, "duplicate": 2.0}
DYNAMODB_CALL_GOALS: Final = {"start": 4, "duplicate": 2}
BATCH: Final = 10
# The token in events/webhook-campaign-pending.json's path; the stub's secret holds it.
EVENT_TOKEN: Final = "local-webhook-token"  # noqa: S105 - the sample event's, local only
# Entry points of the libraries whose share is reported: every botocore API call goes through
# a client method (`_api_call`), every Mailivery call through httpx.Client.request. Neither is
# re-entered from inside itself, so their cumulative times do not double count.
BOTOCORE_ENTRY: Final = ("botocore/client.py", "_api_call")
HTTPX_ENTRY: Final = ("httpx/_client.py", "request")

StatsDict = Mapping[tuple[str, int, str], tuple[int, int, float, float, Any]]


@dataclass(frozen=True)
class ProfileShares:
    total_s: float
    shares: dict[str, float]  # entry label → share of total
    calls: dict[str, int]  # entry label → number of calls


def cpu_ms(call: Callable[[], object]) -> float:
    started = time.process_time()
    call()
    return (time.process_time() - started) * 1000


def interleaved_cpu_ms(
    calls: Mapping[str, Callable[[], object]], iterations: int
) -> dict[str, list[float]]:
    """CPU of each call, taken in turn (A B C A B C ...) so drift on a shared machine hits the
    figure and its baseline alike."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(iterations):
        for name, call in calls.items():
            samples[name].append(cpu_ms(call))
    return samples


def entry_shares(stats: StatsDict, entries: Mapping[str, tuple[str, str]]) -> ProfileShares:
    """Share of all profiled time spent under each entry function (file suffix, name)."""
    total = sum(tottime for _, _, tottime, _, _ in stats.values())
    shares: dict[str, float] = {}
    calls: dict[str, int] = {}
    for label, (file_suffix, function) in entries.items():
        cumulative = 0.0
        count = 0
        for (filename, _, name), (_, total_calls, _, cumtime, _) in stats.items():
            if name == function and filename.replace("\\", "/").endswith(file_suffix):
                cumulative += cumtime
                count += total_calls
        shares[label] = cumulative / total if total else 0.0
        calls[label] = count
    return ProfileShares(total, shares, calls)


def profile(call: Callable[[], object], iterations: int) -> StatsDict:
    profiler = cProfile.Profile(time.process_time)
    for _ in range(iterations):
        profiler.enable()
        call()
        profiler.disable()
    stats: StatsDict = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    return stats


# --------------------------------------------------------------------------- webhook


def webhook_rows(quick: bool) -> tuple[list[Row], list[str], dict[str, Any]]:
    iterations = 200 if quick else 2000
    event = read_event("webhook-campaign-pending.json")
    context = LambdaContext()
    with (
        BackgroundServer("aws-stub", "--secret", EVENT_TOKEN) as stub,
        applied_environment(
            {
                **aws_environment(stub.url),
                "WORK_QUEUE_URL": f"{stub.url}/123456789012/warmgate-WorkQueue",
                "WEBHOOK_TOKEN_SECRET": "warmgate/bench/webhook-token",
            }
        ),
        quiet_handlers(),
    ):
        reset_secrets()  # its client binds to this stub
        webhook = load_function("webhook")

        def invoke() -> None:
            response = webhook.lambda_handler(event, context)
            if response["statusCode"] != 202:
                raise RuntimeError(f"webhook answered {response}")

        # Baselines against the same stub: the one SendMessage the handler makes, bare, from
        # a client configured like the handler's; and JSON-decoding and re-encoding the body.
        from warmgate.api.webhook_intake import SQS_CLIENT_CONFIG

        sqs = boto3.client("sqs", config=aws.CLIENT_CONFIG.merge(SQS_CLIENT_CONFIG))
        queue_url = f"{stub.url}/123456789012/warmgate-WorkQueue"
        body = str(event["body"])

        def bare_send() -> None:
            sqs.send_message(QueueUrl=queue_url, MessageBody=body)

        def bare_json() -> None:
            json.dumps(json.loads(body))

        calls = {"handler": invoke, "send": bare_send, "json": bare_json}
        interleaved_cpu_ms(calls, 50)  # warm-up: secret fetched and cached, connections open
        samples = interleaved_cpu_ms(calls, iterations)
        handler_ms, send_ms, json_ms = samples["handler"], samples["send"], samples["json"]
        with AwsCalls(aws.session()) as counter:
            counting = load_function("webhook")  # a second instance: see worker_calls
            counting.lambda_handler(event, context)
            with counter.scope("warm") as counted:
                counting.lambda_handler(event, context)
        shares = entry_shares(
            profile(invoke, iterations // 2), {"botocore": BOTOCORE_ENTRY, "httpx": HTTPX_ENTRY}
        )
        reset_secrets()

    value = median(handler_ms)
    inside = shares.shares["botocore"]
    rows = [
        Row(
            "webhook CPU / invocation",
            value,
            "ms",
            baseline=median(send_ms),
            ratio=ratio(value, median(send_ms)),
            goal=Goal("<=", WEBHOOK_RATIO_GOAL, on="ratio"),
            status_note=f"Lambda goal ≤ {WEBHOOK_GOAL_MS:g} ms: not judged on this machine",
        ),
        Row("webhook AWS calls / warm invocation", sum(counted.calls.values()), ""),
        Row("webhook share inside botocore (cProfile)", inside, "%"),
        Row(
            "webhook CPU outside botocore",
            value * (1 - inside),
            "ms",
            baseline=median(json_ms),
            ratio=ratio(value * (1 - inside), median(json_ms)),
        ),
    ]
    notes = [
        f"webhook: median of {iterations} invocations; SQS = loopback stub in another process "
        "(canned SendMessage answer), not moto; baseline of the first row = a bare "
        "sqs.send_message of the same body from a client with the handler's config, of the "
        "third = json.loads + json.dumps of the body",
    ]
    extra = {
        "webhook_iterations": iterations,
        "webhook_ms": summary(handler_ms),
        "bare_send_message_ms": summary(send_ms),
        "bare_json_ms": summary(json_ms),
        "webhook_profile_shares": shares.shares,
        "webhook_profile_calls_per_invocation": {
            k: v / (iterations // 2) for k, v in shares.calls.items()
        },
        "webhook_aws_calls_per_invocation": dict(counted.calls),
    }
    return rows, notes, extra


# --------------------------------------------------------------------------- worker


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


def worker_rows(quick: bool) -> tuple[list[Row], list[str], dict[str, Any]]:
    batches = 3 if quick else 15
    profiled = 1 if quick else 4
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
            for _ in range(2):  # warm-up: connections, caches, first-use imports
                event = bench.fresh_batch()
                bench.deliver(event)
                bench.deliver(sqs_event([r["body"] for r in event["Records"]]))
            # Baseline: a bare GetItem of an existing item, same server, same kind of client,
            # taken between the batches so it sees the same machine as they do.
            key = {"pk": {"S": "mailbox#cpu0000-0@contoso.com"}}

            def bare_get() -> None:
                dynamodb.get_item(TableName=TABLE, Key=key, ConsistentRead=True)

            start_ms: list[float] = []
            duplicate_ms: list[float] = []
            get_ms: list[float] = []
            for _ in range(batches):
                event = bench.fresh_batch()
                start_ms.append(cpu_ms(partial(bench.deliver, event)) / BATCH)
                again = sqs_event([r["body"] for r in event["Records"]])
                duplicate_ms.append(cpu_ms(partial(bench.deliver, again)) / BATCH)
                get_ms += [cpu_ms(bare_get) for _ in range(BATCH)]

            entries = {"botocore": BOTOCORE_ENTRY, "httpx": HTTPX_ENTRY}
            start_stats: list[StatsDict] = []
            duplicate_stats: list[StatsDict] = []
            for _ in range(profiled):
                event = bench.fresh_batch()
                start_stats.append(profile(partial(bench.deliver, event), 1))
                again = sqs_event([r["body"] for r in event["Records"]])
                duplicate_stats.append(profile(partial(bench.deliver, again), 1))
            start_shares = entry_shares(merge(start_stats), entries)
            duplicate_shares = entry_shares(merge(duplicate_stats), entries)
            counted = worker_calls(control, dynamodb)

    messages = profiled * BATCH
    rows = []
    for path, samples, shares in (
        ("start", start_ms, start_shares),
        ("duplicate", duplicate_ms, duplicate_shares),
    ):
        value = median(samples)
        dynamodb_calls = counted[path].count("dynamodb") / BATCH
        rows.append(
            Row(
                f"worker CPU / message, {path} path",
                value,
                "ms",
                baseline=median(get_ms),
                ratio=ratio(value, median(get_ms)),
                goal=Goal("<=", WORKER_RATIO_GOALS[path], on="ratio"),
                status_note=f"Lambda goal ≤ {WORKER_GOAL_MS:g} ms: not judged on this machine",
            )
        )
        rows.append(
            Row(
                f"worker {path}: DynamoDB calls / message",
                dynamodb_calls,
                "",
                goal=Goal("<=", DYNAMODB_CALL_GOALS[path]),
            )
        )
        inside = shares.shares["botocore"] + shares.shares["httpx"]
        rows += [
            Row(f"worker {path}: share inside botocore (cProfile)", shares.shares["botocore"], "%"),
            Row(
                f"worker {path}: share inside httpx (Mailivery calls)", shares.shares["httpx"], "%"
            ),
            Row(f"worker {path}: CPU outside botocore and httpx", value * (1 - inside), "ms"),
        ]
    notes = [
        f"worker: median over {batches} batches of {BATCH} messages (CPU of the batch / {BATCH}); "
        "DynamoDB = moto server, Mailivery = sandbox, each in its own process; baseline = one "
        "bare DynamoDB GetItem on the same server (so ratio = cost in GetItem-equivalents); "
        "moto's and the sandbox's werkzeug servers close every connection, so each of these "
        "calls, the baseline's too, also pays a TCP connect that a warm Lambda would reuse",
        "calls per message (profiled runs): start "
        f"{start_shares.calls['botocore'] / messages:.1f} AWS + "
        f"{start_shares.calls['httpx'] / messages:.1f} Mailivery, duplicate "
        f"{duplicate_shares.calls['botocore'] / messages:.1f} AWS + "
        f"{duplicate_shares.calls['httpx'] / messages:.1f} Mailivery",
    ]
    extra = {
        "worker_batches": batches,
        "worker_start_ms_per_message": summary(start_ms),
        "worker_duplicate_ms_per_message": summary(duplicate_ms),
        "bare_get_item_ms": summary(get_ms),
        "worker_start_profile_shares": start_shares.shares,
        "worker_duplicate_profile_shares": duplicate_shares.shares,
        "worker_calls_per_message": {
            "start": {k: v / messages for k, v in start_shares.calls.items()},
            "duplicate": {k: v / messages for k, v in duplicate_shares.calls.items()},
        },
        "worker_aws_calls_per_message": {
            path: {k: v / BATCH for k, v in log.calls.items()} for path, log in counted.items()
        },
    }
    return rows, notes, extra


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


def merge(stats: Iterable[StatsDict]) -> StatsDict:
    """Sum several profiles' per-function (calls, tottime, cumtime); callers are dropped."""
    merged: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = {}
    for one in stats:
        for key, (cc, nc, tt, ct, _) in one.items():
            pcc, pnc, ptt, pct, _ = merged.get(key, (0, 0, 0.0, 0.0, None))
            merged[key] = (pcc + cc, pnc + nc, ptt + tt, pct + ct, None)
    return merged


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "median": median(samples),
        "mean": statistics.fmean(samples),
        "min": min(samples),
        "max": max(samples),
    }


def run(*, quick: bool) -> Table:
    table = Table("warm_cpu", "Warm CPU per invocation (time.process_time, after warm-up)")
    for part in (webhook_rows, worker_rows):
        rows, notes, extra = part(quick)
        table.rows += rows
        table.notes += notes
        table.extra.update(extra)
    table.notes.append(
        "shares: cProfile (timer = process_time) cumulative time under botocore's client call "
        "and under httpx.Client.request, over all profiled CPU; the rest is warmgate, "
        "Powertools (logging, metrics, batch) and the stdlib"
    )
    return table
