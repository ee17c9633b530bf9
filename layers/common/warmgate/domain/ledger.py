"""Campaigns warmgate handled without an expectation: the ledger an operator reads.

Keyed by campaign id (`campaign#<id>`), so a duplicate or re-ordered webhook for a campaign that
was already left pending or deleted finds its entry and causes no second call.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from warmgate.domain.mailboxes import iso, parse_iso


class LedgerState(StrEnum):
    LEFT_PENDING = "left_pending"  # unexpected, policy `leave`
    DELETING = "deleting"  # unexpected, policy `delete`: claimed, call under way
    DELETED = "deleted"  # deleted by us, or campaign.deleted seen
    UNEXPECTED_ACTIVE = "unexpected_active"  # warming without an expectation: never auto-deleted
    ADOPTED = "adopted"  # started/resumed later, for a request made after it was first seen


@dataclass(frozen=True, slots=True)
class CampaignLedgerEntry:
    campaign_id: str
    state: LedgerState
    email: str | None
    reason: str
    first_seen_at: str
    updated_at: str
    version: int = 0

    def is_claim_live(self, now: datetime, lease: timedelta) -> bool:
        return self.state is LedgerState.DELETING and parse_iso(self.updated_at) + lease > now

    def moved_to(self, state: LedgerState, *, now: datetime, reason: str) -> CampaignLedgerEntry:
        return CampaignLedgerEntry(
            campaign_id=self.campaign_id,
            state=state,
            email=self.email,
            reason=reason,
            first_seen_at=self.first_seen_at,
            updated_at=iso(now),
            version=self.version,
        )
