"""WorkQueue's message contract and sender, shared by every producer and the worker.

Producers: the webhook receiver (one message per accepted webhook), the reconciler (a campaign
a lost webhook would have stranded) and the worker itself (a deferral). All send the same
schema, so the worker stays the one place that decides.

On the webhook's hot path: stdlib, botocore and warmgate.domain.webhooks only.
"""

from __future__ import annotations

import json
import re
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from warmgate.domain.webhooks import WebhookEnvelope

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import (
        MessageAttributeValueTypeDef,
        MessageTypeDef,
        SendMessageRequestTypeDef,
    )

QUEUE_MESSAGE_SCHEMA: Final = 1
ATTEMPT_ATTRIBUTE: Final = "attempt"
# API Gateway's or Lambda's request id is ~40 characters; the cut keeps the message's size bound
# independent of what a caller passes.
MAX_REQUEST_ID_LENGTH: Final = 128

# Characters SQS refuses in a message body or String attribute (it accepts #x9, #xA, #xD,
# #x20-#xD7FF, #xE000-#xFFFD, #x10000-#x10FFFF), so that odd input cannot make SendMessage fail
# forever: escaped in the body (message_body), replaced in attributes. Written as the small
# refused set: the complement's class takes ~10 ms to compile at cold start.
_NOT_SQS_TEXT: Final = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _iso_utc(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


@dataclass(frozen=True, slots=True)
class QueuedWebhook:
    """The one message WorkQueue carries per webhook (schema 1).

    The envelope's fields are what the worker routes on (`dedup_key` only names the event in
    its logs: the worker dedups on its records); `payload` is the body as
    Mailivery sent it (parsed, untouched), so a later fix to the parser can re-read it.
    `email_hint_invalid`: the webhook carried an email that is no usable address (`email` is
    then None); added within schema 1, so a message without it reads as False.

    Every field is bounded (README "Limits"): `event_type` 128 characters, `campaign_id` 64,
    `email` 254, `request_id` 128, `payload` by the 64 KiB webhook body; with the worst-case
    re-serialization of the payload the message stays under SQS's 256 KiB (see message_body).
    """

    event_type: str
    campaign_id: str | None
    email: str | None
    dedup_key: str
    received_at: str
    request_id: str
    payload: dict[str, Any]
    email_hint_invalid: bool = False
    schema: int = QUEUE_MESSAGE_SCHEMA
    # Start/resume attempts already made for this event; travels as the `attempt` message
    # attribute of a re-enqueued copy, so retries stay bounded (warmgate.services.worker).
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
            request_id=request_id[:MAX_REQUEST_ID_LENGTH],
            payload=payload,
            email_hint_invalid=envelope.email_hint_invalid,
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
            email_hint_invalid=document.get("email_hint_invalid") is True,
            attempt=attempt,
        )

    def message_body(self) -> str:
        """The JSON body: UTF-8 as sent, with only what SQS refuses escaped.

        Not ensure_ascii: escaping every non-ASCII character (and DEL) makes a byte up to six
        (`\\u007f`), so a 64 KiB webhook could exceed SQS's 256 KiB. Here a string keeps its
        size, U+FFFE/U+FFFF/lone surrogates become 6-byte escapes (json.dumps already escapes
        control characters, and these can only sit inside strings, where the escape means the
        same). The worst growth left is json's float formatting (`9e15` becomes
        `9000000000000000.0`, 3.8x): a 64 KiB webhook of such numbers stays under 256 KiB
        (tests/unit/test_webhook_intake.py builds the largest one).
        """
        text = json.dumps(
            {
                "schema": self.schema,
                "event_type": self.event_type,
                "campaign_id": self.campaign_id,
                "email": self.email,
                "email_hint_invalid": self.email_hint_invalid,
                "dedup_key": self.dedup_key,
                "received_at": self.received_at,
                "request_id": self.request_id,
                "payload": self.payload,
            },
            ensure_ascii=False,
            separators=(",", ":"),
        )
        return _NOT_SQS_TEXT.sub(_json_escape, text)

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


def _json_escape(match: re.Match[str]) -> str:
    return f"\\u{ord(match.group()):04x}"


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

    def send_unchanged(self, message: MessageTypeDef) -> str:
        """Put back a message received from another queue (WorkDLQ, by the operator CLI's
        redrive): the same body and message attributes, so even one the worker cannot read
        returns as it was. SQS's own attributes (receive count, timestamps) start anew."""
        return self._sqs.send_message(
            QueueUrl=self._queue_url,
            MessageBody=message["Body"],
            MessageAttributes=_resendable(message),
        )["MessageId"]


def _resendable(message: MessageTypeDef) -> dict[str, MessageAttributeValueTypeDef]:
    """A received message's attributes as SendMessage takes them (DataType and value only)."""
    copies: dict[str, MessageAttributeValueTypeDef] = {}
    for name, value in message.get("MessageAttributes", {}).items():
        copy: MessageAttributeValueTypeDef = {"DataType": value["DataType"]}
        if "StringValue" in value:
            copy["StringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            copy["BinaryValue"] = value["BinaryValue"]
        copies[name] = copy
    return copies
