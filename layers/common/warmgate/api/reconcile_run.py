"""One scheduled run of the reconciler (ReconcilerFunction): its report counted and logged."""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from warmgate.api.batch import seconds_left
from warmgate.observability import Metric, count, logger
from warmgate.services.reconciler import Reconciler

# ReconcileReport's counts, each as the metric it is.
REPORT_METRICS = {
    "expired": Metric.EXPECTATIONS_EXPIRED,
    "pending_seen": Metric.PENDING_CAMPAIGNS_SEEN,
    "enqueued": Metric.STRANDED_CAMPAIGNS_QUEUED,
    "unexpected_pending": Metric.UNEXPECTED_PENDING_CAMPAIGNS,
    "resumes_requeued": Metric.RESUME_REQUESTS_REQUEUED,
    "reconnects_requeued": Metric.RECONNECT_REQUESTS_REQUEUED,
    "pages_read": Metric.RECONCILE_PAGES_READ,
}


def reconcile(reconciler: Reconciler, context: LambdaContext) -> dict[str, Any]:
    """Stopping early (Mailivery or the budget said "not now", or time ran short) is a clean
    end, counted in ReconcileInterrupted; any exception fails the run (ReconcilerErrorsAlarm)."""
    report = asdict(reconciler.run(time_left=lambda: seconds_left(context)))
    for field, metric in REPORT_METRICS.items():
        count(metric, report[field])
    count(Metric.RECONCILE_INTERRUPTED, int(report["interrupted"] is not None))
    count(Metric.RECONCILE_PASS_COMPLETED, int(report["pass_completed"]))
    logger.info("reconciled", extra=report)
    return report
