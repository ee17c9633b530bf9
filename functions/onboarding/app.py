"""OnboardingFunction: POST and GET /mailboxes, GET and DELETE /mailboxes/{email}, POST
/mailboxes/{email}/resume (all IAM-authorized)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response
from aws_lambda_powertools.logging import correlation_paths
from aws_lambda_powertools.utilities.typing import LambdaContext

from warmgate.adapters import aws
from warmgate.api.http import (
    MAX_API_BODY_BYTES,
    ApiError,
    api_error_for,
    caller_principal,
    decode_body,
    parse_json_object,
)
from warmgate.domain.mailbox_views import mailbox_record, mailbox_summary
from warmgate.domain.mailboxes import utc_now
from warmgate.observability import logger, metrics
from warmgate.services.onboarding import MailboxListQuery, MailboxRequest
from warmgate.settings import MAILIVERY_API_KEY, load_settings
from warmgate.wiring import onboarding_from_settings

settings = load_settings(require=["MAILBOX_TABLE_NAME", "WORK_QUEUE_URL", MAILIVERY_API_KEY])
dynamodb = aws.client("dynamodb")
service = onboarding_from_settings(settings, dynamodb)
app = APIGatewayHttpResolver()


@app.post("/mailboxes")
def request_consent() -> Response[str]:
    event = app.current_event
    body = decode_body(event.body, bool(event.is_base64_encoded), MAX_API_BODY_BYTES)
    request = MailboxRequest.model_validate(parse_json_object(body))
    outcome = service.request_consent(request, principal=caller_principal(event.raw_event))
    metrics.add_metric(
        "ConsentLinkIssued" if outcome.created else "ConsentLinkReplayed", "Count", 1
    )
    if not outcome.saved:
        metrics.add_metric("ConsentLinkNotSaved", "Count", 1)
    mailbox = outcome.mailbox
    return _json(
        201 if outcome.created else 200,
        {
            "email": mailbox.email,
            "state": mailbox.state.value,
            "consent_url": mailbox.consent_url,
            "expires_at": mailbox.expires_at,
        },
    )


@app.get("/mailboxes")
def list_mailboxes() -> Response[str]:
    event = app.current_event
    query = MailboxListQuery.model_validate(event.query_string_parameters or {})
    listing = service.list_mailboxes(query, principal=caller_principal(event.raw_event))
    now = utc_now()
    return _json(
        200,
        {
            "mailboxes": [mailbox_summary(mailbox, now) for mailbox in listing.mailboxes],
            "next_cursor": listing.next_cursor,
        },
    )


@app.get("/mailboxes/<email>")
def get_mailbox(email: str) -> Response[str]:
    return _json(200, mailbox_record(service.get(unquote(email)), utc_now()))


@app.delete("/mailboxes/<email>")
def withdraw_mailbox(email: str) -> Response[str]:
    principal = caller_principal(app.current_event.raw_event)
    return _json(200, mailbox_record(service.withdraw(unquote(email), principal), utc_now()))


@app.post("/mailboxes/<email>/resume")
def resume_mailbox(email: str) -> Response[str]:
    principal = caller_principal(app.current_event.raw_event)
    mailbox = service.request_resume(unquote(email), principal)
    metrics.add_metric("ResumeRequested", "Count", 1)
    return _json(202, mailbox_record(mailbox, utc_now()))


@app.exception_handler(Exception)  # type: ignore[untyped-decorator]
def answer_error(exc: Exception) -> Response[str]:
    error = api_error_for(exc)
    if error is None:
        logger.exception("unexpected error")
        error = ApiError(500, "INTERNAL_ERROR", "unexpected error; see the function's logs")
    else:
        logger.info("request refused", extra={"status": error.status, "code": error.code})
    return _json(error.status, error.body(), error.headers)


@logger.inject_lambda_context(correlation_id_path=correlation_paths.API_GATEWAY_HTTP)
@metrics.log_metrics
def lambda_handler(event: dict[str, Any], context: LambdaContext) -> dict[str, Any]:
    return app.resolve(event, context)


def _json(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response[str]:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(body),
        headers=headers or {},
    )
