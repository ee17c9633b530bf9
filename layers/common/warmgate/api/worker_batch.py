"""One WorkQueue record through the worker: time-boxed, deferrals handed back as fresh copies,
each outcome counted (WorkerFunction's record handler)."""

from __future__ import annotations

from dataclasses import dataclass, replace

from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from warmgate.adapters.sqs import ATTEMPT_ATTRIBUTE, QueuedWebhook, WorkQueue
from warmgate.api.batch import OutOfTime, ensure_time_for
from warmgate.observability import Metric, count, logger
from warmgate.services.worker import CampaignWorker, RetryLater

# WorkQueue's redrive maxReceiveCount (template.yaml): the receive that fails this time goes
# to WorkDLQ, so it is counted as such.
MAX_RECEIVES = 5


@dataclass
class WorkerBatch:
    """Mutable so that a benchmark or test can swap the worker (e.g. onto a scaled clock)."""

    worker: CampaignWorker
    work_queue: WorkQueue
    # A record is started only while this much of the invocation is left (template: Timeout).
    record_seconds: float

    def handle_record(self, record: SQSRecord, lambda_context: LambdaContext) -> None:
        try:
            message = _message(record)  # malformed: fails, then the DLQ
            with logger.append_context_keys(
                campaign_id=message.campaign_id,
                webhook_request_id=message.request_id,
                event_type=message.event_type,
            ):
                if self._enough_time_left(lambda_context, message):
                    self._handle(message)
        except Exception:
            if int(record.attributes.approximate_receive_count) >= MAX_RECEIVES:
                count(Metric.DLQ_BOUND)
                logger.exception("last receive failed: the message goes to WorkDLQ")
            raise

    def _enough_time_left(self, context: LambdaContext, message: QueuedWebhook) -> bool:
        """Start a record only if it can finish. Otherwise hand it back untouched as a fresh
        copy, due at once (a slow vendor must not use up the receives that lead to WorkDLQ);
        if even that send fails, it is reported failed without being an error
        (TimeBoxedBatchProcessor) and SQS delivers it again after the visibility timeout."""
        try:
            ensure_time_for(context, self.record_seconds)
        except OutOfTime as late:
            logger.info("record not started: too little time left", extra={"reason": str(late)})
            count(Metric.OUT_OF_TIME)
            try:
                self.work_queue.send(message)
            except Exception:
                logger.exception("could not hand the record back: SQS will redeliver it")
                raise late from None
            return False
        return True

    def _handle(self, message: QueuedWebhook) -> None:
        try:
            outcome = self.worker.handle(message)
        except RetryLater as later:
            # A fresh copy with a delay instead of a failed receive: waiting for the budget or
            # for a mailbox to reconnect must not use up the receives that lead to the DLQ.
            if later.attempt is not None:
                message = replace(message, attempt=later.attempt)
            self.work_queue.send(message, delay_seconds=later.delay)
            logger.info(
                "deferred",
                extra={"delay_s": later.delay, "reason": later.reason, "attempt": message.attempt},
            )
            count(Metric.of(later.kind))
            return
        count(Metric.of(outcome.value))


def _message(record: SQSRecord) -> QueuedWebhook:
    attempt = record.message_attributes[ATTEMPT_ATTRIBUTE]
    return QueuedWebhook.from_message_body(
        record.body, attempt=int(attempt.string_value or 0) if attempt else 0
    )
