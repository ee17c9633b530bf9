"""Campaigns, pending consents and per-mailbox connection switches: the vendor's state and the
rules a campaign's status follows."""

from __future__ import annotations

import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal

from devstack.sandbox.errors import ApiError

FIRST_CAMPAIGN_ID: Final = 4711
# [guess] The vendor's defaults when the create call omits them are not documented.
DEFAULT_EMAIL_PER_DAY: Final = 20
DEFAULT_RESPONSE_RATE: Final = 30
EMAIL_PER_DAY_RANGE: Final = (1, 200)

CampaignStatus = Literal["pending", "active", "paused", "connection_problem"]
StatusField = Literal["status", "status_code"]
ExistingMailbox = Literal["allow", "reject", "reuse"]
ConsentOutcome = Literal["created", "repeated", "reconnected"]

# Free consumer Microsoft domains get smtp_type "outlook" [doc]; the national variants
# (outlook.de, hotmail.co.uk, live.fr, ...) are the same service.
FREE_MICROSOFT_DOMAIN_RE: Final = re.compile(
    r"^(?:msn\.com|(?:outlook|hotmail|live)\.(?:com|[a-z]{2}|co\.[a-z]{2}|com\.[a-z]{2}))$"
)


def utc_now_iso() -> str:
    """Timestamps the way a Laravel API serialises them: `2024-05-01T12:00:00.000000Z`."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalize_email(email: str) -> str:
    return email.strip().lower()


def smtp_type_for(email: str) -> str:
    domain = normalize_email(email).rpartition("@")[2]
    return "outlook" if FREE_MICROSOFT_DOMAIN_RE.match(domain) else "office 365"


@dataclass
class Campaign:
    id: int
    email: str  # as typed (trimmed), never normalised: webhooks must show what the vendor shows
    first_name: str
    last_name: str | None
    status: CampaignStatus
    tags: list[str]
    meta: str | None
    email_per_day: int
    response_rate: int
    warmup_audience_type: str | None
    created_at: str

    def to_api(self, status_field: StatusField = "status") -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            status_field: self.status,
            "imap_type": "ms-graph",
            "smtp_type": smtp_type_for(self.email),
            "tags": list(self.tags),
            "email_per_day": self.email_per_day,
            "response_rate": self.response_rate,
            "warmup_audience_type": self.warmup_audience_type,
            "emails_sent_today": 0,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class ConsentRequest:
    """The validated body of `POST /campaigns/ms-graph`."""

    email: str
    first_name: str
    last_name: str | None
    tags: list[str]
    meta: str | None
    email_per_day: int
    response_rate: int
    warmup_audience_type: str | None


@dataclass
class PendingConsent:
    state: str
    request: ConsentRequest
    url: str
    requested_at: float  # monotonic, for the optional consent lifetime
    campaign_id: int | None = None


class CampaignStore:
    """Campaigns, pending consents and per-mailbox connection switches, behind one lock.

    Methods return copies so callers can serialise them without holding the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._campaigns: dict[int, Campaign] = {}
        self._consents: dict[str, PendingConsent] = {}
        self._connection_ok: dict[str, bool] = {}
        self._refusals_left: dict[str, int] = {}  # refused this many more times, then ok
        self._next_id = FIRST_CAMPAIGN_ID

    def clear(self) -> None:
        with self._lock:
            self._campaigns.clear()
            self._consents.clear()
            self._connection_ok.clear()
            self._refusals_left.clear()
            self._next_id = FIRST_CAMPAIGN_ID

    def has_mailbox(self, email: str) -> bool:
        wanted = normalize_email(email)
        with self._lock:
            return any(normalize_email(c.email) == wanted for c in self._campaigns.values())

    def add_consent(self, request: ConsentRequest, url_for_state: Callable[[str], str]) -> str:
        state = secrets.token_urlsafe(24)
        url = url_for_state(state)
        with self._lock:
            self._consents[state] = PendingConsent(state, request, url, time.monotonic())
        return url

    def consents(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"state": c.state, "url": c.url, "campaign_id": c.campaign_id, **asdict(c.request)}
                for c in self._consents.values()
            ]

    def complete_consent(
        self,
        state: str,
        signed_in_email: str | None,
        ttl_s: float | None,
        existing_mailbox: ExistingMailbox = "allow",
    ) -> tuple[Campaign, ConsentOutcome]:
        """Returns (campaign, outcome). A repeated consent returns the campaign it made.

        With `existing_mailbox="reuse"`, a consent for a mailbox that already has a campaign is
        a reconnect: the campaign is reused, its connection restored, and a connection_problem
        status becomes paused (warm-up waits for a resume) [guess].
        """
        with self._lock:
            consent = self._consents.get(state)
            if consent is None:
                raise ApiError(404, "CONSENT_NOT_FOUND", "No pending consent for this state.")
            if consent.campaign_id is not None:
                existing = self._campaigns.get(consent.campaign_id)
                if existing is None:
                    raise ApiError(
                        409, "CONSENT_ALREADY_USED", "The campaign this consent made was deleted."
                    )
                return replace(existing), "repeated"
            if ttl_s is not None and time.monotonic() - consent.requested_at > ttl_s:
                raise ApiError(410, "CONSENT_EXPIRED", "The consent link has expired.")
            req = consent.request
            email = (signed_in_email or req.email).strip()
            reused = self._newest_for(email) if existing_mailbox == "reuse" else None
            if reused is not None:
                self._connection_ok[normalize_email(email)] = True
                if reused.status == "connection_problem":
                    reused.status = "paused"
                consent.campaign_id = reused.id
                return replace(reused), "reconnected"
            campaign = Campaign(
                id=self._take_id(),
                email=email,
                first_name=req.first_name,
                last_name=req.last_name,
                status="pending",
                tags=list(req.tags),
                meta=req.meta,
                email_per_day=req.email_per_day,
                response_rate=req.response_rate,
                warmup_audience_type=req.warmup_audience_type,
                created_at=utc_now_iso(),
            )
            self._campaigns[campaign.id] = campaign
            consent.campaign_id = campaign.id
            return replace(campaign), "created"

    def seed(self, campaign: Campaign, explicit_id: bool) -> Campaign:
        with self._lock:
            if explicit_id:
                if campaign.id in self._campaigns:
                    raise ApiError(409, "CONFLICT", f"Campaign {campaign.id} already exists.")
                self._next_id = max(self._next_id, campaign.id + 1)
            else:
                campaign = replace(campaign, id=self._take_id())
            self._campaigns[campaign.id] = campaign
            return replace(campaign)

    def get(self, campaign_id: int) -> Campaign:
        with self._lock:
            return replace(self._get(campaign_id))

    def find_by_email(self, email: str) -> Campaign:
        with self._lock:
            campaign = self._newest_for(email)
        if campaign is None:
            raise ApiError(404, "NOT_FOUND", "Campaign not found.")
        return replace(campaign)

    def _newest_for(self, email: str) -> Campaign | None:
        # Sandbox choice: with duplicates (option existing_mailbox=allow) the newest wins.
        wanted = normalize_email(email)
        for campaign in sorted(self._campaigns.values(), key=lambda c: -c.id):
            if normalize_email(campaign.email) == wanted:
                return campaign
        return None

    def all(self, status: str | None = None) -> list[Campaign]:
        with self._lock:
            return [
                replace(c)
                for c in sorted(self._campaigns.values(), key=lambda c: c.id)
                if status is None or c.status == status
            ]

    def start(self, campaign_id: int) -> Campaign:
        with self._lock:
            campaign = self._get(campaign_id)
            if campaign.status == "active":
                raise ApiError(409, "WARMUP_ALREADY_STARTED", "Warm-up is already running.")
            if campaign.status != "pending":
                raise ApiError(
                    409, "CAMPAIGN_NOT_PENDING", "Only a pending campaign can be started."
                )
            self._require_connection(campaign)
            campaign.status = "active"
            return replace(campaign)

    def resume(self, campaign_id: int) -> Campaign:
        with self._lock:
            campaign = self._get(campaign_id)
            if campaign.status not in ("paused", "connection_problem"):
                raise ApiError(409, "CAMPAIGN_NOT_PAUSED", "Only a paused campaign can be resumed.")
            self._require_connection(campaign)
            campaign.status = "active"
            return replace(campaign)

    def pause(self, campaign_id: int) -> Campaign:
        with self._lock:
            campaign = self._get(campaign_id)
            if campaign.status != "active":
                raise ApiError(409, "CAMPAIGN_NOT_ACTIVE", "Only an active campaign can be paused.")
            campaign.status = "paused"
            return replace(campaign)

    def set_status(self, campaign_id: int, status: CampaignStatus) -> Campaign:
        """Vendor-side transitions (no rules): what Mailivery does on its own."""
        with self._lock:
            campaign = self._get(campaign_id)
            campaign.status = status
            return replace(campaign)

    def delete(self, campaign_id: int) -> Campaign:
        with self._lock:
            campaign = self._get(campaign_id)
            del self._campaigns[campaign_id]
            return campaign

    def set_connection(self, email: str, ok: bool, refusals: int | None = None) -> None:
        """`refusals`: with ok=False, refuse only that many start/resume calls, then connect."""
        with self._lock:
            mailbox = normalize_email(email)
            self._connection_ok[mailbox] = ok
            self._refusals_left.pop(mailbox, None)
            if not ok and refusals is not None:
                self._refusals_left[mailbox] = refusals

    def connection_switches(self) -> dict[str, bool]:
        with self._lock:
            return dict(self._connection_ok)

    def limits(self, total: int) -> dict[str, Any]:
        with self._lock:
            campaigns = list(self._campaigns.values())
        used = sum(c.email_per_day for c in campaigns if c.status == "active")
        return {
            "email_per_day": {"total": total, "used": used, "available": max(total - used, 0)},
            "email_accounts": len(campaigns),
            "email_accounts_need_attention": sum(
                c.status == "connection_problem" for c in campaigns
            ),
            "emails_sent_today": 0,
        }

    def _take_id(self) -> int:
        campaign_id = self._next_id
        self._next_id += 1
        return campaign_id

    def _get(self, campaign_id: int) -> Campaign:
        campaign = self._campaigns.get(campaign_id)
        if campaign is None:
            raise ApiError(404, "NOT_FOUND", "Campaign not found.")
        return campaign

    def _require_connection(self, campaign: Campaign) -> None:
        # [doc] Mailivery tests the mailbox connection before warming; the failure shape is
        # [unknown], so this one (422 CONNECTION_FAILED) is the sandbox's.
        mailbox = normalize_email(campaign.email)
        if self._refusals_left.get(mailbox) == 0:  # refused as often as asked: connected now
            del self._refusals_left[mailbox]
            self._connection_ok[mailbox] = True
        if not self._connection_ok.get(mailbox, True):
            if mailbox in self._refusals_left:
                self._refusals_left[mailbox] -= 1
            raise ApiError(
                422,
                "CONNECTION_FAILED",
                "Could not connect to the mailbox. Warm-up was not started.",
            )
