"""The time budget: how long one unit of work can take at worst, computed from the settings.

Each Mailivery call has a deadline that the client enforces (`worst_case_call_seconds`: every
attempt at its timeouts, budget waits, backoff and Retry-After sleeps). A unit of work adds its
vendor calls and an allowance for its DynamoDB and SQS calls. Two rules follow, both tested:
- every function's Timeout in template.yaml is above the worst case of its unit of work;
- a function starts a unit only while at least its worst case is left of the invocation, so
  a slow vendor delays the work but never times out an invocation halfway through a record.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, FailureResponse
from aws_lambda_powertools.utilities.batch.exceptions import ExceptionInfo
from aws_lambda_powertools.utilities.typing import LambdaContext

from warmgate.mailivery import worst_case_call_seconds
from warmgate.settings import Settings

# The DynamoDB and SQS calls of one unit of work (claims, records, the request budget's
# reads and writes, a deferral): about ten, each a few milliseconds when AWS is healthy. Not
# modelled at their own timeouts: if AWS itself stalls, the invocation's timeout ends it, SQS
# delivers the record again and the claim lease keeps a second worker from acting twice.
AWS_CALLS_ALLOWANCE_SECONDS = 10.0


def worker_record_seconds(settings: Settings) -> float:
    """One WorkQueue record: the re-read (GET), one start/resume/delete (never retried), and
    the GET that checks a 409 on start/resume."""
    return worst_case_call_seconds(settings) + claim_hold_seconds(settings)


def claim_hold_seconds(settings: Settings) -> float:
    """From a worker's claim (mailbox `verifying`, ledger `deleting`) to its result: the
    action and the GET that checks a 409. CLAIM_LEASE_SECONDS must be above it, or another
    worker could take over the claim of a worker that is still calling Mailivery."""
    return (
        worst_case_call_seconds(settings, retried=False)
        + worst_case_call_seconds(settings)
        + AWS_CALLS_ALLOWANCE_SECONDS
    )


def onboarding_request_seconds(settings: Settings) -> float:
    """One POST /mailboxes: the ms-graph create, never retried."""
    return worst_case_call_seconds(settings, retried=False) + AWS_CALLS_ALLOWANCE_SECONDS


def reconciler_page_seconds(settings: Settings) -> float:
    """One page of Mailivery's campaign list (a read) and the re-queueing of what it holds."""
    return worst_case_call_seconds(settings) + AWS_CALLS_ALLOWANCE_SECONDS


def seconds_left(context: LambdaContext) -> float:
    return context.get_remaining_time_in_millis() / 1000


class OutOfTime(Exception):
    """Less of the invocation is left than the worst case of the next record: it is not
    started, and SQS delivers it again."""

    def __init__(self, left: float, needed: float) -> None:
        super().__init__(f"{left:.1f} s left of the invocation, a record may need {needed:.1f} s")
        self.left = left
        self.needed = needed


def ensure_time_for(context: LambdaContext, needed: float) -> None:
    """Raise OutOfTime unless at least `needed` seconds are left of the invocation."""
    left = seconds_left(context)
    if left < needed:
        raise OutOfTime(left, needed)


class TimeBoxedBatchProcessor(BatchProcessor):
    """A BatchProcessor whose record handler may decline a record with OutOfTime.

    A declined record is reported in `batchItemFailures`, so SQS delivers it again after its
    visibility timeout, but it is not an error: it is left out of `exceptions`, so a batch
    declined from its first record on is still a partial response, not Powertools' "entire
    batch failed" exception, which would fail the invocation as a function error.
    """

    def failure_handler(self, record: Any, exception: ExceptionInfo) -> FailureResponse:
        if isinstance(exception[1], OutOfTime):
            self.fail_messages.append(record)
            return ("fail", str(exception[1]), record)
        return super().failure_handler(record, exception)
