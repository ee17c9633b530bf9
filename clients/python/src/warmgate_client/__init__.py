"""Signed Python client of the warmgate onboarding API (see openapi.yaml in the repository)."""

from warmgate_client.client import WarmgateClient
from warmgate_client.errors import (
    AccessDenied,
    ApiError,
    Conflict,
    InvalidRequest,
    MissingCredentials,
    NotFound,
    ServiceUnavailable,
    Throttled,
    TransportError,
    UnexpectedAnswer,
    WarmgateError,
)
from warmgate_client.models import (
    MAILBOX_STATES,
    ConsentLink,
    LastError,
    MailboxListing,
    MailboxRecord,
    MailboxState,
    MailboxSummary,
    Transition,
)

__all__ = [
    "MAILBOX_STATES",
    "AccessDenied",
    "ApiError",
    "Conflict",
    "ConsentLink",
    "InvalidRequest",
    "LastError",
    "MailboxListing",
    "MailboxRecord",
    "MailboxState",
    "MailboxSummary",
    "MissingCredentials",
    "NotFound",
    "ServiceUnavailable",
    "Throttled",
    "Transition",
    "TransportError",
    "UnexpectedAnswer",
    "WarmgateClient",
    "WarmgateError",
]
