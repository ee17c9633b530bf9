"""Unit tests for the time budget: the Mailivery client's per-call deadline, and the worker's
batch processor that declines records it has no time to finish (warmgate.api.batch).

The client runs on httpx's in-process MockTransport and a simulated clock whose sleep
advances it, so every figure is exact and nothing waits.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import httpx
import pytest
from aws_lambda_powertools.utilities.batch import EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from hypothesis import given, settings
from hypothesis import strategies as st

from tests.properties import examples
from warmgate.adapters.budget import DEFAULT_MAX_WAIT
from warmgate.adapters.mailivery import (
    MailiveryClient,
    MailiveryError,
    RateLimited,
    RetryPolicy,
    ServerError,
)
from warmgate.adapters.mailivery.client import call_deadline_seconds
from warmgate.api.batch import OutOfTime, TimeBoxedBatchProcessor, ensure_time_for
from warmgate.settings import WorkerSettings
from warmgate.wiring import (
    AWS_CALLS_ALLOWANCE_SECONDS,
    claim_hold_seconds,
    worker_record_seconds,
    worst_case_call_seconds,
)

# What a worker cannot run without; everything else at its default.
WORKER_ENVIRONMENT = {
    "MAILBOX_TABLE_NAME": "warmgate-mailboxes",
    "WORK_QUEUE_URL": "http://127.0.0.1/queue",
    "MAILIVERY_API_KEY_SECRET": "warmgate/mailivery-api-key",
}
CAMPAIGN = {"success": True, "data": {"id": 4711, "email": "a@contoso.com", "status": "pending"}}
TIMEOUT = httpx.Timeout(10.0, connect=3.05)
THROTTLE_WAIT = 1.0
ATTEMPT = THROTTLE_WAIT + 3.05 + 10.0  # one attempt at its worst


class SimulatedTime:
    def __init__(self) -> None:
        self.now = 0.0

    def clock(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def client_on(
    time: SimulatedTime,
    answer: Callable[[httpx.Request], httpx.Response],
    *,
    retry: RetryPolicy | None = None,
    throttle: Callable[[], None] | None = None,
) -> MailiveryClient:
    return MailiveryClient(
        base_url="https://mailivery.test/api/v1",
        api_key=lambda: "key",
        timeout=TIMEOUT,
        retry=retry or RetryPolicy(),
        http=httpx.Client(transport=httpx.MockTransport(answer)),
        sleep=time.sleep,
        clock=time.clock,
        throttle=throttle,
        throttle_max_wait=THROTTLE_WAIT,
    )


def server_error() -> httpx.Response:
    return httpx.Response(503, json={"success": False, "message": "unavailable"})


# --- the deadline of one call --------------------------------------------------------------


def test_deadline_of_a_read_counts_every_attempt_and_the_longest_pause_between() -> None:
    retry = RetryPolicy(attempts=3, max_delay=2.0, max_retry_after=5.0)

    deadline = call_deadline_seconds(retry, TIMEOUT, THROTTLE_WAIT, retried=True)

    assert deadline == pytest.approx(3 * ATTEMPT + 2 * 5.0)


def test_deadline_of_a_write_is_one_attempt() -> None:
    deadline = call_deadline_seconds(RetryPolicy(), TIMEOUT, THROTTLE_WAIT, retried=False)

    assert deadline == pytest.approx(ATTEMPT)


def test_deadline_without_a_read_timeout_is_unbounded() -> None:
    deadline = call_deadline_seconds(
        RetryPolicy(), httpx.Timeout(None, connect=3.05), THROTTLE_WAIT, retried=False
    )

    assert deadline == float("inf")


def test_worst_case_from_settings_uses_the_configured_timeouts_retries_and_budget_wait() -> None:
    configured = WorkerSettings.from_environ(
        WORKER_ENVIRONMENT
        | {
            "MAILIVERY_CONNECT_TIMEOUT_SECONDS": "2",
            "MAILIVERY_READ_TIMEOUT_SECONDS": "7",
            "MAILIVERY_READ_RETRIES": "1",
        }
    )
    pause = RetryPolicy().longest_pause

    assert worst_case_call_seconds(configured) == pytest.approx(
        2 * (DEFAULT_MAX_WAIT + 2 + 7) + pause
    )
    assert worst_case_call_seconds(configured, retried=False) == pytest.approx(
        DEFAULT_MAX_WAIT + 2 + 7
    )


def test_worker_record_is_a_reread_then_the_claimed_action_and_its_check() -> None:
    defaults = WorkerSettings.from_environ(WORKER_ENVIRONMENT)
    read, write = (
        worst_case_call_seconds(defaults),
        worst_case_call_seconds(defaults, retried=False),
    )

    assert claim_hold_seconds(defaults) == pytest.approx(write + read + AWS_CALLS_ALLOWANCE_SECONDS)
    assert worker_record_seconds(defaults) == pytest.approx(
        2 * read + write + AWS_CALLS_ALLOWANCE_SECONDS
    )


def test_default_claim_lease_outlasts_a_claim_held_by_a_live_worker() -> None:
    defaults = WorkerSettings.from_environ(WORKER_ENVIRONMENT)

    assert defaults.claim_lease_seconds > claim_hold_seconds(defaults)


# --- the client keeps to it ----------------------------------------------------------------


def test_read_within_the_timeouts_uses_every_attempt() -> None:
    time = SimulatedTime()
    calls: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(time.now)
        time.now += 10.0  # slow, but inside the read timeout
        return server_error() if len(calls) < 3 else httpx.Response(200, json=CAMPAIGN)

    campaign = client_on(time, answer).get_campaign("4711")

    assert campaign.campaign_id == "4711"
    assert len(calls) == 3


def test_read_slower_than_its_timeouts_stops_retrying_at_its_deadline() -> None:
    time = SimulatedTime()
    calls: list[float] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(time.now)
        time.now += 25.0  # a response trickling in: no single read exceeds the timeout
        return server_error()

    client = client_on(time, answer)
    deadline = call_deadline_seconds(RetryPolicy(), TIMEOUT, THROTTLE_WAIT, retried=True)

    with pytest.raises(ServerError):
        client.get_campaign("4711")

    # The second attempt could still end in time (25 + pause + 14.05 <= 52.15); a third,
    # starting after 50 s, could not.
    assert len(calls) == 2
    assert calls[-1] + ATTEMPT <= deadline


def test_short_retry_after_is_slept_through_long_one_is_returned() -> None:
    time = SimulatedTime()
    waits = iter(["3", "30"])

    def answer(request: httpx.Request) -> httpx.Response:
        return httpx.Response(429, headers={"Retry-After": next(waits)}, json={"success": False})

    with pytest.raises(RateLimited) as raised:
        client_on(time, answer).get_campaign("4711")

    assert time.now == pytest.approx(3.0)  # slept the first, not the second
    assert raised.value.retry_after == pytest.approx(30.0)


def test_writes_are_tried_once_whatever_the_time_left() -> None:
    time = SimulatedTime()
    calls: list[str] = []

    def answer(request: httpx.Request) -> httpx.Response:
        calls.append(request.method)
        return server_error()

    with pytest.raises(ServerError):
        client_on(time, answer).start_warmup("4711")

    assert calls == ["PATCH"]


@settings(max_examples=examples(200), deadline=None)
@given(
    answers=st.lists(
        st.tuples(
            st.floats(0, THROTTLE_WAIT),  # budget wait
            st.floats(0, 3.05 + 10.0),  # connect + read, within the timeouts
            st.sampled_from(["503", "429", "timeout"]),
            st.integers(0, 8),  # Retry-After
        ),
        min_size=3,
        max_size=3,
    )
)
def test_read_whose_attempts_keep_to_the_timeouts_ends_within_its_deadline(
    answers: list[tuple[float, float, str, int]],
) -> None:
    time = SimulatedTime()
    script = iter(answers)
    current: list[tuple[float, float, str, int]] = []

    def throttle() -> None:
        current[:] = [next(script)]
        time.now += current[0][0]

    def answer(request: httpx.Request) -> httpx.Response:
        _, duration, kind, retry_after = current[0]
        time.now += duration
        if kind == "timeout":
            raise httpx.ReadTimeout("slow", request=request)
        if kind == "429":
            return httpx.Response(429, headers={"Retry-After": str(retry_after)}, json={})
        return server_error()

    client = client_on(time, answer, throttle=throttle)

    with pytest.raises(MailiveryError):
        client.get_campaign("4711")

    assert time.now <= call_deadline_seconds(RetryPolicy(), TIMEOUT, THROTTLE_WAIT, retried=True)


# --- the worker's batches: records it has no time for ----------------------------------------


class FakeContext:
    """A Lambda context whose clock runs as records are handled."""

    def __init__(self, remaining_ms: int) -> None:
        self.remaining_ms = remaining_ms

    def get_remaining_time_in_millis(self) -> int:
        return self.remaining_ms


SQS_RECORD: dict[str, Any] = {
    "messageId": "",
    "receiptHandle": "handle",
    "body": "{}",
    "attributes": {"ApproximateReceiveCount": "1"},
    "messageAttributes": {},
    "md5OfBody": "",
    "eventSource": "aws:sqs",
    "eventSourceARN": "arn:aws:sqs:eu-west-1:123456789012:WorkQueue",
    "awsRegion": "eu-west-1",
}
NEEDED_S = 100.0


def batch(*ids: str) -> dict[str, Any]:
    return {"Records": [copy.deepcopy(SQS_RECORD) | {"messageId": i} for i in ids]}


def run_batch(
    event: dict[str, Any], context: FakeContext, work: Callable[[SQSRecord], None]
) -> tuple[list[str], list[str]]:
    """Process like the worker does; returns (ids handled, ids reported failed)."""
    handled: list[str] = []

    def handle_record(record: SQSRecord, lambda_context: FakeContext) -> None:
        ensure_time_for(lambda_context, NEEDED_S)  # type: ignore[arg-type]
        handled.append(record.message_id)
        work(record)

    response = process_partial_response(
        event=event,
        record_handler=handle_record,
        processor=TimeBoxedBatchProcessor(event_type=EventType.SQS),
        context=context,  # type: ignore[arg-type]
    )
    return handled, [f["itemIdentifier"] for f in response["batchItemFailures"]]


def test_batch_with_too_little_time_left_handles_nothing_and_reports_every_record() -> None:
    context = FakeContext(remaining_ms=int(NEEDED_S * 1000) - 1)

    handled, failed = run_batch(batch("m1", "m2", "m3"), context, lambda record: None)

    assert handled == []
    assert failed == ["m1", "m2", "m3"]  # a partial response, not an exception


def test_batch_stops_starting_records_once_the_time_left_drops_below_one_record() -> None:
    context = FakeContext(remaining_ms=int(NEEDED_S * 1000) + 30_000)

    def slow(record: SQSRecord) -> None:
        context.remaining_ms -= 20_000  # each record takes 20 s of the invocation

    handled, failed = run_batch(batch("m1", "m2", "m3", "m4"), context, slow)

    assert handled == ["m1", "m2"]
    assert failed == ["m3", "m4"]


def test_batch_whose_records_all_fail_still_fails_the_invocation() -> None:
    def broken(record: SQSRecord) -> None:
        raise ValueError("poison")

    with pytest.raises(BatchProcessingError):
        run_batch(batch("m1", "m2"), FakeContext(remaining_ms=900_000), broken)


def test_batch_with_a_failed_record_and_records_out_of_time_reports_both() -> None:
    context = FakeContext(remaining_ms=int(NEEDED_S * 1000) + 1)

    def fails_and_uses_the_time(record: SQSRecord) -> None:
        context.remaining_ms -= 10_000
        raise ValueError("vendor down")

    handled, failed = run_batch(batch("m1", "m2"), context, fails_and_uses_the_time)

    assert handled == ["m1"]
    assert failed == ["m1", "m2"]


def test_out_of_time_names_what_is_left_and_what_a_record_needs() -> None:
    with pytest.raises(OutOfTime, match=r"2\.5 s left .* 100\.0 s"):
        ensure_time_for(FakeContext(remaining_ms=2_500), NEEDED_S)  # type: ignore[arg-type]
