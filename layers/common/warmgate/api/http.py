"""HTTP edges shared by the API handlers: body decoding, and the one map from errors to statuses."""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from typing import Any

from aws_lambda_powertools.event_handler.exceptions import NotFoundError
from pydantic import ValidationError

from warmgate.adapters import mailivery
from warmgate.adapters.budget import BudgetExhausted

# Body decoding lives in http_body so the webhook can use it without this module's imports;
# re-exported here for the API handlers.
from warmgate.api.http_body import BadRequestBody as BadRequestBody
from warmgate.api.http_body import BodyTooLarge as BodyTooLarge
from warmgate.api.http_body import decode_body as decode_body
from warmgate.domain.emails import InvalidEmail
from warmgate.services.mailbox_requests import MailboxNotFound, NotOwner, OnboardingConflict
from warmgate.services.page_cursor import InvalidCursor

MAX_API_BODY_BYTES = 16 * 1024  # a POST /mailboxes body is a few hundred bytes
DEFAULT_RETRY_AFTER = 60  # Mailivery's window is a minute when it does not say


@dataclass(frozen=True, slots=True)
class ApiError:
    status: int
    code: str
    message: str
    headers: dict[str, str] = field(default_factory=dict)

    def body(self) -> dict[str, str]:
        return {"code": self.code, "message": self.message}


def caller_principal(event: dict[str, Any]) -> str | None:
    """The IAM identity API Gateway authorized: the owner of the requests it makes.

    An assumed-role session counts as its role (`…:assumed-role/<role>`): the sessions of one
    integrator backend (one per task, container or Lambda instance) are one principal.
    """
    iam = (event.get("requestContext", {}).get("authorizer") or {}).get("iam") or {}
    principal = iam.get("userArn") or iam.get("callerId")
    if not principal:
        return None
    arn = str(principal)
    if ":assumed-role/" in arn:
        arn = "/".join(arn.split("/")[:2])
    return arn


def parse_json_object(data: bytes) -> dict[str, Any]:
    try:
        parsed = json.loads(data)
    except (UnicodeDecodeError, ValueError):
        raise BadRequestBody("body is not valid JSON") from None
    if not isinstance(parsed, dict):
        raise BadRequestBody("body must be a JSON object")
    return parsed


def api_error_for(exc: Exception) -> ApiError | None:
    """The API's answer to a known error; None for an unexpected one (a 500)."""
    match exc:
        case BadRequestBody():
            return ApiError(400, "BAD_REQUEST", str(exc))
        case BodyTooLarge():
            return ApiError(413, "PAYLOAD_TOO_LARGE", str(exc))
        case ValidationError():
            return ApiError(422, "VALIDATION_FAILED", _first_problem(exc))
        case InvalidEmail():
            return ApiError(422, "VALIDATION_FAILED", f"email: {exc}")
        case InvalidCursor():
            return ApiError(422, "VALIDATION_FAILED", f"cursor: {exc}")
        case MailboxNotFound():
            return ApiError(404, "NOT_FOUND", "no record for this mailbox")
        case NotOwner():
            return ApiError(403, "FORBIDDEN", str(exc))
        case NotFoundError():
            # The resolver has no handler for the path: API Gateway routed it, so it is a route
            # of the template whose handler is missing, or a {param} the resolver's pattern
            # refuses (a control character in {email}). Either way nothing is here: not a 500.
            return ApiError(404, "NOT_FOUND", "nothing at this path")
        case OnboardingConflict():
            headers = {"Retry-After": str(exc.retry_after)} if exc.retry_after else {}
            return ApiError(409, exc.code, exc.message, headers)
        case mailivery.FeatureDisabled():
            return ApiError(
                503,
                "MS_GRAPH_FEATURE_DISABLED",
                "Mailivery has not enabled Microsoft Graph onboarding for this account: "
                "ask Mailivery support to add the account to the ms-graph allowlist",
            )
        case mailivery.RateLimited() | BudgetExhausted():
            seconds = math.ceil(exc.retry_after) if exc.retry_after else DEFAULT_RETRY_AFTER
            return ApiError(
                503,
                "MAILIVERY_RATE_LIMITED",
                "Mailivery's request budget is used up; retry later",
                {"Retry-After": str(max(1, seconds))},
            )
        case mailivery.ValidationFailed():
            return ApiError(422, "MAILIVERY_VALIDATION_FAILED", _vendor_problem(exc))
        case mailivery.Conflict():
            return ApiError(409, "MAILIVERY_CONFLICT", _vendor_problem(exc))
        case mailivery.Timeout():
            return ApiError(502, "MAILIVERY_TIMEOUT", _vendor_problem(exc))
        case mailivery.Unauthorized():
            # Our API key was refused: an operator problem, not the caller's.
            return ApiError(502, "MAILIVERY_AUTH_FAILED", "Mailivery rejected warmgate's API key")
        case mailivery.MailiveryError():
            return ApiError(502, "MAILIVERY_UNAVAILABLE", _vendor_problem(exc))
    return None


def _first_problem(exc: ValidationError) -> str:
    problems = []
    for error in exc.errors(include_url=False):
        where = ".".join(str(p) for p in error["loc"]) or "body"
        message = error["msg"].removeprefix("Value error, ")
        problems.append(f"{where}: {message}")
    return "; ".join(problems)


def _vendor_problem(exc: mailivery.MailiveryError) -> str:
    return f"Mailivery: {exc.message} (request id {exc.request_id})"
