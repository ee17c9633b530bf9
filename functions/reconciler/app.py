"""ReconcilerFunction: on a schedule, expire stale expectations and re-queue stranded campaigns."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from warmgate.adapters import aws
from warmgate.api.batch import seconds_left
from warmgate.observability import Metric, count, logger, metrics
from warmgate.settings import ReconcilerSettings
from warmgate.wiring import reconciler_from_settings

settings = ReconcilerSettings.from_environ()
dynamodb = aws.client("dynamodb")
reconciler = reconciler_from_settings(settings, dynamodb)

METRICS = {
    "expired": Metric.EXPECTATIONS_EXPIRED,
    "pending_seen": Metric.PENDING_CAMPAIGNS_SEEN,
    "enqueued": Metric.STRANDED_CAMPAIGNS_QUEUED,
    "unexpected_pending": Metric.UNEXPECTED_PENDING_CAMPAIGNS,
    "resumes_requeued": Metric.RESUME_REQUESTS_REQUEUED,
    "reconnects_requeued": Metric.RECONNECT_REQUESTS_REQUEUED,
    "pages_read": Metric.RECONCILE_PAGES_READ,
}


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Stopping early (Mailivery or the budget said "not now", or time ran short) is a clean
    # end, counted in ReconcileInterrupted; any exception fails the run (ReconcilerErrorsAlarm).
    report = asdict(reconciler.run(time_left=lambda: seconds_left(context)))
    for field, metric in METRICS.items():
        count(metric, report[field])
    stopped_early = report["interrupted"] is not None
    count(Metric.RECONCILE_INTERRUPTED, int(stopped_early))
    count(Metric.RECONCILE_PASS_COMPLETED, int(report["pass_completed"]))
    logger.info("reconciled", extra=report)
    return report
