"""The webhook route's HTTP API v2 event in, its answer out (WebhookFunction): a plain
function on the event (no resolver, no Tracer, no parser envelopes: the hot path).

It answers 202 only once the message is on WorkQueue, 5xx when it is not, so that Mailivery
retries and nothing is lost. A rejected call's token, path and body are never logged.
"""

from __future__ import annotations

import json
from typing import Any

from aws_lambda_powertools.utilities.typing import LambdaContext

from warmgate.api.webhook_intake import (
    ACCEPTED,
    NOT_FOUND,
    WebhookAnswer,
    WebhookIntake,
    answer_for,
)
from warmgate.observability import Metric, count, logger

_INTERNAL_ERROR = WebhookAnswer(
    500, {"code": "INTERNAL_ERROR", "message": "the webhook was not queued; retry"}
)


def answer_webhook(
    intake: WebhookIntake, event: dict[str, Any], context: LambdaContext
) -> dict[str, Any]:
    request_id = str((event.get("requestContext") or {}).get("requestId") or context.aws_request_id)
    try:
        receipt = intake.receive(
            token=(event.get("pathParameters") or {}).get("token"),
            body=event.get("body"),
            is_base64=bool(event.get("isBase64Encoded")),
            request_id=request_id,
        )
    except Exception as exc:
        return _refused(exc)
    message = receipt.message
    logger.info(
        "webhook accepted",
        extra={
            "event_type": message.event_type,
            "campaign_id": message.campaign_id,
            # An email that is no usable address was dropped from the hint, not refused.
            "email_hint_invalid": message.email_hint_invalid,
            "message_id": receipt.message_id,
        },
    )
    count(Metric.WEBHOOK_ACCEPTED)
    return _response(ACCEPTED)


def _refused(exc: Exception) -> dict[str, Any]:
    answer = answer_for(exc)
    if answer is None:
        # Tracebacks name our code and the error type; no frame's locals are logged.
        logger.exception("webhook failed: unexpected error")
        answer = _INTERNAL_ERROR
    elif answer is NOT_FOUND:
        logger.info("webhook rejected: bad token")
    elif answer.status >= 500:
        # The error and its botocore / Powertools cause name the queue or the secret and the
        # problem; neither carries the token's value or the body.
        logger.error(
            "webhook not queued",
            extra={
                "status": answer.status,
                "code": answer.body["code"],
                "error": str(exc),
                "cause": None if exc.__cause__ is None else repr(exc.__cause__),
            },
        )
    else:
        # The reasons name fields and problems, never the submitted values (WebhookRejected).
        logger.info(
            "webhook rejected: invalid body",
            extra={
                "status": answer.status,
                "code": answer.body["code"],
                "reason": answer.body["message"],
            },
        )
    count(Metric.WEBHOOK_FAILED if answer.status >= 500 else Metric.WEBHOOK_REJECTED)
    return _response(answer)


def _response(answer: WebhookAnswer) -> dict[str, Any]:
    return {
        "statusCode": answer.status,
        "headers": {"content-type": "application/json"},
        "body": json.dumps(answer.body),
    }
