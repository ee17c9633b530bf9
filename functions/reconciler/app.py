"""ReconcilerFunction: on a schedule, expire stale expectations and re-queue stranded campaigns
(warmgate.services.reconciler; the run's report: warmgate.api.reconcile_run)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from warmgate.adapters import aws
from warmgate.api.reconcile_run import reconcile
from warmgate.observability import logger, metrics
from warmgate.settings import ReconcilerSettings
from warmgate.wiring import reconciler_from_settings

settings = ReconcilerSettings.from_environ()
reconciler = reconciler_from_settings(settings, aws.client("dynamodb"))


@logger.inject_lambda_context
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return reconcile(reconciler, context)
