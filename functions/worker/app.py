"""WorkerFunction: WorkQueue batches → verify each campaign → start / resume / delete / leave
(each record: warmgate.api.worker_batch)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.batch import EventType, process_partial_response
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.typing import LambdaContext

from warmgate.adapters import aws
from warmgate.adapters.sqs import WorkQueue
from warmgate.api.batch import TimeBoxedBatchProcessor
from warmgate.api.worker_batch import WorkerBatch
from warmgate.observability import logger, metrics
from warmgate.settings import WorkerSettings
from warmgate.wiring import worker_from_settings, worker_record_seconds

settings = WorkerSettings.from_environ()
batch = WorkerBatch(
    worker_from_settings(settings, aws.client("dynamodb")),
    WorkQueue(aws.client("sqs"), settings.work_queue_url),
    record_seconds=worker_record_seconds(settings),
)
processor = TimeBoxedBatchProcessor(event_type=EventType.SQS)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> PartialItemFailureResponse:
    return process_partial_response(
        event=event, record_handler=batch.handle_record, processor=processor, context=context
    )
