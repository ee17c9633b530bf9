"""WorkDLQ as the operator sees it: peek at its messages, move them back to WorkQueue.

Redrive receives, sends and deletes, rather than SQS's StartMessageMoveTask (the console's
"DLQ redrive"), for three reasons:
- `--max N`: a move task moves the whole queue (its only limit is a rate), while an operator
  looking into a poison message wants to try a few first;
- the local stack and the tests: moto does not implement StartMessageMoveTask
  (tests/integration/test_ops.py pins that, so the day it does is noticed);
- the summary: a move task is asynchronous and reports approximate counts, this path counts
  each message it moved and names each one it could not.
Sending goes through WorkQueue (warmgate.adapters.sqs), the one sender to that queue.
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from warmgate.adapters.sqs import QueuedWebhook, WorkQueue
from warmgate.domain.mailboxes import iso

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

SQS_BATCH = 10  # ReceiveMessage / *Batch maximum
# A message taken from the DLQ stays hidden this long; enough to send and delete one batch.
# A peek gives its messages back at once; a crashed run's messages come back after this.
HOLD_SECONDS = 30


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message_id: str
    event_type: str | None  # None: not a readable QueuedWebhook
    campaign_id: str | None
    email: str | None
    receive_count: int  # SQS's count, including this CLI's own receive
    sent_at: datetime | None  # first enqueue: a redriven message keeps its original timestamp

    @classmethod
    def from_sqs(cls, message: MessageTypeDef) -> DeadLetter:
        attributes = message.get("Attributes", {})
        sent_ms = attributes.get("SentTimestamp")
        try:
            webhook: QueuedWebhook | None = QueuedWebhook.from_message_body(message["Body"])
        except (ValueError, KeyError, TypeError):
            webhook = None
        return cls(
            message_id=message["MessageId"],
            event_type=webhook.event_type if webhook else None,
            campaign_id=webhook.campaign_id if webhook else None,
            email=webhook.email if webhook else None,
            receive_count=int(attributes.get("ApproximateReceiveCount", 0)),
            sent_at=datetime.fromtimestamp(int(sent_ms) / 1000, UTC) if sent_ms else None,
        )

    def view(self, now: datetime) -> dict[str, Any]:
        age = None if self.sent_at is None else int((now - self.sent_at).total_seconds())
        return {
            "message_id": self.message_id,
            "event_type": self.event_type or "<unreadable body>",
            "campaign_id": self.campaign_id,
            "email": self.email,
            "receive_count": self.receive_count,
            "sent_at": None if self.sent_at is None else iso(self.sent_at),
            "age_seconds": age,
        }


@dataclass(frozen=True, slots=True)
class RedriveReport:
    moved: int
    send_failed: int  # left in the DLQ; visible again after HOLD_SECONDS
    not_deleted: int  # sent but still in the DLQ: a re-run would send these once more


@dataclass(slots=True)
class _Tally:
    """A redrive's counts as it goes."""

    sent: set[str] = field(default_factory=set)  # message ids: one received twice is sent once
    failed: int = 0
    not_deleted: int = 0


class DeadLetterQueue:
    def __init__(self, sqs: SQSClient, url: str, *, wait_seconds: int) -> None:
        self._sqs = sqs
        self.url = url
        self._wait = wait_seconds  # long polling: a short poll may miss messages of small queues

    def approximate_size(self) -> int:
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes.get("ApproximateNumberOfMessages", 0))

    def peek(self, limit: int) -> list[DeadLetter]:
        """Up to `limit` messages, each received once and made visible again right away."""
        held: dict[str, MessageTypeDef] = {}
        try:
            for _ in range(limit):  # bounded: every round takes at least one message or stops
                batch = self._take(min(SQS_BATCH, limit - len(held)))
                held |= {m["MessageId"]: m for m in batch}
                if not batch or len(held) >= limit:
                    break
        finally:
            self._give_back(list(held.values()))
        return [DeadLetter.from_sqs(m) for m in held.values()]

    def redrive(
        self, target: WorkQueue, limit: int, progress: Callable[[int], None]
    ) -> RedriveReport:
        """Move up to `limit` messages to `target`, each sent and then at once deleted.

        A crash between the two leaves that one message in both queues; the worker dedups it
        (the claim or the ledger entry of its campaign), so a re-run is safe.
        """
        tally = _Tally()
        taken = 0
        for _ in range(limit):  # bounded: every round takes at least one message or stops
            batch = self._take(min(SQS_BATCH, limit - taken))
            if not batch:
                break
            taken += len(batch)
            for message in batch:
                self._move(message, target, tally)
            progress(len(tally.sent))
            if taken >= limit:
                break
        return RedriveReport(len(tally.sent), tally.failed, tally.not_deleted)

    def _move(self, message: MessageTypeDef, target: WorkQueue, tally: _Tally) -> None:
        message_id = message["MessageId"]
        try:
            if message_id not in tally.sent:  # else: received again after its hold ran out
                target.send_unchanged(message)
                tally.sent.add(message_id)
        except ClientError as exc:
            tally.failed += 1
            print(f"not moved {message_id}: {exc}", file=sys.stderr)
            return
        try:
            self._sqs.delete_message(QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"])
        except ClientError as exc:
            tally.not_deleted += 1
            print(f"moved but not deleted {message_id}: {exc}", file=sys.stderr)

    def _take(self, count: int) -> list[MessageTypeDef]:
        return self._sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=count,
            VisibilityTimeout=HOLD_SECONDS,
            WaitTimeSeconds=self._wait,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])

    def _give_back(self, messages: Sequence[MessageTypeDef]) -> None:
        for start in range(0, len(messages), SQS_BATCH):
            chunk = messages[start : start + SQS_BATCH]
            response = self._sqs.change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for n, m in enumerate(chunk)
                ],
            )
            if response.get("Failed"):
                print(
                    f"{len(response['Failed'])} message(s) stay hidden up to {HOLD_SECONDS} s",
                    file=sys.stderr,
                )
