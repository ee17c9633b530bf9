"""The integrator's requests: what they carry, the record they write, and their refusals.

Used by `warmgate.services.onboarding` (which re-exports the API's names) and validated at the
HTTP edge: the bodies and queries are pydantic models, the refusals exceptions that
`warmgate.api.http` maps to answers.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Annotated, Any

from pydantic import BaseModel, ConfigDict, Field, StrictInt, StringConstraints, field_validator

from warmgate.domain.campaigns import Campaign, CampaignStatus
from warmgate.domain.emails import normalize_email
from warmgate.domain.mailboxes import (
    ExpectedMailbox,
    MailboxEvent,
    MailboxState,
    RequestKind,
    Transition,
    iso,
    parse_iso,
)

UNKNOWN_OUTCOME_RETRY_AFTER = 30  # seconds: the worker re-reads an unknown outcome within ~15-60 s

Name = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
RequestedBy = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=200)]
DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE = 50, 100
# No commas or spaces: tags may travel to Mailivery as one "a,b" string (contract §2).
Tag = Annotated[
    str, StringConstraints(strip_whitespace=True, pattern=r"^[A-Za-z0-9_.:@/+-]{1,64}$")
]


class MailboxRequest(BaseModel):
    """Body of POST /mailboxes."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    email: str = Field(max_length=320)
    first_name: Name
    last_name: Name | None = None
    requested_by: RequestedBy
    tags: tuple[Tag, ...] = Field(default=(), max_length=20)
    email_per_day: StrictInt | None = Field(default=None, ge=1, le=500)
    response_rate: StrictInt | None = Field(default=None, ge=0, le=100)

    @field_validator("email")
    @classmethod
    def _normalize(cls, value: str) -> str:
        return normalize_email(value)  # InvalidEmail is a ValueError: pydantic names the field

    def fingerprint(self) -> str:
        """Identifies "the same request" for replays."""
        canonical = json.dumps(self.model_dump(mode="json"), sort_keys=True)
        return hashlib.sha256(canonical.encode()).hexdigest()


class MailboxListQuery(BaseModel):
    """Query of GET /mailboxes. API Gateway joins a repeated parameter with commas, so
    `state=a&state=b` and `state=a,b` are the same filter."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    state: tuple[MailboxState, ...] = Field(default=(), max_length=len(MailboxState))
    requested_by: RequestedBy | None = None
    limit: int = Field(default=DEFAULT_PAGE_SIZE, ge=1, le=MAX_PAGE_SIZE)
    cursor: str | None = None

    @field_validator("state", mode="before")
    @classmethod
    def _split_states(cls, value: object) -> object:
        if isinstance(value, str):
            return tuple(part.strip() for part in value.split(","))
        return value


@dataclass(frozen=True, slots=True)
class MailboxListing:
    mailboxes: list[ExpectedMailbox]
    next_cursor: str | None  # None: the last page


class MailboxNotFound(Exception):
    pass


class NotOwner(Exception):
    """The caller's IAM principal did not make this mailbox's request and is not an admin."""


class OnboardingConflict(Exception):
    """The request contradicts the mailbox's current record; `code` says how."""

    def __init__(self, code: str, message: str, *, retry_after: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.retry_after = retry_after


# What a new request starts from: no failures, no claim.
FRESH_REQUEST: dict[str, Any] = {
    "last_error": None,
    "start_attempts": 0,
    "parked": False,
    "outcome_unknown": False,
}


def describe_state(record: ExpectedMailbox, now: datetime) -> str:
    """The state as a refusal names it."""
    if record.state is MailboxState.CONSENT_REQUESTED and record.is_expired(now):
        return "consent_requested (expired)"
    if record.state is MailboxState.START_FAILED and not record.parked:
        return "start_failed (being retried)"
    return record.state.value


def claim_held(record: ExpectedMailbox, now: datetime, lease: timedelta) -> OnboardingConflict:
    """A worker holds this mailbox's claim (a call under way, or its outcome unknown)."""
    if record.claim_is_live(now, lease) and not record.outcome_unknown:
        left = parse_iso(record.updated_at) + lease - now
        retry_after = max(1, int(left.total_seconds()) + 1)
    else:
        retry_after = UNKNOWN_OUTCOME_RETRY_AFTER
    return OnboardingConflict(
        "CLAIM_HELD",
        "a start/resume for this mailbox is under way or its outcome is being settled; retry later",
        retry_after=retry_after,
    )


def concurrent_update() -> OnboardingConflict:
    return OnboardingConflict(
        "CONCURRENT_UPDATE",
        "the mailbox record is being changed concurrently; retry",
        retry_after=1,
    )


def new_expectation(
    existing: ExpectedMailbox | None,
    request: MailboxRequest,
    principal: str | None,
    fingerprint: str,
    now: datetime,
    bound_to: str | None,
    ttl: timedelta,
) -> ExpectedMailbox:
    """The record a request writes (`consent_requested`, no link yet): a new one, or the
    known mailbox's moved on with its history kept; `bound_to`: the campaign a reconnect
    names."""
    fields = {
        "first_name": request.first_name,
        "last_name": request.last_name,
        "requested_by": request.requested_by,
        "requested_by_principal": principal,
        "request_fingerprint": fingerprint,
        "tags": request.tags,
        "email_per_day": request.email_per_day,
        "response_rate": request.response_rate,
        "requested_at": iso(now),
        "expires_at": iso(now + ttl),
        "consent_url": None,
        "campaign_id": bound_to,
        "request_kind": RequestKind.RECONNECT if bound_to else RequestKind.ONBOARD,
        **FRESH_REQUEST,
    }
    if existing is not None:  # a new onboarding of a known mailbox keeps its history
        return existing.transition(
            MailboxState.CONSENT_REQUESTED,
            event=MailboxEvent.REQUESTED,
            now=now,
            reason=f"reconnect of campaign {bound_to} requested"
            if bound_to
            else "consent requested again",
            **fields,
        )
    return ExpectedMailbox(
        email=request.email,
        state=MailboxState.CONSENT_REQUESTED,
        updated_at=iso(now),
        history=(Transition(iso(now), None, MailboxState.CONSENT_REQUESTED, "consent requested"),),
        **fields,
    )


def require_resumable(campaign: Campaign | None) -> None:
    """Refuse a resume the campaign cannot take (gone, warming, disconnected, unknown)."""
    if campaign is None:
        raise OnboardingConflict(
            "CAMPAIGN_GONE",
            "Mailivery no longer has this mailbox's campaign: request it again (POST /mailboxes)",
        )
    match campaign.status:
        case CampaignStatus.PAUSED | CampaignStatus.PENDING:
            return
        case CampaignStatus.ACTIVE:
            raise OnboardingConflict("ALREADY_WARMING", "the campaign is warming already")
        case CampaignStatus.CONNECTION_PROBLEM:
            raise OnboardingConflict(
                "RECONNECT_REQUIRED",
                "Mailivery reports a connection problem: reconnect with POST /mailboxes",
            )
    raise OnboardingConflict(
        "NOT_PAUSED", f"campaign status {campaign.raw_status!r}: nothing to resume"
    )
