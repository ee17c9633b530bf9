"""EventsFunction: MailboxTable's stream → one EventBridge event per mailbox state change and
per unexpected campaign (warmgate.services.mailbox_events).

A partial failure names the first record not published: Lambda retries the stream from there
(ReportBatchItemFailures). An unreadable record first in the batch fails the invocation, so
Lambda bisects the batch down to it (BisectBatchOnFunctionError). After MaximumRetryAttempts
Lambda hands the description of what is still failing to EventsDLQ (alarmed).
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from warmgate.adapters import aws
from warmgate.observability import Metric, count, logger, metrics
from warmgate.services.mailbox_events import MailboxEventPublisher
from warmgate.settings import EventsSettings

settings = EventsSettings.from_environ()
publisher = MailboxEventPublisher(aws.client("events"), settings.event_bus_name)


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    records = event.get("Records") or []
    outcome = publisher.publish(records)
    count(Metric.MAILBOX_EVENTS_PUBLISHED, outcome.published)
    if outcome.retry_from is not None:
        count(Metric.MAILBOX_EVENTS_DEFERRED)
        logger.warning(
            "events not all published: the stream is retried from a record",
            extra={
                "records": len(records),
                "published": outcome.published,
                "retry_from": outcome.retry_from,
                "problem": outcome.problem,
            },
        )
    return {"batchItemFailures": outcome.batch_item_failures}
