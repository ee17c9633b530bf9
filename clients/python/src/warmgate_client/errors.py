"""Everything the client raises derives from WarmgateError.

An answer of the API that is not a success is an ApiError carrying the API's `code` (stable, for
programs: see openapi.yaml), its `message`, the HTTP `status` and `retry_after` (seconds, from the
`Retry-After` header) when a retry can succeed. Its subclass says which kind of refusal it is.
"""

from __future__ import annotations


class WarmgateError(Exception):
    """Base of every error of this client."""


class MissingCredentials(WarmgateError):
    """No AWS credentials in the default chain (environment, profile, SSO, instance role …)."""


class TransportError(WarmgateError):
    """The API could not be reached, or did not answer in time; nothing is known of the outcome."""


class UnexpectedAnswer(WarmgateError):
    """An answer outside the API's contract (not JSON, a documented field missing …)."""


class ApiError(WarmgateError):
    """The API refused the request or failed; `code` says why."""

    def __init__(self, status: int, code: str, message: str, retry_after: int | None) -> None:
        super().__init__(f"{status} {code}: {message}")
        self.status = status
        self.code = code
        self.message = message
        self.retry_after = retry_after


class InvalidRequest(ApiError):
    """400, 413, 422: the request itself is wrong; `message` names the field."""


class AccessDenied(ApiError):
    """403 from API Gateway: the signature is invalid or the caller may not invoke the API."""


class NotFound(ApiError):
    """404: no record for this mailbox."""


class Conflict(ApiError):
    """409: the request contradicts the mailbox's record (REQUEST_MISMATCH, NOT_PAUSED …)."""


class Throttled(ApiError):
    """429 from API Gateway: too many requests to the API."""


class ServiceUnavailable(ApiError):
    """5xx: warmgate or Mailivery failed (MAILIVERY_TIMEOUT, MAILIVERY_RATE_LIMITED …)."""


# API Gateway's own answers carry only a message; they get these codes.
GATEWAY_CODES = {403: "ACCESS_DENIED", 404: "NOT_FOUND", 429: "THROTTLED"}


def error_for(status: int, code: str | None, message: str, retry_after: int | None) -> ApiError:
    """The ApiError subclass for an answer's status."""
    kind: type[ApiError]
    if status in (400, 413, 422):
        kind = InvalidRequest
    elif status == 403:
        kind = AccessDenied
    elif status == 404:
        kind = NotFound
    elif status == 409:
        kind = Conflict
    elif status == 429:
        kind = Throttled
    elif status >= 500:
        kind = ServiceUnavailable
    else:
        kind = ApiError
    return kind(status, code or GATEWAY_CODES.get(status, f"HTTP_{status}"), message, retry_after)
