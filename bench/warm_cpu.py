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

import json
from dataclasses import dataclass
from typing import Any, Final

import boto3

from bench.aws_calls import AwsCalls, CallLog
from bench.cpu_profile import (
    BOTOCORE_ENTRY,
    HTTPX_ENTRY,
    ProfileShares,
    entry_shares,
    interleaved_cpu_ms,
    profile,
    summary,
)
from bench.harness import aws_environment, quiet_handlers, read_event
from bench.report import Goal, Row, Table, median, ratio
from bench.servers import BackgroundServer
from bench.warm_cpu_worker import worker_rows
from devstack.stack_options import LOCAL_WEBHOOK_TOKEN
from devstack.testkit import LambdaContext, applied_environment, load_function
from warmgate.adapters import aws
from warmgate.adapters.secrets import reset_secrets

WEBHOOK_GOAL_MS: Final = 1.0
# The goal, as a ratio to the same run's bare call (what this machine can judge).
WEBHOOK_RATIO_GOAL: Final = 1.15


@dataclass
class WebhookSamples:
    iterations: int
    cpu_ms: dict[str, list[float]]  # handler, and the baselines: bare send, bare json
    shares: ProfileShares
    counted: CallLog  # the AWS calls of one warm invocation


def webhook_rows(quick: bool) -> tuple[list[Row], list[str], dict[str, Any]]:
    measured = measure_webhook(200 if quick else 2000)
    handler_ms, send_ms, json_ms = (measured.cpu_ms[k] for k in ("handler", "send", "json"))
    value = median(handler_ms)
    inside = measured.shares.shares["botocore"]
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
        Row("webhook AWS calls / warm invocation", sum(measured.counted.calls.values()), ""),
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
        f"webhook: median of {measured.iterations} invocations; SQS = loopback stub in another "
        "process (canned SendMessage answer), not moto; baseline of the first row = a bare "
        "sqs.send_message of the same body from a client with the handler's config, of the "
        "third = json.loads + json.dumps of the body",
    ]
    extra = {
        "webhook_iterations": measured.iterations,
        "webhook_ms": summary(handler_ms),
        "bare_send_message_ms": summary(send_ms),
        "bare_json_ms": summary(json_ms),
        "webhook_profile_shares": measured.shares.shares,
        "webhook_profile_calls_per_invocation": {
            k: v / (measured.iterations // 2) for k, v in measured.shares.calls.items()
        },
        "webhook_aws_calls_per_invocation": dict(measured.counted.calls),
    }
    return rows, notes, extra


def measure_webhook(iterations: int) -> WebhookSamples:
    event = read_event("webhook-campaign-pending.json")
    context = LambdaContext()
    with (
        BackgroundServer("aws-stub", "--secret", LOCAL_WEBHOOK_TOKEN) as stub,
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
        with AwsCalls(aws.session()) as counter:
            # A second instance, counted apart: see warm_cpu_worker.worker_calls.
            counting = load_function("webhook")
            counting.lambda_handler(event, context)
            with counter.scope("warm") as counted:
                counting.lambda_handler(event, context)
        shares = entry_shares(
            profile(invoke, iterations // 2), {"botocore": BOTOCORE_ENTRY, "httpx": HTTPX_ENTRY}
        )
        reset_secrets()
    return WebhookSamples(iterations, samples, shares, counted)


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
