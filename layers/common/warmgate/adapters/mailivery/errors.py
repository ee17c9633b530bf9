"""Typed Mailivery errors. Every one carries the X-Request-ID of the call that produced it."""

from __future__ import annotations

from typing import NotRequired, TypedDict, Unpack


class CallContext(TypedDict):
    """What every error says of the call it came from."""

    request_id: str  # the X-Request-ID sent
    status: NotRequired[int | None]  # the HTTP status, if an answer came
    code: NotRequired[str | None]  # Mailivery's error code, if it gave one


class MailiveryError(Exception):
    """Base of every error the Mailivery client raises."""

    def __init__(self, message: str, **call: Unpack[CallContext]) -> None:
        super().__init__(message)
        self.message = message
        self.request_id = call["request_id"]
        self.status = call.get("status")
        self.code = call.get("code")

    def __str__(self) -> str:
        status = f" HTTP {self.status}" if self.status is not None else ""
        code = f" {self.code}" if self.code else ""
        return f"{self.message} ({type(self).__name__}{status}{code}, request_id={self.request_id})"


class FeatureDisabled(MailiveryError):
    """403 MS_GRAPH_FEATURE_DISABLED: the account is not on Mailivery's ms-graph allowlist.

    A permanent configuration problem: never retried.
    """


class Unauthorized(MailiveryError):
    """401, or a 403 other than MS_GRAPH_FEATURE_DISABLED: the API key is wrong or revoked."""


class NotFound(MailiveryError):
    """404: the campaign (or path) does not exist."""


class Conflict(MailiveryError):
    """409: the campaign is not in a state that allows the call (e.g. already started)."""


class ValidationFailed(MailiveryError):
    """400/422 with either error shape; `field_errors` holds the `errors` object when present."""

    def __init__(
        self,
        message: str,
        *,
        field_errors: dict[str, list[str]] | None = None,
        **call: Unpack[CallContext],
    ) -> None:
        super().__init__(message, **call)
        self.field_errors = field_errors or {}


class RateLimited(MailiveryError):
    """429 RATE_LIMIT_EXCEEDED; `retry_after` in seconds (from Retry-After, or None)."""

    def __init__(
        self, message: str, *, retry_after: float | None, **call: Unpack[CallContext]
    ) -> None:
        call.setdefault("status", 429)
        super().__init__(message, **call)
        self.retry_after = retry_after


class ServerError(MailiveryError):
    """5xx from Mailivery (or a proxy in front of it)."""


class Timeout(MailiveryError):
    """No complete answer within the connect/read timeout. The call may or may not have run."""


class Unreachable(MailiveryError):
    """The connection could not be made (refused, DNS, TLS): the call did not reach Mailivery."""


class ConnectionLost(MailiveryError):
    """The connection broke once the request was on its way (reset, closed without an answer):
    like a Timeout, the call may or may not have run."""


class UnexpectedResponse(MailiveryError):
    """An answer we cannot interpret: HTML, empty body, unknown JSON, an invalid consent URL."""


# Worth another attempt later (by the caller's own retry policy, not silently for creates).
TRANSIENT_ERRORS: tuple[type[MailiveryError], ...] = (
    RateLimited,
    ServerError,
    Timeout,
    Unreachable,
    ConnectionLost,
)
