"""The local SQS event source's batching window (devstack.sqs_poller.poll_once): a fake queue
whose messages arrive at set times on a simulated clock."""

from __future__ import annotations

from typing import Any

import pytest

from devstack.sqs_poller import poll_once

QUEUE_URL = "http://127.0.0.1:5000/123456789012/warmgate-WorkQueue"
QUEUE_ARN = "arn:aws:sqs:eu-west-1:123456789012:warmgate-WorkQueue"


class SimClock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        assert seconds >= 0
        self.now += seconds


class FakeQueue:
    """receive_message returns the messages that have arrived by the clock's time."""

    def __init__(self, clock: SimClock, arrivals: list[float]) -> None:
        self._clock = clock
        self._waiting = [(at, f"m{n}") for n, at in enumerate(arrivals)]
        self.deleted: list[str] = []

    def receive_message(self, *, MaxNumberOfMessages: int, **_: Any) -> Any:
        due = [m for m in self._waiting if m[0] <= self._clock.now][:MaxNumberOfMessages]
        self._waiting = [m for m in self._waiting if m not in due]
        return {
            "Messages": [
                {"MessageId": mid, "ReceiptHandle": f"r-{mid}", "Body": "{}"} for _, mid in due
            ]
        }

    def delete_message_batch(self, *, QueueUrl: str, Entries: list[dict[str, str]]) -> Any:
        self.deleted += [entry["ReceiptHandle"] for entry in Entries]
        return {}


def deliver(arrivals: list[float], window: float) -> tuple[list[list[str]], float, FakeQueue]:
    """One poll at t=0 (after the first arrival); the batches the handler got, and when."""
    clock = SimClock()
    queue = FakeQueue(clock, arrivals)
    batches: list[list[str]] = []
    invoked_at: list[float] = []

    def handler(event: dict[str, Any], _context: Any) -> Any:
        batches.append([record["messageId"] for record in event["Records"]])
        invoked_at.append(clock.now)
        return {"batchItemFailures": []}

    poll_once(
        queue,
        QUEUE_URL,
        QUEUE_ARN,
        handler,
        None,
        batching_window=window,
        clock=clock,
        sleep=clock.sleep,
    )
    return batches, invoked_at[0] if invoked_at else -1.0, queue


def test_poll_once_without_window_invokes_with_what_the_first_receive_returns() -> None:
    batches, invoked_at, queue = deliver([0.0, 0.3], window=0)

    assert batches == [["m0"]]
    assert invoked_at == 0.0
    assert queue.deleted == ["r-m0"]


def test_poll_once_window_gathers_what_arrives_before_it_closes() -> None:
    batches, invoked_at, queue = deliver([0.0, 0.3, 0.9, 1.2], window=1)

    assert batches == [["m0", "m1", "m2"]]  # m3 arrived after the window closed
    assert invoked_at == pytest.approx(1.0)
    assert queue.deleted == ["r-m0", "r-m1", "r-m2"]


def test_poll_once_window_ends_early_once_the_batch_is_full() -> None:
    batches, invoked_at, _ = deliver([0.0] + [0.2] * 9 + [0.4], window=5)

    assert batches == [[f"m{n}" for n in range(10)]]
    assert invoked_at == pytest.approx(0.2)


def test_poll_once_empty_queue_invokes_nothing_and_does_not_wait() -> None:
    batches, invoked_at, _ = deliver([], window=5)

    assert batches == []
    assert invoked_at == -1.0
