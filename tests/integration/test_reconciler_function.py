"""ReconcilerFunction: lost webhooks and stale expectations, against moto and the sandbox."""

from __future__ import annotations

import json
import math
import time
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from devstack.testkit import LambdaContext, load_function
from tests.integration.harness import ADA, TABLE, Stack, pending, read_event
from warmgate.adapters.dynamodb import MailboxRepository, ReconcilerCursor
from warmgate.adapters.mailivery import UnexpectedResponse
from warmgate.domain.mailboxes import iso
from warmgate.wiring import reconciler_page_seconds


def reconcile(stack: Stack, context: LambdaContext | None = None) -> dict[str, Any]:
    """One scheduled run, in a fresh module: all a run keeps is in the table."""
    module = load_function("reconciler")
    event = read_event("reconciler-scheduled.json")
    report: dict[str, Any] = module.lambda_handler(event, context or LambdaContext())
    return report


def drain(stack: Stack) -> int:
    return stack.drain()


def expire(stack: Stack, email: str = ADA) -> None:
    stack.aws.update_item(
        TableName=TABLE,
        Key={"pk": {"S": f"mailbox#{email}"}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"S": "2020-01-01T00:00:00Z"}},
    )


def test_reconciler_dropped_webhook_still_ends_warming(stack: Stack) -> None:
    campaign_id = stack.consent(stack.expect())  # the sandbox delivers no webhook: it is lost

    report = reconcile(stack)

    assert report == {
        "expired": 0,
        "pending_seen": 1,
        "enqueued": 1,
        "unexpected_pending": 0,
        "resumes_requeued": 0,
        "reconnects_requeued": 0,
        "pages_read": 1,
        "pass_completed": True,
        "interrupted": None,
    }
    assert drain(stack) == 1
    assert stack.mailbox()["state"] == "warming"
    assert len(stack.vendor_calls(f"/campaigns/{campaign_id}/start-warmup")) == 1


def test_reconciler_requeues_a_reconnect_whose_webhook_was_lost_and_it_resumes_once(
    stack: Stack,
) -> None:
    campaign_id = stack.consent(stack.expect())
    stack.deliver(pending(campaign_id))
    stack.lose_connection(campaign_id)
    status, body, _ = stack.request()  # the reconnect
    assert status == 201, body
    stack.control.consent(url=body["consent_url"])  # its campaign.updated webhook is lost

    assert reconcile(stack)["reconnects_requeued"] == 0  # too soon: the webhook may come
    age(stack, minutes=6)
    report = reconcile(stack)
    drain(stack)

    assert (report["reconnects_requeued"], report["enqueued"]) == (1, 0)  # not pending
    assert stack.mailbox()["state"] == "warming"
    assert len(stack.vendor_calls(f"/campaigns/{campaign_id}/resume-warmup")) == 1


def test_reconciler_requeued_reconnect_without_consent_keeps_waiting(stack: Stack) -> None:
    campaign_id = stack.consent(stack.expect())
    stack.deliver(pending(campaign_id))
    stack.control.break_connection(campaign_id)
    assert stack.request()[0] == 201  # the owner has not consented yet
    age(stack, minutes=6)

    assert reconcile(stack)["reconnects_requeued"] == 1
    drain(stack)

    assert stack.mailbox()["state"] == "consent_requested"
    assert stack.vendor_calls("/resume-warmup") == []


def test_reconciler_requeues_a_resume_request_whose_message_was_lost(stack: Stack) -> None:
    campaign_id = stack.consent(stack.expect())
    stack.deliver(pending(campaign_id))
    stack.control.pause_campaign(campaign_id)
    status, _, _ = stack.on_mailbox("onboarding-resume-mailbox.json")
    assert status == 202
    stack.sqs.purge_queue(QueueUrl=stack.queue_url)  # its message is lost
    age(stack, minutes=6)

    report = reconcile(stack)
    drain(stack)

    assert report["resumes_requeued"] == 1
    assert stack.mailbox()["state"] == "warming"
    assert len(stack.vendor_calls("/resume-warmup")) == 1


def age(stack: Stack, *, minutes: int, email: str = ADA) -> None:
    """The record's last move happened `minutes` ago."""
    earlier = datetime.now(UTC) - timedelta(minutes=minutes)
    stack.aws.update_item(
        TableName=TABLE,
        Key={"pk": {"S": f"mailbox#{email}"}},
        UpdateExpression="SET updated_at = :earlier",
        ExpressionAttributeValues={":earlier": {"S": iso(earlier)}},
    )


def test_reconciler_after_webhook_handled_queues_nothing(stack: Stack) -> None:
    campaign_id = stack.consent(stack.expect())
    stack.deliver(pending(campaign_id))

    report = reconcile(stack)

    assert report["enqueued"] == 0
    assert drain(stack) == 0


def test_reconciler_twice_before_worker_runs_starts_once(stack: Stack) -> None:
    stack.consent(stack.expect())
    reconcile(stack)
    reconcile(stack)

    assert drain(stack) == 2
    assert len(stack.vendor_calls("/start-warmup")) == 1


def test_reconciler_expectation_past_expiry_becomes_expired(stack: Stack) -> None:
    stack.expect()
    expire(stack)

    report = reconcile(stack)

    assert report["expired"] == 1
    record = stack.mailbox()
    assert record["state"] == "expired"
    assert "consent_url" in record  # history and details are kept, only the state moves


def test_reconciler_late_webhook_after_expiry_is_unexpected(stack: Stack) -> None:
    url = stack.expect()
    expire(stack)
    reconcile(stack)
    campaign_id = stack.consent(url)  # the owner consents after the link's expiry

    stack.deliver(pending(campaign_id))

    assert stack.vendor_calls("/start-warmup") == []
    assert stack.mailbox()["state"] == "expired"
    assert stack.ledger(campaign_id)["state"] == "left_pending"  # type: ignore[index]


def test_reconciler_unexpected_pending_campaign_is_counted_not_queued(stack: Stack) -> None:
    stack.control.seed_campaign(email="eve@contoso.com")

    report = reconcile(stack)

    assert (report["unexpected_pending"], report["enqueued"]) == (1, 0)


def test_reconciler_pages_through_campaigns(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("MAILIVERY_CONTRACT_OVERRIDES", '{"per_page": 2}')
    for n in range(5):
        stack.consent(stack.expect(f"box{n}@contoso.com"))

    report = reconcile(stack)

    assert (report["pending_seen"], report["enqueued"]) == (5, 5)
    lists = [
        c
        for c in stack.control.calls()
        if c["method"] == "GET" and c["path"].endswith("/campaigns")
    ]
    assert len(lists) == 3


def test_reconciler_emits_metrics(stack: Stack, capsys: pytest.CaptureFixture[str]) -> None:
    stack.consent(stack.expect())
    reconcile(stack)
    out = capsys.readouterr().out
    assert '"StrandedCampaignsQueued":[1.0]' in out.replace(" ", "")


# --- stopping early and continuing -----------------------------------------------------------


def list_calls(stack: Stack) -> list[dict[str, Any]]:
    """Mailivery campaign-list calls so far: page and status of each."""
    return [
        {"page": int(call["query"].split("page=")[1].split("&")[0]), "status": call["status"]}
        for call in stack.control.calls()
        if call["method"] == "GET" and call["path"].endswith("/campaigns")
    ]


def cursor(stack: Stack) -> dict[str, Any] | None:
    item = stack.aws.get_item(
        TableName=TABLE, Key={"pk": {"S": "reconciler#cursor"}}, ConsistentRead=True
    ).get("Item")
    return None if item is None else {k: v.get("S", v.get("N")) for k, v in item.items()}


def test_reconciler_through_a_429_storm_queues_every_stranded_campaign_exactly_once(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILIVERY_CONTRACT_OVERRIDES", '{"per_page": 2}')
    stranded = [stack.consent(stack.expect(f"box{n}@contoso.com")) for n in range(4)]
    stack.control.seed_campaign(email="eve@contoso.com")  # unexpected, on page 3
    stranded += [stack.consent(stack.expect(f"box{n}@contoso.com")) for n in range(4, 7)]
    reports = []
    for _ in range(10):  # bounded: 8 campaigns, 2 a page, 1 page a run -> 4 runs
        # The storm: Mailivery takes one call per run, then answers 429, Retry-After ~60 s.
        stack.control.set_rate_limit(1)
        reports.append(reconcile(stack))
        if reports[-1]["pass_completed"]:
            break

    assert [r["interrupted"] is not None for r in reports] == [True, True, True, False]
    assert all("RateLimited" in r["interrupted"] for r in reports[:-1])
    assert sum(r["enqueued"] for r in reports) == len(stranded)
    assert sum(r["unexpected_pending"] for r in reports) == 1
    # Each run continued where the last stopped: every page read once, each 429 on the next.
    calls = list_calls(stack)
    assert [c["page"] for c in calls if c["status"] == 200] == [1, 2, 3, 4]
    assert [c["page"] for c in calls if c["status"] == 429] == [2, 3, 4]
    assert cursor(stack)["next_page"] == "1"  # type: ignore[index]  # the next pass restarts

    stack.control.set_rate_limit(240)
    assert drain(stack) == len(stranded)
    for campaign_id in stranded:  # one queued message each: one re-read, one start
        assert len(stack.vendor_calls(f"/campaigns/{campaign_id}", method="GET")) == 1
        assert len(stack.vendor_calls(f"/campaigns/{campaign_id}/start-warmup")) == 1
    states = {stack.mailbox(f"box{n}@contoso.com")["state"] for n in range(7)}
    assert states == {"warming"}


def test_reconciler_repeated_5xx_stops_the_run_and_the_next_run_continues(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILIVERY_CONTRACT_OVERRIDES", '{"per_page": 1}')
    monkeypatch.setenv("MAILIVERY_READ_RETRIES", "2")
    first, second = (stack.consent(stack.expect(f"box{n}@contoso.com")) for n in range(2))
    stack.control.set_faults(
        error_rate=1.0, error_statuses=[503], paths=[r"/campaigns$"], count=3
    )  # page 1 fails on all three attempts of the client

    stopped = reconcile(stack)
    finished = reconcile(stack)

    assert "ServerError" in stopped["interrupted"]
    assert (stopped["pages_read"], stopped["enqueued"]) == (0, 0)
    assert (finished["interrupted"], finished["pages_read"], finished["enqueued"]) == (None, 2, 2)
    assert [c["status"] for c in list_calls(stack)] == [503, 503, 503, 200, 200]
    assert drain(stack) == 2
    assert {stack.mailbox(f"box{n}@contoso.com")["state"] for n in range(2)} == {"warming"}
    assert len(stack.vendor_calls(f"/campaigns/{first}/start-warmup")) == 1
    assert len(stack.vendor_calls(f"/campaigns/{second}/start-warmup")) == 1


def test_reconciler_budget_used_up_stops_before_calling_mailivery(stack: Stack) -> None:
    stack.consent(stack.expect())
    calls_before = len(stack.control.calls())
    # Another instance (its clock 30 s ahead) took the last token: the next is 30 s away.
    stack.aws.put_item(
        TableName=TABLE,
        Item={"pk": {"S": "budget#mailivery"}, "tat": {"N": str(int((time.time() + 30) * 1e6))}},
    )

    report = reconcile(stack)

    assert "BudgetExhausted" in report["interrupted"]
    assert stack.control.calls()[calls_before:] == []
    assert cursor(stack) is None  # nothing read, nothing to remember


def test_reconciler_with_too_little_time_left_reads_no_page_but_still_expires(
    stack: Stack,
) -> None:
    stack.expect()
    expire(stack)
    stack.consent(stack.expect("grace@contoso.com"))
    page_seconds = reconciler_page_seconds(load_function("reconciler").settings)
    too_little = math.ceil(page_seconds * 1000) - 1

    report = reconcile(stack, LambdaContext(remaining_ms=too_little))

    assert report["expired"] == 1
    assert report["interrupted"].endswith("a page may need more")
    assert (report["pages_read"], report["enqueued"]) == (0, 0)
    assert list_calls(stack) == []


def read_one_page_then_429(stack: Stack, monkeypatch: pytest.MonkeyPatch, campaigns: int) -> None:
    """`campaigns` stranded, one a page; a run reads page 1, then Mailivery answers 429: the
    stored cursor says page 2, at version 1."""
    monkeypatch.setenv("MAILIVERY_CONTRACT_OVERRIDES", '{"per_page": 1}')
    for n in range(campaigns):
        stack.consent(stack.expect(f"box{n}@contoso.com"))
    stack.control.set_rate_limit(1)
    reconcile(stack)
    stack.control.set_rate_limit(240)


def test_reconciler_unreadable_answer_fails_the_run_and_keeps_the_cursor(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_one_page_then_429(stack, monkeypatch, campaigns=3)
    stack.control.set_faults(garbage_rate=1.0, paths=[r"/campaigns$"], count=1)

    with pytest.raises(UnexpectedResponse, match="campaign list has no data array"):
        reconcile(stack)  # our own error: the function fails, ReconcilerErrorsAlarm

    assert cursor(stack)["next_page"] == "2"  # type: ignore[index]


def test_reconciler_another_run_moving_the_cursor_stops_this_one(
    stack: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    read_one_page_then_429(stack, monkeypatch, campaigns=2)
    # This run read the cursor before the other run saved it: it still sees no cursor.
    monkeypatch.setattr(MailboxRepository, "get_reconciler_cursor", lambda self: ReconcilerCursor())

    report = reconcile(stack)

    assert report["interrupted"] == "another run moved the cursor meanwhile"
    assert cursor(stack)["version"] == "1"  # type: ignore[index]  # the other run's stays


def test_reconciler_emits_interrupted_metric(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.consent(stack.expect())
    stack.control.set_faults(error_rate=1.0, paths=[r"/campaigns$"], count=1)

    reconcile(stack)

    lines = capsys.readouterr().out.splitlines()
    (emf,) = [json.loads(line) for line in lines if '"ReconcileInterrupted"' in line]
    assert (emf["ReconcileInterrupted"], emf["ReconcilePassCompleted"]) == ([1.0], [0.0])
