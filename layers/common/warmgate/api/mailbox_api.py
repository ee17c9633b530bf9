"""The /mailboxes routes (OnboardingFunction): each request to the onboarding service, each
answer shaped as openapi.yaml describes it, every error through one map (warmgate.api.http)."""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import unquote

from aws_lambda_powertools.event_handler import APIGatewayHttpResolver, Response

from warmgate.api.http import (
    MAX_API_BODY_BYTES,
    ApiError,
    api_error_for,
    caller_principal,
    decode_body,
    parse_json_object,
)
from warmgate.domain.mailbox_views import consent_link, mailbox_record, mailbox_summary
from warmgate.domain.mailboxes import (
    utc_now,
)
from warmgate.observability import Metric, count, logger
from warmgate.services.mailbox_requests import MailboxListQuery, MailboxRequest
from warmgate.services.onboarding import OnboardingService


def mailbox_api(service: OnboardingService) -> APIGatewayHttpResolver:
    """A resolver answering every /mailboxes route with `service`."""
    app = APIGatewayHttpResolver()

    def principal() -> str | None:
        return caller_principal(app.current_event.raw_event)

    @app.post("/mailboxes")
    def request_consent() -> Response[str]:
        event = app.current_event
        body = decode_body(event.body, bool(event.is_base64_encoded), MAX_API_BODY_BYTES)
        request = MailboxRequest.model_validate(parse_json_object(body))
        outcome = service.request_consent(request, principal=principal())
        count(Metric.CONSENT_LINK_ISSUED if outcome.created else Metric.CONSENT_LINK_REPLAYED)
        if not outcome.saved:
            count(Metric.CONSENT_LINK_NOT_SAVED)
        return json_response(201 if outcome.created else 200, consent_link(outcome.mailbox))

    @app.get("/mailboxes")
    def list_mailboxes() -> Response[str]:
        query = MailboxListQuery.model_validate(app.current_event.query_string_parameters or {})
        listing = service.list_mailboxes(query, principal=principal())
        now = utc_now()
        mailboxes = [mailbox_summary(mailbox, now) for mailbox in listing.mailboxes]
        return json_response(200, {"mailboxes": mailboxes, "next_cursor": listing.next_cursor})

    @app.get("/mailboxes/<email>")
    def get_mailbox(email: str) -> Response[str]:
        return json_response(200, mailbox_record(service.get(unquote(email)), utc_now()))

    @app.delete("/mailboxes/<email>")
    def withdraw_mailbox(email: str) -> Response[str]:
        withdrawn = service.withdraw(unquote(email), principal())
        return json_response(200, mailbox_record(withdrawn, utc_now()))

    @app.post("/mailboxes/<email>/resume")
    def resume_mailbox(email: str) -> Response[str]:
        mailbox = service.request_resume(unquote(email), principal())
        count(Metric.RESUME_REQUESTED)
        return json_response(202, mailbox_record(mailbox, utc_now()))

    app.exception_handler(Exception)(answer_error)
    return app


def answer_error(exc: Exception) -> Response[str]:
    error = api_error_for(exc)
    if error is None:
        logger.exception("unexpected error")
        error = ApiError(500, "INTERNAL_ERROR", "unexpected error; see the function's logs")
    else:
        logger.info("request refused", extra={"status": error.status, "code": error.code})
    return json_response(error.status, error.body(), error.headers)


def json_response(
    status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> Response[str]:
    return Response(
        status_code=status,
        content_type="application/json",
        body=json.dumps(body),
        headers=headers or {},
    )
