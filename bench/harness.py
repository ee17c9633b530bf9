"""What the in-process benchmarks share: fresh handler modules, their environment, the events
and records they consume, and a sink for the logs they write.

Independent of tests/ (benchmarks must not break when a test helper changes); the handler
loader, the Lambda context and the environment block come from the one kit all share,
`devstack.testkit`.
"""

from __future__ import annotations

import contextlib
import hashlib
import itertools
import json
import logging
import os
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any, Final

from warmgate.adapters import aws
from warmgate.adapters.budget import RateBudget
from warmgate.adapters.sqs import QueuedWebhook
from warmgate.domain.mailboxes import ExpectedMailbox, MailboxState, iso
from warmgate.domain.webhooks import EventType
from warmgate.wiring import worker_from_settings

ROOT: Final = Path(__file__).resolve().parents[1]
EVENTS: Final = ROOT / "events"
TABLE: Final = "warmgate-bench-mailboxes"
API_KEY: Final = "sandbox-key"
REGION: Final = "eu-west-1"
QUEUE_ARN: Final = f"arn:aws:sqs:{REGION}:123456789012:warmgate-WorkQueue"


def read_event(name: str) -> dict[str, Any]:
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def aws_environment(endpoint_url: str | None) -> dict[str, str | None]:
    """Dummy credentials, a region, and the endpoint every boto3 client is created with."""
    return {
        "AWS_DEFAULT_REGION": REGION,
        "AWS_REGION": REGION,
        "AWS_ACCESS_KEY_ID": "bench",
        "AWS_SECRET_ACCESS_KEY": "bench",
        "AWS_SESSION_TOKEN": None,
        "AWS_PROFILE": None,
        "AWS_EC2_METADATA_DISABLED": "true",
        "AWS_ENDPOINT_URL": endpoint_url,
        "WARMGATE_STAGE": "local",
        "POWERTOOLS_SERVICE_NAME": "warmgate",
        "POWERTOOLS_METRICS_NAMESPACE": "warmgate-bench",
    }


@contextlib.contextmanager
def quiet_handlers() -> Iterator[None]:
    """Send the Powertools log lines and EMF blobs to a null sink instead of the terminal.

    They are still formatted and written (Lambda pays for that too), only not shown. The
    logger's handler keeps the stream it was created with, so it is swapped explicitly.
    """
    from warmgate.observability import logger

    handler = logger.registered_handler
    with open(os.devnull, "w") as sink, contextlib.redirect_stdout(sink):
        previous = handler.setStream(sink) if isinstance(handler, logging.StreamHandler) else None
        try:
            yield
        finally:
            if previous is not None and isinstance(handler, logging.StreamHandler):
                handler.setStream(previous)


def expectation(email: str, now: datetime | None = None) -> ExpectedMailbox:
    """A live expectation, as OnboardingFunction leaves it after issuing a consent link."""
    now = now or datetime.now(UTC)
    return ExpectedMailbox(
        email=email,
        state=MailboxState.CONSENT_REQUESTED,
        first_name="Bench",
        requested_by="bench",
        requested_at=iso(now),
        expires_at=iso(now + timedelta(hours=2)),
        updated_at=iso(now),
        consent_url="https://login.microsoftonline.com/common?client_id=bench&state=bench",
    )


def pending_body(campaign_id: str, email: str) -> str:
    """The WorkQueue message the webhook writes for a campaign.pending webhook."""
    payload = {
        "type": EventType.PENDING,
        "action": "pending",
        "account": {"campaign_id": int(campaign_id), "email": email, "provider_type": "office"},
    }
    return QueuedWebhook(
        event_type=EventType.PENDING,
        campaign_id=campaign_id,
        email=email,
        dedup_key=f"campaign.pending:{campaign_id}",
        received_at=iso(datetime.now(UTC)),
        request_id="bench-request",
        payload=payload,
    ).message_body()


_message_ids = itertools.count()


def sqs_event(bodies: list[str]) -> dict[str, Any]:
    """An SQS event as Lambda's event source mapping delivers it (first receive)."""
    records = []
    for body in bodies:
        records.append(
            {
                "messageId": f"bench-{next(_message_ids):08d}",
                "receiptHandle": "bench-receipt",
                "body": body,
                "attributes": {
                    "ApproximateReceiveCount": "1",
                    "SentTimestamp": "1795993702000",
                    "SenderId": "AROAEXAMPLE:warmgate-WebhookFunction",
                    "ApproximateFirstReceiveTimestamp": "1795993702010",
                },
                "messageAttributes": {},
                "md5OfBody": hashlib.md5(body.encode()).hexdigest(),  # noqa: S324
                "eventSource": "aws:sqs",
                "eventSourceARN": QUEUE_ARN,
                "awsRegion": REGION,
            }
        )
    return {"Records": records}


def use_budget(module: ModuleType, budget_for: Callable[[Any], RateBudget]) -> None:
    """Rebuild a worker module's CampaignWorker as its handler does, around another RateBudget
    (one that never waits, or one on a time-scaled clock).

    Call it with the module's environment in place: the DynamoDB client is created here."""
    dynamodb = aws.client("dynamodb")
    module.batch.worker = worker_from_settings(module.settings, dynamodb, budget_for(dynamodb))
