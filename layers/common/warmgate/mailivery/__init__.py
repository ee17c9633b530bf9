"""The Mailivery API: client, typed errors, response models and the configurable contract."""

from __future__ import annotations

from collections.abc import Callable

import httpx

from warmgate.campaign_ids import InvalidCampaignId
from warmgate.mailivery.client import (
    ConsentRequest,
    MailiveryClient,
    RetryPolicy,
    call_deadline_seconds,
)
from warmgate.mailivery.contract import VendorContract
from warmgate.mailivery.errors import (
    TRANSIENT_ERRORS,
    Conflict,
    ConnectionLost,
    FeatureDisabled,
    MailiveryError,
    NotFound,
    RateLimited,
    ServerError,
    Timeout,
    Unauthorized,
    UnexpectedResponse,
    Unreachable,
    ValidationFailed,
)
from warmgate.mailivery.models import Campaign, CampaignStatus, ConsentLink
from warmgate.rate_budget import DEFAULT_MAX_WAIT
from warmgate.secrets import fetch_secret
from warmgate.settings import Settings, SettingsError

__all__ = [
    "TRANSIENT_ERRORS",
    "Campaign",
    "CampaignStatus",
    "Conflict",
    "ConnectionLost",
    "ConsentLink",
    "ConsentRequest",
    "FeatureDisabled",
    "InvalidCampaignId",
    "MailiveryClient",
    "MailiveryError",
    "NotFound",
    "RateLimited",
    "RetryPolicy",
    "ServerError",
    "Timeout",
    "Unauthorized",
    "UnexpectedResponse",
    "Unreachable",
    "ValidationFailed",
    "VendorContract",
    "client_from_settings",
    "worst_case_call_seconds",
]


def api_key_provider(settings: Settings) -> Callable[[], str]:
    """Where the API key comes from: the secret (cached, warmgate.secrets), or a local plain key."""
    secret = settings.mailivery_api_key_secret
    if secret:
        return lambda: fetch_secret(secret, max_age=settings.secret_max_age_seconds)
    plain = settings.mailivery_api_key  # Settings only admits it on the local stage
    if plain:
        return lambda: plain
    raise SettingsError("missing environment variable: MAILIVERY_API_KEY_SECRET")


def client_from_settings(
    settings: Settings, throttle: Callable[[], None] | None = None
) -> MailiveryClient:
    """The client every function uses; `throttle` is the shared request budget's acquire,
    which waits at most rate_budget.DEFAULT_MAX_WAIT for a token."""
    try:
        contract = VendorContract.from_overrides(settings.mailivery_contract_overrides)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    return MailiveryClient(
        base_url=settings.mailivery_base_url,
        api_key=api_key_provider(settings),
        contract=contract,
        consent_hosts=settings.mailivery_consent_hosts,
        timeout=_timeout(settings),
        retry=_retry_policy(settings),
        throttle=throttle,
        throttle_max_wait=DEFAULT_MAX_WAIT if throttle is not None else 0.0,
    )


def worst_case_call_seconds(settings: Settings, *, retried: bool = True) -> float:
    """The deadline of one call of `client_from_settings(settings, throttle=budget.acquire)`:
    a read (`retried`) or a start/resume/delete/create (one attempt). The client enforces it."""
    return call_deadline_seconds(
        _retry_policy(settings), _timeout(settings), DEFAULT_MAX_WAIT, retried=retried
    )


def _timeout(settings: Settings) -> httpx.Timeout:
    return httpx.Timeout(
        settings.mailivery_read_timeout_seconds,
        connect=settings.mailivery_connect_timeout_seconds,
    )


def _retry_policy(settings: Settings) -> RetryPolicy:
    return RetryPolicy(attempts=settings.mailivery_read_retries + 1)
