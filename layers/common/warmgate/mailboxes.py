"""The expected mailbox: one record per normalized email, and its state machine (architecture §4).

Pure domain: no I/O. The repository stores these records; services decide transitions.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

HISTORY_LIMIT = 20  # transitions kept per record: enough to audit, bounded to stay far under 400 KB


class MailboxState(StrEnum):
    CONSENT_REQUESTED = "consent_requested"
    VERIFYING = "verifying"
    WARMING = "warming"
    START_FAILED = "start_failed"
    REJECTED = "rejected"
    REQUEST_FAILED = "request_failed"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"
    DELETED = "deleted"
    CONNECTION_PROBLEM = "connection_problem"


# An onboarding that ended: the mailbox may be requested again, keeping its history.
ENDED_STATES = frozenset(
    {
        MailboxState.EXPIRED,
        MailboxState.REJECTED,
        MailboxState.REQUEST_FAILED,
        MailboxState.WITHDRAWN,
        MailboxState.DELETED,
    }
)


def utc_now() -> datetime:
    return datetime.now(UTC)


def iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat(timespec="seconds").replace("+00:00", "Z")


def parse_iso(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


@dataclass(frozen=True, slots=True)
class Transition:
    at: str
    from_state: MailboxState | None
    to_state: MailboxState
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at,
            "from": self.from_state.value if self.from_state else None,
            "to": self.to_state.value,
            "reason": self.reason,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Transition:
        return cls(
            at=data["at"],
            from_state=MailboxState(data["from"]) if data.get("from") else None,
            to_state=MailboxState(data["to"]),
            reason=data.get("reason", ""),
        )


@dataclass(frozen=True, slots=True)
class LastError:
    code: str
    message: str
    at: str
    request_id: str | None = None


@dataclass(frozen=True, slots=True)
class ExpectedMailbox:
    """A mailbox some user of the integrator asked to connect, and where its onboarding stands."""

    email: str  # normalized: the table's key
    state: MailboxState
    first_name: str
    requested_by: str
    requested_at: str
    expires_at: str
    updated_at: str
    version: int = 0  # optimistic lock: every write is conditional on the version it read
    last_name: str | None = None
    tags: tuple[str, ...] = ()
    email_per_day: int | None = None
    response_rate: int | None = None
    requested_by_principal: str | None = None
    request_fingerprint: str | None = None
    consent_url: str | None = None
    campaign_id: str | None = None
    last_error: LastError | None = None
    start_attempts: int = 0  # consecutive start/resume refusals (connection check failed)
    history: tuple[Transition, ...] = field(default=())

    def is_expired(self, now: datetime) -> bool:
        return parse_iso(self.expires_at) <= now

    def has_live_link(self, now: datetime) -> bool:
        """A consent link was issued and may still be used."""
        return (
            self.state is MailboxState.CONSENT_REQUESTED
            and self.consent_url is not None
            and not self.is_expired(now)
        )

    def is_in_flight(self, now: datetime, abandon_after: timedelta) -> bool:
        """Written before the vendor call, URL not stored yet, and not abandoned by a crash."""
        return (
            self.state is MailboxState.CONSENT_REQUESTED
            and self.consent_url is None
            and parse_iso(self.updated_at) + abandon_after > now
            and not self.is_expired(now)
        )

    def can_be_requested_again(self, now: datetime, abandon_after: timedelta) -> bool:
        if self.state in ENDED_STATES:
            return True
        if self.state is MailboxState.CONSENT_REQUESTED:
            return self.is_expired(now) or (
                self.consent_url is None and not self.is_in_flight(now, abandon_after)
            )
        return False

    def transition(
        self,
        to_state: MailboxState,
        *,
        now: datetime,
        reason: str,
        **changes: Any,
    ) -> ExpectedMailbox:
        """A copy in `to_state`, with the transition appended to the bounded history."""
        entry = Transition(at=iso(now), from_state=self.state, to_state=to_state, reason=reason)
        return replace(
            self,
            state=to_state,
            updated_at=iso(now),
            history=(*self.history, entry)[-HISTORY_LIMIT:],
            **changes,
        )
