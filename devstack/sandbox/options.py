"""The switches for the contract's open questions (`POST /_sandbox/options`), and the checks
an update passes before any of it applies."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final, Literal

from devstack.sandbox.errors import bad_request
from devstack.sandbox.store import ExistingMailbox, StatusField
from devstack.sandbox.validation import choice, non_negative_int, reject_unknown
from devstack.sandbox.webhooks import ReconnectEvent

DAILY_EMAIL_TOTAL: Final = 1000

ValidationShape = Literal["errors", "code"]


@dataclass(frozen=True)
class SandboxOptions:
    """Switches for the contract's open questions; applied to /api/v1 only."""

    status_field: StatusField = "status"
    validation_error_shape: ValidationShape = "errors"
    # [unknown] consent-link lifetime: None = never expires.
    consent_ttl_seconds: float | None = None
    # [unknown] "mailbox already exists": allow = a second campaign, reject = 422 on create,
    # reuse = the consent reconnects the existing campaign [guess, the default].
    existing_mailbox: ExistingMailbox = "reuse"
    # [unknown] the webhook a reconnect sends: the reference says campaign.updated is sent
    # "also after a Microsoft reconnect"; warmgate must work with either.
    reconnect_event: ReconnectEvent = "campaign.updated"
    # [unknown] whether 429 carries Retry-After / X-RateLimit-*; off tests the jitter fallback.
    rate_limit_headers: bool = True
    daily_email_total: int = DAILY_EMAIL_TOTAL


# Options that are one of a Literal's values.
_CHOICES: Final[Mapping[str, Any]] = {
    "status_field": StatusField,
    "validation_error_shape": ValidationShape,
    "existing_mailbox": ExistingMailbox,
    "reconnect_event": ReconnectEvent,
}


@dataclass(frozen=True)
class OptionsUpdate:
    """A checked `POST /_sandbox/options` body: SandboxOptions fields, and the two settings
    that live in the rate limiter and the webhook dispatcher."""

    changes: dict[str, Any] = field(default_factory=dict)
    rate_limit_per_minute: int | None = None
    sets_webhook_url: bool = False
    webhook_url: str | None = None


def options_update(body: Mapping[str, Any]) -> OptionsUpdate:
    """Checks the whole body first, so a bad one changes nothing."""
    reject_unknown(
        body,
        {*SandboxOptions.__dataclass_fields__, "webhook_url", "rate_limit_per_minute"},
        "options",
    )
    changes = {
        name: choice(body, name, literal) for name, literal in _CHOICES.items() if name in body
    }
    if "rate_limit_headers" in body:
        if not isinstance(body["rate_limit_headers"], bool):
            raise bad_request("rate_limit_headers must be a boolean.")
        changes["rate_limit_headers"] = body["rate_limit_headers"]
    if "consent_ttl_seconds" in body:
        ttl = body["consent_ttl_seconds"]
        if ttl is not None and (not isinstance(ttl, int | float) or isinstance(ttl, bool)):
            raise bad_request("consent_ttl_seconds must be a number or null.")
        changes["consent_ttl_seconds"] = ttl
    if "daily_email_total" in body:
        changes["daily_email_total"] = non_negative_int(body, "daily_email_total")
    rate_limit: int | None = None
    if "rate_limit_per_minute" in body:
        rate_limit = non_negative_int(body, "rate_limit_per_minute")
        if rate_limit < 1:
            raise bad_request("rate_limit_per_minute must be at least 1.")
    webhook_url = body.get("webhook_url")
    if webhook_url is not None and not (
        isinstance(webhook_url, str) and webhook_url.startswith(("http://", "https://"))
    ):
        raise bad_request("webhook_url must be an http(s) URL or null.")
    return OptionsUpdate(changes, rate_limit, "webhook_url" in body, webhook_url)
