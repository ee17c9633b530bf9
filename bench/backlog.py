"""The throughput benchmark's backlog: expectations and pending campaigns seeded, and their
webhooks fed to WorkQueue as the workers drain it; the budget's sleep, counted."""

from __future__ import annotations

import threading
import time
from typing import Any, Final

from bench.harness import TABLE, expectation, pending_body
from devstack.sandbox import SandboxControl
from warmgate.adapters.dynamodb import MailboxRepository

QUEUE_DEPTH: Final = 60  # 3 batches of 10 per worker: neither can run dry between top-ups


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
