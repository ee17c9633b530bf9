"""How many AWS calls each worker path makes, pinned: the DynamoDB calls are most of a message's
cost (bench warm_cpu), so a change that adds one must change these numbers on purpose.

The calls are counted with botocore event hooks (bench.aws_calls) on the session the handler's
clients come from; the worker is loaded after the counter opens, so its clients carry the hooks.
The counts are a warm instance's, the only one taking tokens meanwhile: a fresh instance does not
know where the request budget stands, nor one whose last look is older than another instance's
token, and its first token then takes one more write to learn it (rate_budget.py). So the
mailboxes here are seeded directly, not through the onboarding function, which takes a token.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from bench.aws_calls import AwsCalls, CallLog
from devstack.template import resource
from devstack.testkit import load_function
from tests.integration.harness import ADA, Stack, message, pending
from warmgate.adapters import aws

# A transaction is authorized by the actions of the writes inside it (IAM has no action of its
# own for TransactWriteItems): the claim's PutItem and the budget's UpdateItem.
TRANSACTION_ACTIONS = {"dynamodb:PutItem", "dynamodb:UpdateItem"}


@pytest.fixture
def calls(stack: Stack) -> Iterator[AwsCalls]:
    """A counter on the handlers' session, and a warm worker whose clients it counts."""
    with AwsCalls(aws.session()) as counter:
        load_warm_worker(stack)
        yield counter


def load_warm_worker(stack: Stack) -> None:
    """A fresh worker that has handled one message (another mailbox's), as a warm one has."""
    stack.worker = load_function("worker")
    email = f"warm-up-{len(stack.control.campaigns())}@contoso.com"
    assert stack.deliver(pending(stack.seed_expected(email), email)) == []


def deliver(stack: Stack, calls: AwsCalls, body: str) -> CallLog:
    with calls.scope("worker") as log:
        assert stack.deliver(body) == []
    return log


def test_worker_message_that_starts_a_campaign_makes_four_dynamodb_calls(
    stack: Stack, calls: AwsCalls
) -> None:
    campaign_id = stack.seed_expected(ADA)

    log = deliver(stack, calls, pending(campaign_id))

    assert stack.mailbox()["state"] == "warming"
    assert dict(log.calls) == {
        "dynamodb.BatchGetItem": 1,  # the mailbox and the campaign's ledger entry
        "dynamodb.UpdateItem": 1,  # the re-read's token
        "dynamodb.TransactWriteItems": 1,  # the claim, with the start call's token
        "dynamodb.PutItem": 1,  # the result: warming
    }


def test_worker_replayed_message_makes_one_dynamodb_call_and_no_vendor_call(
    stack: Stack, calls: AwsCalls
) -> None:
    campaign_id = stack.seed_expected(ADA)
    deliver(stack, calls, pending(campaign_id))
    vendor_calls = len(stack.control.calls())

    log = deliver(stack, calls, pending(campaign_id))

    assert dict(log.calls) == {"dynamodb.BatchGetItem": 1}  # decided from the record alone
    assert len(stack.control.calls()) == vendor_calls


def test_worker_duplicate_of_another_event_type_rereads_with_two_dynamodb_calls(
    stack: Stack, calls: AwsCalls
) -> None:
    campaign_id = stack.seed_expected(ADA)
    deliver(stack, calls, pending(campaign_id))

    log = deliver(stack, calls, message("campaign.updated", campaign_id))

    assert len(stack.vendor_calls(f"/campaigns/{campaign_id}/start-warmup")) == 1
    assert dict(log.calls) == {"dynamodb.BatchGetItem": 1, "dynamodb.UpdateItem": 1}


def test_worker_unexpected_campaign_deleted_makes_four_dynamodb_calls(
    stack: Stack, calls: AwsCalls, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("UNEXPECTED_CAMPAIGN_POLICY", "delete")
    load_warm_worker(stack)
    campaign_id = str(stack.control.seed_campaign(email="eve@contoso.com")["id"])

    log = deliver(stack, calls, pending(campaign_id, "eve@contoso.com"))

    assert stack.ledger(campaign_id)["state"] == "deleted"  # type: ignore[index]
    assert dict(log.calls) == {
        "dynamodb.UpdateItem": 1,
        "dynamodb.BatchGetItem": 1,
        "dynamodb.TransactWriteItems": 1,  # the ledger's `deleting` claim, with the token
        "dynamodb.PutItem": 1,  # the ledger: deleted
    }


def test_worker_calls_are_all_allowed_by_its_role(
    stack: Stack, calls: AwsCalls, monkeypatch: pytest.MonkeyPatch
) -> None:
    campaign_id = stack.seed_expected(ADA)
    deliver(stack, calls, pending(campaign_id))
    deliver(stack, calls, pending(campaign_id))
    monkeypatch.setenv("UNEXPECTED_CAMPAIGN_POLICY", "delete")
    load_warm_worker(stack)
    deliver(stack, calls, pending(str(stack.control.seed_campaign(email="eve@contoso.com")["id"])))

    made = {name.replace(".", ":", 1) for name in calls.logs["worker"].calls}
    needed = set().union(
        *(TRANSACTION_ACTIONS if a == "dynamodb:TransactWriteItems" else {a} for a in made)
    )

    assert {"dynamodb:BatchGetItem", "dynamodb:TransactWriteItems"} <= made
    assert needed <= role_actions("WorkerFunctionRole")


def role_actions(logical_id: str) -> set[str]:
    statements: list[dict[str, Any]] = resource(logical_id)["Properties"]["Policies"][0][
        "PolicyDocument"
    ]["Statement"]
    actions: set[str] = set()
    for statement in statements:
        action = statement["Action"]
        actions |= {action} if isinstance(action, str) else set(action)
    return actions
