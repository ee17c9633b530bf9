"""WorkQueue's message contract and sender, shared by every producer and the worker.

Producers: the webhook receiver (one message per accepted webhook), the reconciler (a campaign
a lost webhook would have stranded) and the worker itself (a deferral). All send the same
schema, so the worker stays the one place that decides.

On the webhook's hot path: stdlib, botocore and warmgate.webhooks only.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from warmgate.webhooks import WebhookEnvelope

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import (
        MessageAttributeValueTypeDef,
        SendMessageRequestTypeDef,
    )

QUEUE_MESSAGE_SCHEMA: Final = 1
ATTEMPT_ATTRIBUTE: Final = "attempt"

# Characters SQS refuses in a message attribute's String value (it accepts #x9, #xA, #xD,
# #x20-#xD7FF, #xE000-#xFFFD, #x10000-#x10FFFF). They are replaced so that an odd `type` cannot
# make SendMessage fail forever (the body is pure ASCII, see message_body). Written as the small
# refused set: the complement's class takes ~10 ms to compile at cold start.
_NOT_SQS_TEXT: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class QueuedWebhook:
    """The one message WorkQueue carries per webhook (schema 1).

    The envelope's fields are what the worker routes and dedups on; `payload` is the body as
    Mailivery sent it (parsed, untouched), so a later fix to the parser can re-read it.
    """

    event_type: str
    campaign_id: str | None
    email: str | None
    dedup_key: str
    received_at: str
    request_id: str
    payload: dict[str, Any]
    schema: int = QUEUE_MESSAGE_SCHEMA
    # Start/resume attempts already made for this event; travels as the `attempt` message
    # attribute of a re-enqueued copy, so retries stay bounded (warmgate.worker).
    attempt: int = 0

    @classmethod
    def from_envelope(
        cls,
        envelope: WebhookEnvelope,
        payload: dict[str, Any],
        *,
        received_at: datetime,
        request_id: str,
    ) -> QueuedWebhook:
        return cls(
            event_type=envelope.type,
            campaign_id=envelope.campaign_id,
            email=envelope.normalized_email,
            dedup_key=envelope.dedup_key,
            received_at=_iso_utc(received_at),
            request_id=request_id,
            payload=payload,
        )

    @classmethod
    def for_campaign(
        cls,
        event_type: str,
        campaign_id: str | None,
        email: str | None,
        *,
        now: datetime,
        details: dict[str, Any] | None = None,
    ) -> QueuedWebhook:
        """A message warmgate queues itself (a resume request, a reconciliation): the worker
        handles it like a webhook, with the same re-read, claims and idempotency."""
        return cls(
            event_type=event_type,
            campaign_id=campaign_id,
            email=email,
            dedup_key=f"{event_type}:{campaign_id}",
            received_at=_iso_utc(now),
            request_id=f"warmgate-{uuid.uuid4()}",
            payload={"source": "warmgate", **(details or {})},
        )

    @classmethod
    def from_message_body(cls, body: str, *, attempt: int = 0) -> QueuedWebhook:
        """Read a message written by `message_body` (the worker's side of the contract);
        `attempt` is its `attempt` message attribute."""
        document = json.loads(body)
        if not isinstance(document, dict) or document.get("schema") != QUEUE_MESSAGE_SCHEMA:
            raise ValueError(f"not a schema {QUEUE_MESSAGE_SCHEMA} webhook message")
        return cls(
            event_type=str(document["event_type"]),
            campaign_id=document.get("campaign_id"),
            email=document.get("email"),
            dedup_key=str(document["dedup_key"]),
            received_at=str(document["received_at"]),
            request_id=str(document["request_id"]),
            payload=dict(document["payload"]),
            attempt=attempt,
        )

    def message_body(self) -> str:
        # ensure_ascii: SQS refuses some Unicode (U+FFFE, lone surrogates) that valid JSON can
        # carry, and a refused message would be retried forever. Escaping at most triples a
        # 64 KiB body, which stays under SQS's 256 KiB (historical) message limit.
        return json.dumps(
            {
                "schema": self.schema,
                "event_type": self.event_type,
                "campaign_id": self.campaign_id,
                "email": self.email,
                "dedup_key": self.dedup_key,
                "received_at": self.received_at,
                "request_id": self.request_id,
                "payload": self.payload,
            },
            ensure_ascii=True,
            separators=(",", ":"),
        )

    def message_attributes(self) -> dict[str, MessageAttributeValueTypeDef]:
        """Routing hints visible without parsing the body (e.g. for a future filter)."""
        attributes: dict[str, MessageAttributeValueTypeDef] = {
            "event_type": {"DataType": "String", "StringValue": _sqs_text(self.event_type)},
            "dedup_key": {"DataType": "String", "StringValue": _sqs_text(self.dedup_key)},
        }
        if self.attempt:
            attributes[ATTEMPT_ATTRIBUTE] = {"DataType": "Number", "StringValue": str(self.attempt)}
        return attributes


def _sqs_text(value: str) -> str:
    return _NOT_SQS_TEXT.sub("\ufffd", value) or "\ufffd"


class WorkQueue:
    """Sends QueuedWebhook messages; SQS errors propagate (botocore's) for the caller to map."""

    def __init__(self, sqs: SQSClient, queue_url: str) -> None:
        self._sqs = sqs
        self._queue_url = queue_url

    def send(self, message: QueuedWebhook, *, delay_seconds: int = 0) -> str:
        """Returns the SQS message id. `delay_seconds` (≤ 900) keeps it invisible that long."""
        request: SendMessageRequestTypeDef = {
            "QueueUrl": self._queue_url,
            "MessageBody": message.message_body(),
            "MessageAttributes": message.message_attributes(),
        }
        if delay_seconds:
            request["DelaySeconds"] = delay_seconds
        return self._sqs.send_message(**request)["MessageId"]
