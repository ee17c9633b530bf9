"""WorkerFunction: WorkQueue batches → verify each campaign → start / resume / delete / leave."""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from aws_lambda_powertools.utilities.batch import EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.sqs_event import SQSRecord
from aws_lambda_powertools.utilities.typing import LambdaContext

from warmgate.adapters import aws
from warmgate.adapters.sqs import ATTEMPT_ATTRIBUTE, QueuedWebhook, WorkQueue
from warmgate.api.batch import OutOfTime, TimeBoxedBatchProcessor, ensure_time_for
from warmgate.observability import Metric, count, logger, metrics
from warmgate.services.worker import RetryLater
from warmgate.settings import WorkerSettings
from warmgate.wiring import worker_from_settings, worker_record_seconds

# WorkQueue's redrive maxReceiveCount (template.yaml): the receive that fails this time goes
# to WorkDLQ, so it is counted as such.
MAX_RECEIVES = 5

settings = WorkerSettings.from_environ()
worker = worker_from_settings(settings, aws.client("dynamodb"))
work_queue = WorkQueue(aws.client("sqs"), settings.work_queue_url)
processor = TimeBoxedBatchProcessor(event_type=EventType.SQS)
# A record is started only while this much of the invocation is left (template: Timeout).
RECORD_SECONDS = worker_record_seconds(settings)


def handle_record(record: SQSRecord, lambda_context: LambdaContext) -> None:
    try:
        message = _message(record)  # malformed: fails, then the DLQ
        with logger.append_context_keys(
            campaign_id=message.campaign_id,
            webhook_request_id=message.request_id,
            event_type=message.event_type,
        ):
            if _enough_time_left(lambda_context, message):
                _handle(message)
    except Exception:
        if int(record.attributes.approximate_receive_count) >= MAX_RECEIVES:
            count(Metric.DLQ_BOUND)
            logger.exception("last receive failed: the message goes to WorkDLQ")
        raise


def _message(record: SQSRecord) -> QueuedWebhook:
    attempt = record.message_attributes[ATTEMPT_ATTRIBUTE]
    return QueuedWebhook.from_message_body(
        record.body, attempt=int(attempt.string_value or 0) if attempt else 0
    )


def _enough_time_left(context: LambdaContext, message: QueuedWebhook) -> bool:
    """Start a record only if it can finish. Otherwise hand it back untouched as a fresh copy,
    due at once (a slow vendor must not use up the receives that lead to WorkDLQ); if even
    that send fails, it is reported failed without being an error (TimeBoxedBatchProcessor)
    and SQS delivers it again after the visibility timeout."""
    try:
        ensure_time_for(context, RECORD_SECONDS)
    except OutOfTime as late:
        logger.info("record not started: too little time left", extra={"reason": str(late)})
        count(Metric.OUT_OF_TIME)
        try:
            work_queue.send(message)
        except Exception:
            logger.exception("could not hand the record back: SQS will redeliver it")
            raise late from None
        return False
    return True


def _handle(message: QueuedWebhook) -> None:
    try:
        outcome = worker.handle(message)
    except RetryLater as later:
        # A fresh copy with a delay instead of a failed receive: waiting for the budget or
        # for a mailbox to reconnect must not use up the receives that lead to the DLQ.
        if later.attempt is not None:
            message = replace(message, attempt=later.attempt)
        work_queue.send(message, delay_seconds=later.delay)
        logger.info(
            "deferred",
            extra={"delay_s": later.delay, "reason": later.reason, "attempt": message.attempt},
        )
        count(Metric.of(later.kind))
        return
    count(Metric.of(outcome.value))


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=handle_record, processor=processor, context=context
    )
