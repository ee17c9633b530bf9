"""ReconcilerFunction: lost webhooks and stale expectations, against moto and the sandbox."""

from __future__ import annotations

import pytest

from tests.integration.harness import (
    ADA,
    TABLE,
    LambdaContext,
    Stack,
    load_function,
    pending,
    read_event,
)


def reconcile(stack: Stack) -> dict[str, int]:
    module = load_function("reconciler")
    event = read_event("reconciler-scheduled.json")
    report: dict[str, int] = module.lambda_handler(event, LambdaContext())
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
    }
    assert drain(stack) == 1
    assert stack.mailbox()["state"] == "warming"
    assert len(stack.vendor_calls(f"/campaigns/{campaign_id}/start-warmup")) == 1


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
