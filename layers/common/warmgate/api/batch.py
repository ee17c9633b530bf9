"""The worker's SQS batch under a time budget: a record is started only while its worst case
(warmgate.wiring.worker_record_seconds) is left of the invocation, so a slow vendor delays the
work but never times out an invocation halfway through a record."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import BatchProcessor, FailureResponse
from aws_lambda_powertools.utilities.batch.exceptions import ExceptionInfo
from aws_lambda_powertools.utilities.typing import LambdaContext


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
