"""What the Mailivery client returns: parsed, typed, tolerant of the documented variations."""

from __future__ import annotations

from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any
from urllib.parse import parse_qs, urlsplit

from warmgate.domain.emails import InvalidEmail, normalize_email


class CampaignStatus(StrEnum):
    PENDING = "pending"  # [doc]
    ACTIVE = "active"  # [peer]
    PAUSED = "paused"  # [guess]
    CONNECTION_PROBLEM = "connection_problem"  # [unknown string]: see Campaign.status
    UNKNOWN = "unknown"  # anything else: never guessed into one of the above

    @classmethod
    def parse(cls, raw: object) -> CampaignStatus:
        value = str(raw).strip().lower().replace(" ", "_").replace("-", "_") if raw else ""
        if value in cls._value2member_map_:
            return cls(value)
        if "connection" in value or "disconnect" in value:
            return cls.CONNECTION_PROBLEM
        return cls.UNKNOWN


MS_GRAPH_IMAP_TYPE = "ms-graph"


@dataclass(frozen=True, slots=True)
class Campaign:
    """A Mailivery campaign (one warmed mailbox) as re-read from the API."""

    campaign_id: str
    email: str | None  # normalized; None if Mailivery sent something implausible
    status: CampaignStatus
    raw_status: str | None
    imap_type: str | None
    smtp_type: str | None
    raw: dict[str, Any] = field(repr=False, compare=False)

    @property
    def is_ms_graph(self) -> bool:
        return (self.imap_type or "").strip().lower() == MS_GRAPH_IMAP_TYPE

    @classmethod
    def from_payload(cls, data: dict[str, Any], status_fields: tuple[str, ...]) -> Campaign:
        """Raises KeyError/ValueError when the id is missing; the client maps that."""
        campaign_id = data.get("id", data.get("campaign_id"))
        if campaign_id is None or isinstance(campaign_id, bool | float | dict | list):
            raise ValueError("campaign has no usable id")
        raw_status = next((data[f] for f in status_fields if data.get(f) is not None), None)
        try:
            email = normalize_email(data["email"]) if data.get("email") else None
        except InvalidEmail:
            email = None
        return cls(
            campaign_id=str(campaign_id).strip(),
            email=email,
            status=CampaignStatus.parse(raw_status),
            raw_status=None if raw_status is None else str(raw_status),
            imap_type=data.get("imap_type"),
            smtp_type=data.get("smtp_type"),
            raw=data,
        )


@dataclass(frozen=True, slots=True)
class CampaignPage:
    campaigns: list[Campaign]
    page: int
    last_page: int

    @property
    def has_more(self) -> bool:
        return self.page < self.last_page


@dataclass(frozen=True, slots=True)
class ConsentLink:
    """A validated Microsoft consent URL returned by POST /campaigns/ms-graph."""

    url: str
    client_id: str
    state: str


class InvalidConsentUrl(ValueError):
    """The consent URL is not one we would send a user to; the message says why."""


def validate_consent_url(url: object, allowed_hosts: tuple[str, ...]) -> ConsentLink:
    """Check the URL before a user is sent there: https, an allowed host, client_id and state.

    Rejects userinfo (`https://login.microsoftonline.com@evil.example/`), fragments and any
    port but 443, which a tampered or malformed vendor answer could smuggle in.
    """
    if not isinstance(url, str) or not url:
        raise InvalidConsentUrl("consent URL is missing")
    if len(url) > 4096:
        raise InvalidConsentUrl("consent URL is longer than 4096 characters")
    if any(ch.isspace() or ord(ch) < 0x20 for ch in url):
        raise InvalidConsentUrl("consent URL contains whitespace or control characters")
    parts = urlsplit(url)
    if parts.scheme != "https":
        raise InvalidConsentUrl("consent URL is not https")
    if parts.username is not None or parts.password is not None or "@" in parts.netloc:
        raise InvalidConsentUrl("consent URL carries userinfo")
    try:
        port = parts.port
    except ValueError:
        raise InvalidConsentUrl("consent URL has an invalid port") from None
    if port not in (None, 443):
        raise InvalidConsentUrl("consent URL has a non-standard port")
    host = (parts.hostname or "").lower()
    if host not in allowed_hosts:
        raise InvalidConsentUrl(f"consent URL host {host!r} is not one of {list(allowed_hosts)}")
    if parts.fragment or "#" in url:
        raise InvalidConsentUrl("consent URL has a fragment")
    query = parse_qs(parts.query, keep_blank_values=True)
    client_ids, states = query.get("client_id", []), query.get("state", [])
    if len(client_ids) != 1 or not client_ids[0].strip():
        raise InvalidConsentUrl("consent URL lacks exactly one client_id")
    if len(states) != 1 or not states[0].strip():
        raise InvalidConsentUrl("consent URL lacks exactly one state")
    return ConsentLink(url=url, client_id=client_ids[0], state=states[0])
