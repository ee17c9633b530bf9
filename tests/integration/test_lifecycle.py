"""A mailbox's life after its first start, through the real handlers (moto + the sandbox).

The rule under test: every start or resume is backed by exactly one unconsumed request from
the integrator; what Mailivery reports later is recorded and never acted on by itself. Every
test counts the vendor calls in the sandbox's own log.
"""

from __future__ import annotations

import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.testkit import LambdaContext, load_function
from tests.integration.harness import ADA, TABLE, Stack, message, read_event
from tests.integration.harness import pending as pending_message
from warmgate.adapters.sqs import QueuedWebhook
from warmgate.domain.mailboxes import UNKNOWN_OUTCOME_SETTLE, iso

RESUME = "onboarding-resume-mailbox.json"
OTHER_PRINCIPAL = "arn:aws:sts::123456789012:assumed-role/another-backend/session-1"
WITHDRAW = "onboarding-withdraw-mailbox.json"


def warming(stack: Stack) -> str:
    """An onboarded mailbox whose campaign is warming; returns the campaign id."""
    campaign_id = stack.consent(stack.expect())
    stack.deliver(pending_message(campaign_id))
    assert stack.mailbox()["state"] == "warming"
    return campaign_id


def calls(stack: Stack, action: str) -> int:
    return len(stack.vendor_calls(f"/{action}"))


def reads(stack: Stack, campaign_id: str) -> int:
    return len(stack.vendor_calls(f"/campaigns/{campaign_id}", method="GET"))


def reconnect(stack: Stack, campaign_id: str, event_type: str = "campaign.updated") -> None:
    """POST /mailboxes again, the owner consents, Mailivery reports the campaign again."""
    status, body, _ = stack.request()
    assert status == 201, body
    assert body["state"] == "consent_requested"
    record = stack.mailbox()
    assert (record["request_kind"], record["campaign_id"]) == ("reconnect", campaign_id)
    consented = stack.control.consent(url=body["consent_url"])
    assert (consented["outcome"], str(consented["campaign"]["id"])) == ("reconnected", campaign_id)
    stack.deliver(message(event_type, campaign_id))


# --- reconnect ---------------------------------------------------------------------------------


@pytest.mark.parametrize("event_type", ["campaign.updated", "campaign.pending"])
def test_reconnect_of_warming_but_paused_mailbox_resumes_once(
    stack: Stack, event_type: str
) -> None:
    campaign_id = warming(stack)
    stack.control.pause_campaign(campaign_id)  # in Mailivery's dashboard: no webhook
    starts = calls(stack, "start-warmup")

    reconnect(stack, campaign_id, event_type)
    stack.deliver(message(event_type, campaign_id))  # a duplicate of the report

    assert stack.mailbox()["state"] == "warming"
    assert calls(stack, "resume-warmup") == 1
    assert calls(stack, "start-warmup") == starts == 1


def test_reconnect_from_connection_problem_waits_for_consent_then_resumes_once(
    stack: Stack,
) -> None:
    campaign_id = warming(stack)
    stack.lose_connection(campaign_id)
    assert stack.mailbox()["state"] == "connection_problem"

    status, body, _ = stack.request()
    assert status == 201, body
    # Reports before the owner consented: the connection is still broken, nothing to call.
    stack.deliver(message("campaign.updated", campaign_id), pending_message(campaign_id))
    assert calls(stack, "resume-warmup") == 0
    assert stack.mailbox()["state"] == "consent_requested"

    stack.control.consent(url=body["consent_url"])
    stack.deliver(message("campaign.updated", campaign_id))

    assert stack.mailbox()["state"] == "warming"
    assert (calls(stack, "resume-warmup"), calls(stack, "start-warmup")) == (1, 1)


def test_reconnect_retried_after_mailivery_failed_the_link_stays_bound_and_waits(
    stack: Stack,
) -> None:
    campaign_id = warming(stack)
    stack.lose_connection(campaign_id)
    stack.control.set_faults(error_rate=1.0, error_statuses=[503], paths=["/ms-graph$"], count=1)
    failed, _, _ = stack.request()
    assert (failed, stack.mailbox()["state"]) == (502, "request_failed")

    status, body, _ = stack.request()  # the integrator retries the reconnect

    assert status == 201, body
    record = stack.mailbox()
    assert (record["request_kind"], record["campaign_id"]) == ("reconnect", campaign_id)
    # Bound: while Mailivery still reports the connection problem, nothing is resumed.
    stack.deliver(message("campaign.updated", campaign_id))
    assert (stack.mailbox()["state"], calls(stack, "resume-warmup")) == ("consent_requested", 0)
    stack.control.consent(url=body["consent_url"])
    stack.deliver(message("campaign.updated", campaign_id))
    assert stack.mailbox()["state"] == "warming"
    assert (calls(stack, "resume-warmup"), calls(stack, "start-warmup")) == (1, 1)


def test_reconnect_whose_link_was_never_stored_is_retried_as_a_reconnect(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign_id = warming(stack)
    stack.control.break_connection(campaign_id)
    service = stack.onboarding.service
    save, failing = service._repository.save, [True]

    def unavailable_for_links(record: Any, *, read_version: int | None) -> Any:
        if record.consent_url is not None and failing[0]:
            raise RuntimeError("DynamoDB unavailable")  # or the function died right here
        return save(record, read_version=read_version)

    monkeypatch.setattr(service._repository, "save", unavailable_for_links)
    monkeypatch.setattr(service, "_sleep", lambda seconds: None)
    assert stack.request()[0] == 201  # answered, never stored: the record waits, in flight
    failing[0] = False
    stack.aws.update_item(  # the in-flight window has passed: the request may be made again
        TableName=TABLE,
        Key={"pk": {"S": f"mailbox#{ADA}"}},
        UpdateExpression="SET updated_at = :then",
        ExpressionAttributeValues={":then": {"S": "2020-01-01T00:00:00Z"}},
    )

    status, body, _ = stack.request()

    assert status == 201, body
    record = stack.mailbox()
    assert (record["request_kind"], record["campaign_id"]) == ("reconnect", campaign_id)


def test_retry_of_a_failed_reconnect_by_another_principal_is_refused(stack: Stack) -> None:
    campaign_id = warming(stack)
    stack.control.break_connection(campaign_id)
    stack.control.set_faults(error_rate=1.0, error_statuses=[503], paths=["/ms-graph$"], count=1)
    assert stack.request()[0] == 502

    status, body, _ = stack.request(principal=OTHER_PRINCIPAL)

    assert (status, body["code"]) == (409, "REQUESTED_BY_ANOTHER")


def test_reconnect_of_parked_mailbox_resumes_once(stack: Stack) -> None:
    campaign_id = warming(stack)
    stack.lose_connection(campaign_id)
    _, body, _ = stack.request()
    stack.control.consent(url=body["consent_url"])
    stack.control.set_connection(ADA, ok=False)  # the reconnect did not take
    for _ in range(4):
        stack.deliver(message("campaign.updated", campaign_id))
    record = stack.mailbox()
    assert (record["state"], record["parked"], record["start_attempts"]) == (
        "start_failed",
        True,
        "4",
    )
    refused = calls(stack, "resume-warmup")
    assert refused == 4

    stack.control.set_connection(ADA, ok=True)
    reconnect(stack, campaign_id)

    assert stack.mailbox()["state"] == "warming"
    assert calls(stack, "resume-warmup") == refused + 1
    assert calls(stack, "start-warmup") == 1


def test_reconnect_of_a_healthy_warming_mailbox_is_409_already_warming(stack: Stack) -> None:
    campaign_id = warming(stack)
    consents = len(stack.control.consents())

    status, body, _ = stack.request(requested_by="someone-else")

    assert (status, body["code"]) == (409, "ALREADY_WARMING")
    assert reads(stack, campaign_id) == 2  # the worker's re-read, then the API's one GET
    assert len(stack.control.consents()) == consents  # no consent link was requested
    assert stack.mailbox()["state"] == "warming"


# --- pauses are respected ----------------------------------------------------------------------


def test_operator_pause_then_updated_and_duplicate_pending_changes_nothing_at_mailivery(
    stack: Stack,
) -> None:
    campaign_id = warming(stack)
    stack.control.pause_campaign(campaign_id)
    before = [c for c in stack.control.calls() if c["method"] in ("PATCH", "DELETE")]

    stack.deliver(message("campaign.updated", campaign_id), pending_message(campaign_id))
    stack.deliver(pending_message(campaign_id))

    after = [c for c in stack.control.calls() if c["method"] in ("PATCH", "DELETE")]
    assert after == before
    record = stack.mailbox()
    assert record["state"] == "paused"


def test_resume_request_resumes_a_paused_campaign_once(stack: Stack) -> None:
    campaign_id = warming(stack)
    stack.control.pause_campaign(campaign_id)
    stack.deliver(message("campaign.updated", campaign_id))

    status, body, _ = stack.on_mailbox(RESUME)
    replay_status, replay, _ = stack.on_mailbox(RESUME)  # the same request again

    assert (status, body["state"], body["request_kind"]) == (202, "resume_requested", "resume")
    assert (replay_status, replay["state"]) == (202, "resume_requested")
    assert stack.drain() == 1  # one message for the request, none for its replay
    assert stack.mailbox()["state"] == "warming"
    assert (calls(stack, "resume-warmup"), calls(stack, "start-warmup")) == (1, 1)


def test_resume_request_is_409_when_nothing_is_paused(stack: Stack) -> None:
    warming(stack)
    status, body, _ = stack.on_mailbox(RESUME)
    assert (status, body["code"]) == (409, "ALREADY_WARMING")

    stack.expect("grace@contoso.com")
    status, body, _ = stack.on_mailbox(RESUME, "grace@contoso.com")
    assert (status, body["code"]) == (409, "NOT_PAUSED")
    assert stack.drain() == 0


def test_resume_request_for_a_disconnected_mailbox_asks_for_a_reconnect(stack: Stack) -> None:
    campaign_id = warming(stack)
    stack.control.break_connection(campaign_id)

    status, body, _ = stack.on_mailbox(RESUME)

    assert (status, body["code"]) == (409, "RECONNECT_REQUIRED")
    assert calls(stack, "resume-warmup") == 0


# --- unknown outcomes keep the claim -------------------------------------------------------------


def test_ambiguous_start_keeps_claim_blocks_withdraw_and_retry_settles_without_second_start(
    stack: Stack,
) -> None:
    campaign_id = stack.consent(stack.expect())
    # The start runs at Mailivery but its answer never comes (the client times out after 1 s).
    stack.control.set_faults(lost_rate=1.0, hang_ms=1500, paths=[r".*/start-warmup$"], count=1)

    assert stack.deliver(pending_message(campaign_id)) == []  # deferred, not failed
    record = stack.mailbox()
    assert (record["state"], record["outcome_unknown"]) == ("verifying", True)

    status, body, headers = stack.on_mailbox(WITHDRAW)
    assert (status, body["code"]) == (409, "CLAIM_HELD")
    assert int(headers["Retry-After"]) >= 1
    expire_and_reconcile(stack)
    assert stack.mailbox()["state"] == "verifying"  # the reconciler does not expire a claim

    settle(stack)
    stack.deliver(pending_message(campaign_id))  # the deferred retry: re-read first

    record = stack.mailbox()
    assert (record["state"], record["start_attempts"]) == ("warming", "0")
    deadline = time.monotonic() + 5  # the sandbox logs the lost call once its hang is over
    while calls(stack, "start-warmup") == 0 and time.monotonic() < deadline:
        time.sleep(0.05)
    assert calls(stack, "start-warmup") == 1


def test_ambiguous_start_not_applied_is_started_by_the_retry(stack: Stack) -> None:
    campaign_id = stack.consent(stack.expect())
    stack.control.set_faults(
        error_rate=1.0, error_statuses=[503], paths=[r".*/start-warmup$"], count=1
    )

    stack.deliver(pending_message(campaign_id))
    assert stack.mailbox()["state"] == "verifying"
    settle(stack)
    stack.deliver(pending_message(campaign_id))

    assert stack.mailbox()["state"] == "warming"
    assert calls(stack, "start-warmup") == 2  # the 503 did not start it; the retry did


@pytest.mark.parametrize("fault", ["empty_rate", "garbage_rate"])
def test_start_answered_with_an_unreadable_body_is_taken_as_applied(
    stack: Stack, fault: str
) -> None:
    campaign_id = stack.consent(stack.expect())
    # Mailivery applied the start; only its 200 answer is empty or says nothing we know.
    stack.control.set_faults(**{fault: 1.0}, paths=[r".*/start-warmup$"], count=1)

    assert stack.deliver(pending_message(campaign_id)) == []

    assert stack.mailbox()["state"] == "warming"  # at once: no retry, no second call
    assert stack.deferred() == []
    assert calls(stack, "start-warmup") == 1


def test_delivery_right_after_an_unknown_outcome_waits_for_the_late_call_to_land(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign_id = stack.consent(stack.expect())
    delays = stack.record_deferral_delays(monkeypatch)
    # The start answers too late (the client gives up after 1 s) and runs at Mailivery after it.
    stack.control.set_faults(timeout_rate=1.0, hang_ms=1500, paths=[r".*/start-warmup$"], count=1)
    lands = time.monotonic() + 1.5
    stack.deliver(pending_message(campaign_id))
    assert (stack.mailbox()["state"], stack.mailbox()["outcome_unknown"]) == ("verifying", True)

    # A duplicate webhook (or the reconciler) right away: the campaign still reads pending.
    assert stack.deliver(pending_message(campaign_id)) == []  # deferred: busy, no call
    assert delays[0] == 15  # the first delivery's own retry (outcome unknown)
    assert 1 <= delays[1] <= UNKNOWN_OUTCOME_SETTLE.total_seconds()  # busy: until it settles

    time.sleep(max(0.0, lands - time.monotonic()) + 0.2)  # the first start lands
    wait_for_call(stack, "start-warmup")
    settle(stack)
    stack.deliver(pending_message(campaign_id))  # the retry: re-read, found active
    assert stack.mailbox()["state"] == "warming"
    assert [c["status"] for c in stack.vendor_calls("/start-warmup")] == [200]  # no second


def test_start_whose_connection_dropped_keeps_its_claim_and_is_not_repeated(
    stack: Stack,
) -> None:
    campaign_id = stack.consent(stack.expect())
    # The connection is reset before any answer; Mailivery applies the start a moment later.
    stack.control.set_faults(reset_rate=1.0, hang_ms=500, paths=[r".*/start-warmup$"], count=1)

    assert stack.deliver(pending_message(campaign_id)) == []  # deferred, no receive used up
    record = stack.mailbox()
    assert (record["state"], record["outcome_unknown"]) == ("verifying", True)
    assert stack.deliver(pending_message(campaign_id)) == []  # a duplicate right away: waits

    time.sleep(0.7)  # the start lands
    settle(stack)
    stack.deliver(pending_message(campaign_id))  # the retry re-reads: active
    assert stack.mailbox()["state"] == "warming"
    assert calls(stack, "start-warmup") == 1


def settle(stack: Stack) -> None:
    """Time passes as for the deferred retry (UNKNOWN_OUTCOME_RETRY_BASE_SECONDS): the unknown
    outcome was recorded longer ago than UNKNOWN_OUTCOME_SETTLE."""
    settled = datetime.now(UTC) - UNKNOWN_OUTCOME_SETTLE - timedelta(seconds=1)
    stack.aws.update_item(
        TableName=TABLE,
        Key={"pk": {"S": f"mailbox#{ADA}"}},
        UpdateExpression="SET updated_at = :settled",
        ExpressionAttributeValues={":settled": {"S": iso(settled)}},
    )


def wait_for_call(stack: Stack, action: str) -> None:
    deadline = time.monotonic() + 5  # the sandbox logs a late call once its hang is over
    while calls(stack, action) == 0 and time.monotonic() < deadline:
        time.sleep(0.05)


def expire_and_reconcile(stack: Stack) -> None:
    stack.aws.update_item(
        TableName=TABLE,
        Key={"pk": {"S": f"mailbox#{ADA}"}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"S": "2020-01-01T00:00:00Z"}},
    )
    reconcile(stack)


# --- bounded retries -----------------------------------------------------------------------------


def test_permanent_vendor_409_parks_after_the_bound(stack: Stack) -> None:
    campaign_id = stack.consent(stack.expect())
    stack.control.set_faults(error_rate=1.0, error_statuses=[409], paths=[r".*/start-warmup$"])
    calls_before = len(stack.control.calls())

    for attempt in range(1, 5):
        assert stack.deliver(pending_message(campaign_id)) == []
        assert len(stack.deferred()) == min(attempt, 3)  # the 4th parks instead of deferring

    record = stack.mailbox()
    assert (record["state"], record["parked"], record["start_attempts"]) == (
        "start_failed",
        True,
        "4",
    )
    assert len(stack.control.calls()) - calls_before <= 3 * 4  # re-read, PATCH, confirming GET
    stack.deliver(pending_message(campaign_id))
    assert calls(stack, "start-warmup") == 4  # parked: no request, no more calls


def test_deferred_message_carries_its_attempt_count_and_the_chain_is_bounded(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign_id = stack.consent(stack.expect())
    stack.control.set_connection(ADA, ok=False)
    sent: list[QueuedWebhook] = []
    send = stack.worker.batch.work_queue.send
    monkeypatch.setattr(
        stack.worker.batch.work_queue, "send", lambda m, **kw: sent.append(m) or send(m, **kw)
    )

    stack.deliver(pending_message(campaign_id))
    assert sent[-1].attempt == 1
    assert sent[-1].message_attributes()["attempt"] == {"DataType": "Number", "StringValue": "1"}

    # A copy that already spent 3 attempts parks at its 4th, whatever the record counted.
    stack.aws.update_item(
        TableName=TABLE,
        Key={"pk": {"S": f"mailbox#{ADA}"}},
        UpdateExpression="SET start_attempts = :zero",
        ExpressionAttributeValues={":zero": {"N": "0"}},
    )
    stack.deliver(pending_message(campaign_id), attempt=3)

    record = stack.mailbox()
    assert (record["state"], record["parked"], record["start_attempts"]) == (
        "start_failed",
        True,
        "4",
    )
    assert len(sent) == 1  # parked: not re-enqueued


# --- no permanent ledger trap ---------------------------------------------------------------------


def test_late_consent_after_expiry_then_new_request_starts_once(stack: Stack) -> None:
    url = stack.expect()
    stack.aws.update_item(
        TableName=TABLE,
        Key={"pk": {"S": f"mailbox#{ADA}"}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"S": "2020-01-01T00:00:00Z"}},
    )
    campaign_id = stack.consent(url)  # the owner consents late
    stack.deliver(pending_message(campaign_id))
    assert stack.mailbox()["state"] == "rejected"
    assert stack.ledger(campaign_id)["state"] == "left_pending"

    new_url = stack.expect()  # the integrator asks again; Mailivery reuses the campaign
    consented = stack.control.consent(url=new_url)
    assert consented["outcome"] == "reconnected"
    stack.deliver(message("campaign.updated", campaign_id), pending_message(campaign_id))

    assert stack.mailbox()["state"] == "warming"
    assert calls(stack, "start-warmup") == 1
    assert stack.ledger(campaign_id)["state"] == "adopted"


def test_resume_request_whose_message_was_lost_is_requeued_by_the_reconciler(
    stack: Stack,
) -> None:
    campaign_id = warming(stack)
    stack.control.pause_campaign(campaign_id)
    stack.deliver(message("campaign.updated", campaign_id))
    assert stack.on_mailbox(RESUME)[0] == 202
    stack.sqs.purge_queue(QueueUrl=stack.queue_url)  # the request's message is lost

    assert reconcile(stack)["resumes_requeued"] == 0  # too recent: its message may be on its way
    stack.aws.update_item(
        TableName=TABLE,
        Key={"pk": {"S": f"mailbox#{ADA}"}},
        UpdateExpression="SET updated_at = :old",
        ExpressionAttributeValues={":old": {"S": "2020-01-01T00:00:00Z"}},
    )
    assert reconcile(stack)["resumes_requeued"] == 1

    assert stack.drain() == 1
    assert stack.mailbox()["state"] == "warming"
    assert calls(stack, "resume-warmup") == 1


def test_reconciler_leaves_a_reconnect_to_the_owners_consent(stack: Stack) -> None:
    """A reconnect of a mailbox whose start was parked: its campaign is still pending, but the
    reconciler must not act on it before the owner has consented again."""
    campaign_id = stack.consent(stack.expect())
    stack.control.set_connection(ADA, ok=False)
    for _ in range(4):
        stack.deliver(pending_message(campaign_id))
    assert stack.mailbox()["parked"] is True
    status, _, _ = stack.request()
    assert status == 201

    report = reconcile(stack)

    assert (report["pending_seen"], report["enqueued"]) == (1, 0)
    assert stack.drain() == 0


def reconcile(stack: Stack) -> dict[str, object]:
    report: dict[str, object] = load_function("reconciler").lambda_handler(
        read_event("reconciler-scheduled.json"), LambdaContext()
    )
    return report
