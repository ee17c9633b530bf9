"""Reading Mailivery's answers: the success envelope unwrapped, every failure a typed error.

The payload is under `data`, some answers also carry `"success": true` (docs/mailivery-contract.md,
"Success envelope"); a failure's status decides its error type, its `code`, `message` and
`errors` fill it in. Anything else is an UnexpectedResponse, never a guess.
"""

from __future__ import annotations

import time
from email.utils import parsedate_to_datetime
from typing import Any

import httpx

from warmgate.adapters.mailivery.errors import (
    Conflict,
    FeatureDisabled,
    MailiveryError,
    NotFound,
    RateLimited,
    ServerError,
    Unauthorized,
    UnexpectedResponse,
    ValidationFailed,
)

FEATURE_DISABLED_CODE = "MS_GRAPH_FEATURE_DISABLED"
MAX_ERROR_MESSAGE = 300  # vendor messages go into our logs and records: keep them bounded


def read_answer(response: httpx.Response, request_id: str, unwrap: bool, allow_empty: bool) -> Any:
    """The answer's `data` (`unwrap`) or its whole envelope, else the failure's typed error.
    `allow_empty`: an empty 2xx body (what a vendor action may answer) reads as None."""
    status = response.status_code
    body = _json_or_none(response)
    if not 200 <= status < 300:
        raise _error_for(response, body, request_id)
    if body is None:
        if allow_empty and not response.content.strip():
            return None
        kind = "empty body" if not response.content.strip() else "a body that is not JSON"
        raise UnexpectedResponse(f"HTTP {status} with {kind}", request_id=request_id, status=status)
    if not isinstance(body, dict) or body.get("success") is False:
        raise UnexpectedResponse(
            "success response is not a JSON object envelope",
            request_id=request_id,
            status=status,
        )
    if not unwrap:
        return body
    if "data" not in body:
        if allow_empty:
            return body
        raise UnexpectedResponse(
            "success response has no data", request_id=request_id, status=status
        )
    return body["data"]


def _error_for(response: httpx.Response, body: Any, request_id: str) -> MailiveryError:
    status = response.status_code
    envelope = body if isinstance(body, dict) else {}
    code = envelope.get("code") if isinstance(envelope.get("code"), str) else None
    message = envelope.get("message")
    if not isinstance(message, str) or not message:
        message = f"HTTP {status}" + (" (body is not JSON)" if body is None else "")
    message = message[:MAX_ERROR_MESSAGE]
    common: dict[str, Any] = {"request_id": request_id, "status": status, "code": code}
    if status == 403 and code == FEATURE_DISABLED_CODE:
        return FeatureDisabled(
            "Microsoft Graph onboarding is disabled for this Mailivery account: "
            "ask Mailivery to add it to the ms-graph beta allowlist",
            **common,
        )
    if status in (401, 403):
        return Unauthorized(message, **common)
    if status == 404:
        return NotFound(message, **common)
    if status == 409:
        return Conflict(message, **common)
    if status in (400, 422):
        return ValidationFailed(message, field_errors=_field_errors(envelope), **common)
    if status == 429:
        return RateLimited(message, retry_after=_retry_after(response), **common)
    if status >= 500:
        return ServerError(message, **common)
    return UnexpectedResponse(message, **common)


def _field_errors(envelope: dict[str, Any]) -> dict[str, list[str]]:
    errors = envelope.get("errors")
    if not isinstance(errors, dict):
        return {}
    return {
        str(field): [str(m) for m in (msgs if isinstance(msgs, list) else [msgs])]
        for field, msgs in errors.items()
    }


def _retry_after(response: httpx.Response) -> float | None:
    value = response.headers.get("Retry-After")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _json_or_none(response: httpx.Response) -> Any:
    if not response.content.strip():
        return None
    try:
        return response.json()
    except ValueError:
        return None
