"""WorkerFunction when its own AWS calls fail or its invocation dies, injected as the soak
injects them (devstack.aws_faults' botocore hooks, here on moto and the sandbox): the record is
retried, never acknowledged unfinished, and the vendor sees one start."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from aws_lambda_powertools.utilities.batch.exceptions import BatchProcessingError

from devstack.aws_faults import FAULTS, AwsFault, AwsFaults, SimulatedCrash, install, invocation
from tests.e2e.soak_faults import result_after_vendor_answered
from tests.integration.harness import ADA, TABLE, Stack, pending
from warmgate.domain.mailboxes import iso

WORKER = "WorkerFunction"


@pytest.fixture
def faults() -> Iterator[AwsFaults]:
    install()  # before the stack: the worker's clients are made with the hooks on
    yield FAULTS
    FAULTS.clear()


@pytest.fixture
def faulted(faults: AwsFaults, stack: Stack) -> Stack:
    return stack


def deliver(stack: Stack, body: str) -> list[str]:
    """One worker invocation, as the local stack runs it: the faults' rules apply inside."""
    with invocation(WORKER, {}):
        return stack.deliver(body)


def starts(stack: Stack) -> int:
    return len(stack.vendor_calls("/start-warmup"))


def lease_ends(stack: Stack) -> None:
    """Time passes past the claim's lease (CLAIM_LEASE_SECONDS, 90 by default)."""
    past = datetime.now(UTC) - timedelta(seconds=91)
    stack.aws.update_item(
        TableName=TABLE,
        Key={"pk": {"S": f"mailbox#{ADA}"}},
        UpdateExpression="SET updated_at = :past",
        ExpressionAttributeValues={":past": {"S": iso(past)}},
    )


def test_throttled_result_write_fails_the_record_and_the_retry_starts_nothing(
    faulted: Stack, faults: AwsFaults
) -> None:
    campaign_id = faulted.consent(faulted.expect())
    faults.configure(
        [
            AwsFault(
                "result write throttled",
                "dynamodb.PutItem",
                error="ProvisionedThroughputExceededException",
                functions=(WORKER,),
                when=result_after_vendor_answered,
                count=1,
            )
        ]
    )

    with pytest.raises(BatchProcessingError):  # its only record failed: SQS delivers it again
        deliver(faulted, pending(campaign_id))
    assert faults.injected_count("result write throttled") == 1
    assert faulted.mailbox()["state"] == "verifying"  # the claim stands: the start ran
    lease_ends(faulted)
    assert deliver(faulted, pending(campaign_id)) == []

    assert faulted.mailbox()["state"] == "warming"  # found active by the re-read
    assert starts(faulted) == 1


def test_worker_that_died_after_the_vendor_answered_is_settled_by_a_reread(
    faulted: Stack, faults: AwsFaults
) -> None:
    campaign_id = faulted.consent(faulted.expect())
    faults.configure(
        [
            AwsFault(
                "crash after the vendor answered",
                "dynamodb.PutItem",
                crash=True,
                functions=(WORKER,),
                when=result_after_vendor_answered,
                count=1,
            )
        ]
    )

    with pytest.raises(SimulatedCrash):
        deliver(faulted, pending(campaign_id))
    assert starts(faulted) == 1
    # The batch comes back (or a duplicate arrives) within the lease: it waits, no call.
    assert deliver(faulted, pending(campaign_id)) == []
    assert len(faulted.deferred()) == 1
    assert faulted.mailbox()["state"] == "verifying"
    lease_ends(faulted)
    assert deliver(faulted, pending(campaign_id)) == []

    assert faulted.mailbox()["state"] == "warming"
    assert starts(faulted) == 1


def test_deferral_that_cannot_be_sent_fails_the_record_instead_of_dropping_it(
    faulted: Stack, faults: AwsFaults
) -> None:
    campaign_id = faulted.consent(faulted.expect())
    faulted.control.set_rate_limit(1)
    faulted.worker.batch.worker._mailivery.list_campaigns()  # the window's only request: a 429 next
    faults.configure(
        [
            AwsFault(
                "deferral refused",
                "sqs.SendMessage",
                error="InternalError",
                functions=(WORKER,),
                count=1,
            )
        ]
    )

    with pytest.raises(BatchProcessingError):  # not acknowledged: SQS delivers it again
        deliver(faulted, pending(campaign_id))

    assert faults.injected_count("deferral refused") == 1
    assert faulted.deferred() == []
    assert faulted.mailbox()["state"] == "consent_requested"  # the request waits, not lost
