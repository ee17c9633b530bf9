"""WorkerFunction against moto (table and queues from template.yaml) and the Mailivery sandbox.

Expectations are created through the real OnboardingFunction and campaigns through the
sandbox's consent step, so every test runs the onboarding flow as it happens in production.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from types import ModuleType

import boto3
import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError
from moto import mock_aws

from devstack.sandbox import MailiverySandbox, SandboxControl
from devstack.sqs_poller import poll_once
from devstack.template import create_queues, create_table
from devstack.testkit import LambdaContext, load_function
from tests.integration.harness import (
    ADA,
    API_KEY,
    TABLE,
    Stack,
    expectation,
    message,
    pending,
    read_event,
    set_environment,
)
from warmgate.adapters.budget import RateBudget
from warmgate.adapters.dynamodb import MailboxRepository
from warmgate.wiring import worker_from_settings


def reload_worker(stack: Stack, monkeypatch: pytest.MonkeyPatch, **env: str) -> None:
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    stack.worker = load_function("worker")


# --- the decisions, end to end -------------------------------------------------------------------


def test_worker_expected_pending_campaign_is_started(stack: Stack) -> None:
    campaign_id = stack.consent(stack.expect())

    assert stack.deliver(pending(campaign_id)) == []

    assert len(stack.vendor_calls(f"/campaigns/{campaign_id}/start-warmup")) == 1
    record = stack.mailbox()
    assert record["state"] == "warming"
    assert record["campaign_id"] == campaign_id
    assert stack.control.campaigns()[0]["status"] == "active"


def test_worker_consent_with_other_case_email_is_still_expected(stack: Stack) -> None:
    campaign_id = stack.consent(stack.expect(), email="  ADA.Lovelace@CONTOSO.com")
    stack.deliver(pending(campaign_id, email=None))
    assert stack.mailbox()["state"] == "warming"


def test_worker_expected_paused_campaign_is_resumed(stack: Stack) -> None:
    campaign_id = stack.consent(stack.expect())
    stack.control.pause_campaign(campaign_id)

    stack.deliver(message("campaign.updated", campaign_id))

    assert len(stack.vendor_calls(f"/campaigns/{campaign_id}/resume-warmup")) == 1
    assert stack.vendor_calls("/start-warmup") == []
    assert stack.mailbox()["state"] == "warming"


def test_worker_campaign_already_active_is_recorded_warming_without_call(stack: Stack) -> None:
    campaign_id = stack.consent(stack.expect())
    stack.worker.batch.worker._mailivery.start_warmup(campaign_id)  # started elsewhere meanwhile

    stack.deliver(pending(campaign_id))
    stack.deliver(pending(campaign_id))

    record = stack.mailbox()
    assert (record["state"], record["campaign_id"]) == ("warming", campaign_id)
    assert len(stack.vendor_calls("/start-warmup")) == 1  # only the one made "elsewhere"
    assert stack.ledger(campaign_id) is None


def test_worker_unexpected_campaign_left_pending_by_default(stack: Stack) -> None:
    campaign_id = str(stack.control.seed_campaign(email="eve@contoso.com")["id"])

    stack.deliver(pending(campaign_id, "eve@contoso.com"))

    assert stack.vendor_calls("") == []  # no PATCH at all
    assert stack.vendor_calls("", method="DELETE") == []
    assert stack.ledger(campaign_id)["state"] == "left_pending"  # type: ignore[index]
    assert stack.control.campaigns()[0]["status"] == "pending"


def test_worker_unexpected_campaign_deleted_by_policy(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    reload_worker(stack, monkeypatch, UNEXPECTED_CAMPAIGN_POLICY="delete")
    campaign_id = str(stack.control.seed_campaign(email="eve@contoso.com")["id"])

    stack.deliver(pending(campaign_id, "eve@contoso.com"))

    assert len(stack.vendor_calls(f"/campaigns/{campaign_id}", method="DELETE")) == 1
    assert stack.ledger(campaign_id)["state"] == "deleted"  # type: ignore[index]
    assert stack.control.campaigns() == []


def test_worker_other_mailbox_consented_is_not_started(stack: Stack) -> None:
    """The owner signed in at Microsoft with another mailbox than the one requested."""
    campaign_id = stack.consent(stack.expect(), email="eve@contoso.com")

    stack.deliver(pending(campaign_id, "eve@contoso.com"))

    assert stack.vendor_calls("/start-warmup") == []
    assert stack.mailbox()["state"] == "consent_requested"
    assert stack.ledger(campaign_id)["state"] == "left_pending"  # type: ignore[index]


def test_worker_expired_expectation_is_rejected_not_started(stack: Stack) -> None:
    campaign_id = stack.consent(stack.expect())
    stack.aws.update_item(
        TableName=TABLE,
        Key={"pk": {"S": f"mailbox#{ADA}"}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"S": "2020-01-01T00:00:00Z"}},
    )

    stack.deliver(pending(campaign_id))

    assert stack.vendor_calls("/start-warmup") == []
    assert stack.mailbox()["state"] == "rejected"


def test_worker_withdrawn_expectation_is_not_started(stack: Stack) -> None:
    url = stack.expect()
    stack.onboarding.lambda_handler(read_event("onboarding-withdraw-mailbox.json"), LambdaContext())
    campaign_id = stack.consent(url)

    stack.deliver(pending(campaign_id))

    assert stack.vendor_calls("/start-warmup") == []
    assert stack.mailbox()["state"] == "withdrawn"


def test_worker_webhook_hint_is_not_trusted_over_reread(stack: Stack) -> None:
    """A payload claiming the expected email for someone else's campaign starts nothing."""
    stack.expect()
    campaign_id = str(stack.control.seed_campaign(email="eve@contoso.com")["id"])

    stack.deliver(pending(campaign_id, ADA))

    assert stack.vendor_calls("/start-warmup") == []
    assert stack.mailbox()["state"] == "consent_requested"


# --- duplicates and ordering ---------------------------------------------------------------------


def test_worker_three_duplicates_in_one_batch_one_start_call(stack: Stack) -> None:
    campaign_id = stack.consent(stack.expect())

    failures = stack.deliver(pending(campaign_id), pending(campaign_id), pending(campaign_id))

    assert failures == []
    assert len(stack.vendor_calls("/start-warmup")) == 1


def test_worker_duplicates_across_batches_and_event_types_one_start_call(stack: Stack) -> None:
    campaign_id = stack.consent(stack.expect())
    stack.deliver(pending(campaign_id))
    stack.deliver(message("campaign.created", campaign_id), pending(campaign_id))
    stack.deliver(message("campaign.updated", campaign_id))
    assert len(stack.vendor_calls("/start-warmup")) == 1
    assert stack.vendor_calls("/resume-warmup") == []


def test_worker_unexpected_duplicates_one_delete_call(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    reload_worker(stack, monkeypatch, UNEXPECTED_CAMPAIGN_POLICY="delete")
    campaign_id = str(stack.control.seed_campaign(email="eve@contoso.com")["id"])
    body = pending(campaign_id, "eve@contoso.com")

    stack.deliver(body, body)
    stack.deliver(body, message("campaign.deleted", campaign_id, "eve@contoso.com"))

    assert len(stack.vendor_calls("", method="DELETE")) == 1


def test_worker_deleted_before_pending_reordered_no_start(stack: Stack) -> None:
    campaign_id = stack.consent(stack.expect())
    stack.worker.batch.worker._mailivery.delete_campaign(campaign_id)  # deleted meanwhile

    stack.deliver(message("campaign.deleted", campaign_id), pending(campaign_id))

    assert stack.vendor_calls("/start-warmup") == []
    assert stack.ledger(campaign_id)["state"] == "deleted"  # type: ignore[index]


def test_worker_deleted_after_warming_marks_mailbox_deleted(stack: Stack) -> None:
    campaign_id = stack.consent(stack.expect())
    stack.deliver(pending(campaign_id))
    stack.worker.batch.worker._mailivery.delete_campaign(campaign_id)

    stack.deliver(message("campaign.deleted", campaign_id))

    assert stack.mailbox()["state"] == "deleted"


def test_worker_connection_problem_is_recorded_and_never_resumed_without_a_request(
    stack: Stack,
) -> None:
    campaign_id = stack.consent(stack.expect())
    stack.deliver(pending(campaign_id))
    stack.control.break_connection(campaign_id)

    stack.deliver(message("campaign.connection_problem", campaign_id))
    assert stack.mailbox()["state"] == "connection_problem"

    stack.deliver(message("campaign.updated", campaign_id), pending(campaign_id))
    assert stack.mailbox()["state"] == "connection_problem"
    assert stack.vendor_calls("/resume-warmup") == []


# --- failures, budget and retries ----------------------------------------------------------------


def test_worker_connection_failure_is_retried_then_parked(stack: Stack) -> None:
    campaign_id = stack.consent(stack.expect())
    stack.control.set_connection(ADA, ok=False)

    for attempt in range(1, 4):
        assert stack.deliver(pending(campaign_id)) == []  # deferred, not failed
        record = stack.mailbox()
        assert (record["state"], record["start_attempts"]) == ("start_failed", str(attempt))
    assert len(stack.deferred()) == 3

    assert stack.deliver(pending(campaign_id)) == []  # 4th refusal: parked, not deferred
    assert len(stack.deferred()) == 3
    assert stack.mailbox()["state"] == "start_failed"
    assert len(stack.vendor_calls("/start-warmup")) == 4


def test_worker_start_after_connection_fixed_succeeds(stack: Stack) -> None:
    campaign_id = stack.consent(stack.expect())
    stack.control.set_connection(ADA, ok=False)
    stack.deliver(pending(campaign_id))
    stack.control.set_connection(ADA, ok=True)

    stack.deliver(pending(campaign_id))

    record = stack.mailbox()
    assert (record["state"], record["start_attempts"]) == ("warming", "0")


def test_worker_vendor_429_defers_message_and_releases_claim(stack: Stack) -> None:
    campaign_id = stack.consent(stack.expect())
    stack.control.set_rate_limit(1)
    stack.worker.batch.worker._mailivery.list_campaigns()  # the window's only request

    assert stack.deliver(pending(campaign_id)) == []

    assert len(stack.deferred()) == 1
    assert stack.mailbox()["state"] == "consent_requested"
    assert stack.vendor_calls("/start-warmup") == []


def test_worker_429_on_start_releases_claim_for_the_retry(stack: Stack) -> None:
    campaign_id = stack.consent(stack.expect())
    stack.control.set_rate_limit(1)  # a fresh window: the re-read passes, the start gets 429

    stack.deliver(pending(campaign_id))

    assert len(stack.deferred()) == 1
    assert stack.mailbox()["state"] == "consent_requested"


def test_worker_defers_a_429_storm_for_as_long_as_its_retry_after(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign_id = stack.consent(stack.expect())
    delays = stack.record_deferral_delays(monkeypatch)
    stack.control.storm(300)  # nothing but 429 + Retry-After for 5 minutes

    assert stack.deliver(pending(campaign_id)) == []

    assert len(delays) == 1
    assert 290 <= delays[0] <= 300  # back when the storm is over, not into it
    assert stack.mailbox()["state"] == "consent_requested"
    assert stack.vendor_calls("/start-warmup") == []


@pytest.mark.parametrize("fault", ["empty_rate", "garbage_rate"])
def test_worker_unreadable_reread_fails_the_item_and_changes_nothing(
    stack: Stack, fault: str
) -> None:
    campaign_id = stack.consent(stack.expect())
    other = stack.consent(stack.expect("grace@contoso.com"))
    stack.control.set_faults(**{fault: 1.0}, paths=[rf".*/campaigns/{campaign_id}$"], count=1)

    failures = stack.deliver(pending(campaign_id), pending(other, "grace@contoso.com"))

    assert failures == ["message-0"]  # retried by SQS: an unreadable answer is no answer
    assert stack.mailbox()["state"] == "consent_requested"
    assert stack.ledger(campaign_id) is None
    assert stack.mailbox("grace@contoso.com")["state"] == "warming"


def test_worker_vendor_5xx_fails_item_for_sqs_retry(stack: Stack) -> None:
    campaign_id = stack.consent(stack.expect())
    other = stack.consent(stack.expect("grace@contoso.com"))
    stack.control.set_faults(
        error_rate=1.0, error_statuses=[503], paths=[rf".*/campaigns/{campaign_id}$"], count=1
    )

    failures = stack.deliver(pending(campaign_id), pending(other, "grace@contoso.com"))

    assert failures == ["message-0"]
    assert stack.mailbox()["state"] == "consent_requested"
    assert stack.mailbox("grace@contoso.com")["state"] == "warming"


def test_worker_all_records_fail_raises_for_whole_batch_retry(stack: Stack) -> None:
    stack.control.set_faults(error_rate=1.0, error_statuses=[500])
    with pytest.raises(BatchProcessingError):
        stack.deliver(pending("4711"), pending("4712"))


def test_worker_malformed_body_fails_only_that_item(stack: Stack) -> None:
    campaign_id = stack.consent(stack.expect())
    event = read_event("worker-batch-mixed.json")
    event["Records"][0]["body"] = pending(campaign_id)

    response = stack.worker.lambda_handler(event, LambdaContext())

    failed = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert failed == [event["Records"][2]["messageId"]]
    assert stack.mailbox()["state"] == "warming"


def test_worker_malformed_body_on_last_receive_counts_dlq_bound(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    event = read_event("worker-batch-malformed.json")
    event["Records"][0]["attributes"]["ApproximateReceiveCount"] = "5"
    with pytest.raises(BatchProcessingError):
        stack.worker.lambda_handler(event, LambdaContext())
    assert '"DlqBound"' in capsys.readouterr().out


class ClockedContext(LambdaContext):
    """The time left at each look: one value per record the worker considers."""

    def __init__(self, *remaining_ms: int) -> None:
        super().__init__()
        self._looks = iter(remaining_ms)

    def get_remaining_time_in_millis(self) -> int:
        return next(self._looks)


def visible_copies(stack: Stack) -> list[str]:
    """Bodies of the messages waiting in WorkQueue right now (not delayed)."""
    received = stack.sqs.receive_message(
        QueueUrl=stack.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=0
    )
    return [m["Body"] for m in received.get("Messages", [])]


def test_worker_batch_with_too_little_time_left_hands_every_record_back_untouched(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    first = stack.consent(stack.expect())
    second = stack.consent(stack.expect("grace@contoso.com"))
    calls_before = len(stack.control.calls())
    too_little = math.ceil(stack.worker.batch.record_seconds * 1000) - 1
    bodies = (pending(first), pending(second, "grace@contoso.com"))

    failures = stack.deliver(*bodies, context=LambdaContext(remaining_ms=too_little))

    assert failures == []  # handed back as fresh copies: no receive used up
    assert sorted(visible_copies(stack)) == sorted(bodies)
    assert stack.control.calls()[calls_before:] == []  # not even the re-read
    assert stack.mailbox()["state"] == "consent_requested"
    assert '"OutOfTime":[1.0,1.0]' in capsys.readouterr().out.replace(" ", "")


def test_worker_out_of_time_and_queue_down_reports_records_failed_not_errors(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    first = stack.consent(stack.expect())
    too_little = math.ceil(stack.worker.batch.record_seconds * 1000) - 1

    def queue_down(*args: object, **kwargs: object) -> str:
        raise RuntimeError("SQS unavailable")

    monkeypatch.setattr(stack.worker.batch.work_queue, "send", queue_down)
    failures = stack.deliver(pending(first), context=LambdaContext(remaining_ms=too_little))

    assert failures == ["message-0"]  # a partial response: SQS redelivers it, no exception
    assert stack.mailbox()["state"] == "consent_requested"


def test_worker_stops_starting_records_when_one_more_might_not_finish(stack: Stack) -> None:
    first = stack.consent(stack.expect())
    second = stack.consent(stack.expect("grace@contoso.com"))
    enough = math.ceil(stack.worker.batch.record_seconds * 1000)

    failures = stack.deliver(
        pending(first),
        pending(second, "grace@contoso.com"),
        context=ClockedContext(enough, enough - 1),
    )

    assert failures == []
    assert stack.mailbox()["state"] == "warming"
    assert stack.mailbox("grace@contoso.com")["state"] == "consent_requested"
    assert visible_copies(stack) == [pending(second, "grace@contoso.com")]
    assert len(stack.vendor_calls("/start-warmup")) == 1


def test_worker_unknown_event_type_is_acknowledged(stack: Stack) -> None:
    assert stack.deliver(message("campaign.archived", "4711")) == []
    assert stack.control.calls() == []


def test_worker_metrics_name_the_outcome(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    campaign_id = stack.consent(stack.expect())
    stack.deliver(pending(campaign_id))
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if "_aws" in line]
    assert any(doc.get("Started") == [1.0] or doc.get("Started") == 1.0 for doc in emf)


# --- concurrency -----------------------------------------------------------------------------


@pytest.mark.usefixtures("atomic_conditional_writes")
def test_worker_two_instances_same_campaign_concurrently_one_start_call(stack: Stack) -> None:
    campaign_id = stack.consent(stack.expect())
    stack.control.set_faults(latency_ms=200)
    instances = [stack.worker, load_function("worker")]
    start = threading.Barrier(2)
    failures: list[list[str]] = []

    def run(instance: ModuleType) -> None:
        start.wait(timeout=5)
        local = Stack(**{**stack.__dict__, "worker": instance})
        failures.append(local.deliver(pending(campaign_id)))

    threads = [threading.Thread(target=run, args=(i,)) for i in instances]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=20)

    assert failures == [[], []]
    assert len(stack.vendor_calls("/start-warmup")) == 1
    assert stack.mailbox()["state"] == "warming"


# --- the shared request budget under load ----------------------------------------------------


TIME_SCALE = 10  # the sandbox's rate-limit clock and the budget's clock both run 10x faster


@pytest.fixture
def fast_sandbox() -> Iterator[MailiverySandbox]:
    with MailiverySandbox(api_keys=(API_KEY,), time_scale=TIME_SCALE) as running:
        yield running


def scaled_worker(instance: ModuleType) -> None:
    """Rebind the handler's worker to a budget whose clock matches the sandbox's scaled one."""
    settings = instance.settings
    dynamodb = boto3.client("dynamodb")
    budget = RateBudget(
        dynamodb,
        TABLE,
        per_minute=settings.mailivery_requests_per_minute,
        clock=lambda: time.time() * TIME_SCALE,
        sleep=lambda seconds: time.sleep(seconds / TIME_SCALE),
    )
    instance.batch.worker = worker_from_settings(settings, dynamodb, budget)


@pytest.mark.usefixtures("atomic_conditional_writes")
def test_worker_burst_of_200_with_two_instances_never_trips_vendor_limit(
    fast_sandbox: MailiverySandbox, monkeypatch: pytest.MonkeyPatch
) -> None:
    set_environment(monkeypatch, fast_sandbox.api_base_url)
    with mock_aws(), SandboxControl(fast_sandbox.url) as control:
        dynamodb, sqs = boto3.client("dynamodb"), boto3.client("sqs")
        create_table(dynamodb, "MailboxTable", TABLE)
        queue_url = create_queues(sqs)["WorkQueue"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        monkeypatch.setenv("WORK_QUEUE_URL", queue_url)
        repository = MailboxRepository(dynamodb, TABLE)
        now = datetime.now(UTC)
        bodies = []
        for n in range(200):
            email = f"box{n:03d}@contoso.com"
            repository.save(expectation(email, now), read_version=None)
            campaign_id = str(control.seed_campaign(email=email)["id"])
            bodies.append(pending(campaign_id, email))
        for start in range(0, len(bodies), 10):
            sqs.send_message_batch(
                QueueUrl=queue_url,
                Entries=[
                    {"Id": str(n), "MessageBody": body}
                    for n, body in enumerate(bodies[start : start + 10])
                ],
            )
        instances = [load_function("worker"), load_function("worker")]
        for instance in instances:
            scaled_worker(instance)
        deadline = time.monotonic() + 90

        def drain(instance: ModuleType) -> None:
            while time.monotonic() < deadline:
                if all(c["status"] == "active" for c in control.campaigns()):
                    return
                received, _ = poll_once(
                    sqs, queue_url, queue_arn, instance.lambda_handler, LambdaContext()
                )
                if not received:
                    time.sleep(0.2)

        threads = [threading.Thread(target=drain, args=(i,)) for i in instances]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=100)

        calls = control.calls()
        assert [c for c in calls if c["status"] == 429] == []
        assert sum(1 for c in calls if c["path"].endswith("/start-warmup")) == 200
        assert all(c["status"] == "active" for c in control.campaigns())
