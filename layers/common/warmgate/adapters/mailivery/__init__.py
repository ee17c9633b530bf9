"""The Mailivery API: client, typed errors, response models and the configurable contract."""

from __future__ import annotations

from warmgate.adapters.mailivery.client import (
    ConsentRequest,
    MailiveryClient,
    RetryPolicy,
)
from warmgate.adapters.mailivery.contract import VendorContract
from warmgate.adapters.mailivery.errors import (
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
from warmgate.domain.campaign_ids import InvalidCampaignId
from warmgate.domain.campaigns import Campaign, CampaignStatus, ConsentLink

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
]
