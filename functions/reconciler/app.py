"""ReconcilerFunction: on a schedule, expire stale expectations and re-queue stranded campaigns."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from warmgate.adapters import aws
from warmgate.api.batch import seconds_left
from warmgate.observability import logger, metrics
from warmgate.settings import ReconcilerSettings
from warmgate.wiring import reconciler_from_settings

settings = ReconcilerSettings.from_environ()
dynamodb = aws.client("dynamodb")
reconciler = reconciler_from_settings(settings, dynamodb)

METRICS = {
    "expired": "ExpectationsExpired",
    "pending_seen": "PendingCampaignsSeen",
    "enqueued": "StrandedCampaignsQueued",
    "unexpected_pending": "UnexpectedPendingCampaigns",
    "resumes_requeued": "ResumeRequestsRequeued",
    "reconnects_requeued": "ReconnectRequestsRequeued",
    "pages_read": "ReconcilePagesRead",
}


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    # Stopping early (Mailivery or the budget said "not now", or time ran short) is a clean
    # end, counted in ReconcileInterrupted; any exception fails the run (ReconcilerErrorsAlarm).
    report = asdict(reconciler.run(time_left=lambda: seconds_left(context)))
    for field, metric in METRICS.items():
        metrics.add_metric(name=metric, unit="Count", value=report[field])
    stopped_early = report["interrupted"] is not None
    metrics.add_metric(name="ReconcileInterrupted", unit="Count", value=int(stopped_early))
    metrics.add_metric(
        name="ReconcilePassCompleted", unit="Count", value=int(report["pass_completed"])
    )
    logger.info("reconciled", extra=report)
    return report
