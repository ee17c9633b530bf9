"""WebhookFunction: POST /webhooks/mailivery/{token} (no IAM; the path token authenticates).

The hot path: a plain handler on the HTTP API v2 event (warmgate.api.webhook_http); 202 only
once the message is on WorkQueue.
"""

from __future__ import annotations

from typing import Any

from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from warmgate.adapters import aws
from warmgate.api.webhook_http import answer_webhook
from warmgate.api.webhook_intake import SQS_CLIENT_CONFIG, WebhookIntake, WebhookTokenSource
from warmgate.observability import logger, metrics
from warmgate.settings import WebhookSettings

settings = WebhookSettings.from_environ()
sqs = aws.client("sqs", config=SQS_CLIENT_CONFIG)
intake = WebhookIntake(
    sqs,
    settings.work_queue_url,
    WebhookTokenSource.from_reference(
        settings.webhook_token_secret, max_age=settings.secret_max_age_seconds
    ),
)


# log_event=False explicitly: POWERTOOLS_LOGGER_LOG_EVENT=true would otherwise log the event,
# and with it the token in the path and the body.
@metrics.log_metrics
@logger.inject_lambda_context(
    correlation_id_path=correlation_paths.API_GATEWAY_HTTP, log_event=False, clear_state=True
)
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return answer_webhook(intake, event, context)
