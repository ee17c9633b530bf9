"""OnboardingFunction: POST and GET /mailboxes, GET and DELETE /mailboxes/{email}, POST
/mailboxes/{email}/resume (all IAM-authorized; the routes: warmgate.api.mailbox_api)."""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from warmgate.adapters import aws
from warmgate.api.mailbox_api import mailbox_api
from warmgate.observability import logger, metrics
from warmgate.settings import OnboardingSettings
from warmgate.wiring import onboarding_from_settings

settings = OnboardingSettings.from_environ()
dynamodb = aws.client("dynamodb")
service = onboarding_from_settings(settings, dynamodb)
app = mailbox_api(service)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)
