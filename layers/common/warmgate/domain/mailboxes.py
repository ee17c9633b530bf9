"""The expected mailbox: one record per normalized email, and its state machine.

Pure domain: no I/O. The repository stores these records; services decide transitions, and
`ExpectedMailbox.transition` refuses any move that is not a row of `TRANSITIONS`.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from typing import Any

HISTORY_LIMIT = 20  # transitions kept per record: enough to audit, bounded to stay far under 400 KB
# A start/resume whose answer never came (timeout, 5xx, a dropped connection) may still be
# running at Mailivery and land a few seconds later: a re-read made sooner can show the campaign
# still pending. Deliveries within this time after the outcome was recorded wait (busy); the
# worker's own retry comes later (UNKNOWN_OUTCOME_RETRY_BASE_SECONDS in
# warmgate.services.start_attempts, tested).
UNKNOWN_OUTCOME_SETTLE = timedelta(seconds=10)


class MailboxState(StrEnum):
    CONSENT_REQUESTED = "consent_requested"
    RESUME_REQUESTED = "resume_requested"
    VERIFYING = "verifying"
    WARMING = "warming"
    PAUSED = "paused"
    CONNECTION_PROBLEM = "connection_problem"
    START_FAILED = "start_failed"
    REJECTED = "rejected"
    REQUEST_FAILED = "request_failed"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"
    DELETED = "deleted"


STATE_DESCRIPTIONS: dict[MailboxState, str] = {
    MailboxState.CONSENT_REQUESTED: "a consent link was issued (a request); a reconnect's is bound "
    "to the mailbox's existing campaign",
    MailboxState.RESUME_REQUESTED: "the integrator asked to resume the paused campaign "
    "(a request); queued for the worker",
    MailboxState.VERIFYING: "a worker holds the request's claim: its start/resume call is under "
    "way, or its outcome is unknown and the next attempt re-reads the campaign first",
    MailboxState.WARMING: "warm-up started or resumed; the request is consumed",
    MailboxState.PAUSED: "Mailivery reports the campaign paused; nothing is done without a new "
    "request (POST /mailboxes/{email}/resume, or a reconnect)",
    MailboxState.CONNECTION_PROBLEM: "Mailivery reports a connection problem; reconnect with "
    "POST /mailboxes",
    MailboxState.START_FAILED: "start/resume refused or inconclusive: retried with a growing "
    "delay, then parked (parked: true) until a new request",
    MailboxState.REJECTED: "the consent came after the expectation ended: the campaign was "
    "handled as unexpected",
    MailboxState.REQUEST_FAILED: "Mailivery refused or failed the consent-link request",
    MailboxState.EXPIRED: "no consent before the expectation's expiry",
    MailboxState.WITHDRAWN: "withdrawn by the integrator (DELETE)",
    MailboxState.DELETED: "the campaign was deleted at Mailivery",
}


class RequestKind(StrEnum):
    """What the integrator asked for: each one backs at most one start or resume."""

    ONBOARD = "onboard"  # POST /mailboxes for a new (or ended) mailbox: start, or resume
    RECONNECT = "reconnect"  # POST /mailboxes for a warming/paused/disconnected/parked mailbox
    RESUME = "resume"  # POST /mailboxes/{email}/resume: resume without a new consent


class MailboxEvent(StrEnum):
    """Why a record moves: the middle column of TRANSITIONS."""

    REQUESTED = "requested"  # consent link requested (new, again, or a reconnect)
    REQUEST_FAILED = "request_failed"  # Mailivery refused or failed the consent-link request
    RESUME_REQUESTED = "resume_requested"
    CLAIMED = "claimed"  # a worker claims the request right before its one vendor call
    ACCEPTED = "accepted"  # Mailivery accepted the start/resume: the request is consumed
    FOUND_ACTIVE = "found_active"  # the re-read shows the campaign warming already
    REFUSED = "refused"  # start/resume refused, conflicting or inconclusive: retry or park
    OUTCOME_UNKNOWN = "outcome_unknown"  # timeout/5xx/unreadable answer: the claim is kept
    PAUSE_SEEN = "pause_seen"  # Mailivery reports the campaign paused
    CONNECTION_PROBLEM_SEEN = "connection_problem_seen"
    UNEXPECTED = "unexpected"  # the consent came after the expectation ended
    CAMPAIGN_DELETED = "campaign_deleted"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"


_S = MailboxState
_ENDED = (_S.REJECTED, _S.REQUEST_FAILED, _S.EXPIRED, _S.WITHDRAWN, _S.DELETED)
# An onboarding that ended: the mailbox may be requested again, keeping its history.
ENDED_STATES = frozenset(_ENDED)
_WARMED = (_S.WARMING, _S.PAUSED, _S.CONNECTION_PROBLEM, _S.START_FAILED)  # a campaign tracked
_REQUEST_HOLDERS = (_S.CONSENT_REQUESTED, _S.RESUME_REQUESTED, _S.START_FAILED, _S.VERIFYING)

# The state machine, one row per event: (the states it may move a record from, where to).
# None as a from-state is a new record. Nothing else may move a record: `transition` checks.
MOVES: dict[MailboxEvent, tuple[tuple[MailboxState | None, ...], MailboxState]] = {
    MailboxEvent.REQUESTED: ((None, _S.CONSENT_REQUESTED, *_WARMED, *_ENDED), _S.CONSENT_REQUESTED),
    MailboxEvent.REQUEST_FAILED: ((_S.CONSENT_REQUESTED,), _S.REQUEST_FAILED),
    MailboxEvent.RESUME_REQUESTED: (_WARMED, _S.RESUME_REQUESTED),
    MailboxEvent.CLAIMED: (_REQUEST_HOLDERS, _S.VERIFYING),
    MailboxEvent.ACCEPTED: ((_S.VERIFYING,), _S.WARMING),
    MailboxEvent.FOUND_ACTIVE: ((*_REQUEST_HOLDERS, _S.PAUSED, _S.CONNECTION_PROBLEM), _S.WARMING),
    MailboxEvent.REFUSED: ((_S.VERIFYING,), _S.START_FAILED),
    MailboxEvent.OUTCOME_UNKNOWN: ((_S.VERIFYING,), _S.VERIFYING),
    MailboxEvent.PAUSE_SEEN: ((_S.WARMING, _S.CONNECTION_PROBLEM, _S.START_FAILED), _S.PAUSED),
    MailboxEvent.CONNECTION_PROBLEM_SEEN: (
        (_S.WARMING, _S.PAUSED, _S.START_FAILED),
        _S.CONNECTION_PROBLEM,
    ),
    MailboxEvent.UNEXPECTED: ((_S.CONSENT_REQUESTED,), _S.REJECTED),
    MailboxEvent.CAMPAIGN_DELETED: ((*_REQUEST_HOLDERS, *_WARMED), _S.DELETED),
    MailboxEvent.EXPIRED: ((_S.CONSENT_REQUESTED,), _S.EXPIRED),
    MailboxEvent.WITHDRAWN: (
        (_S.CONSENT_REQUESTED, _S.RESUME_REQUESTED, _S.START_FAILED),
        _S.WITHDRAWN,
    ),
}
# The same as (from-state, event, to-state) rows.
TRANSITIONS: frozenset[tuple[MailboxState | None, MailboxEvent, MailboxState]] = frozenset(
    (source, event, target) for event, (sources, target) in MOVES.items() for source in sources
)


class IllegalTransition(ValueError):
    """A move that is not a row of TRANSITIONS: a bug in the caller, never written."""


def next_states(state: MailboxState) -> list[MailboxState]:
    """Where a record in `state` may go next, in the enum's order."""
    targets = {to for frm, _, to in TRANSITIONS if frm is state}
    return [s for s in MailboxState if s in targets]


def state_diagram() -> str:
    """TRANSITIONS as a mermaid `stateDiagram-v2` (the README's diagram is checked against it)."""
    lines = ["stateDiagram-v2"]
    edges: dict[tuple[str, str], list[str]] = {}
    for source, event, target in TRANSITIONS:
        key = (source.value if source else "[*]", target.value)
        edges.setdefault(key, []).append(event.value)
    order = {state.value: n for n, state in enumerate(MailboxState)} | {"[*]": -1}
    for (frm, to), events in sorted(edges.items(), key=lambda e: (order[e[0][0]], order[e[0][1]])):
        lines.append(f"    {frm} --> {to}: {', '.join(sorted(events))}")
    return "\n".join(lines)


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
    request_kind: RequestKind | None = None  # the latest request (open or consumed)
    start_attempts: int = 0  # failed start/resume attempts (refused, conflict, unknown outcome)
    parked: bool = False  # start_failed for good: retries exhausted, a new request is needed
    outcome_unknown: bool = False  # verifying: the last call's outcome is unknown, no call running
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

    def can_reconnect(self) -> bool:
        """Warmed before and holding no request: a new request reconnects (or resumes) it."""
        return self.state in (
            MailboxState.WARMING,
            MailboxState.PAUSED,
            MailboxState.CONNECTION_PROBLEM,
        ) or (self.state is MailboxState.START_FAILED and self.parked)

    def reconnects_on_request(self) -> bool:
        """A new request for this mailbox reconnects its campaign: it warmed before and holds
        no request, or its last request was a reconnect that did not go through (Mailivery
        failed to mint its link, the request died before storing it, it expired or was
        withdrawn). The campaign is re-read first; one Mailivery no longer has is onboarded
        afresh."""
        return self.can_reconnect() or (
            self.request_kind is RequestKind.RECONNECT and self.campaign_id is not None
        )

    def ever_warmed(self) -> bool:
        """The record shows an active period (within its bounded history)."""
        return any(t.to_state is MailboxState.WARMING for t in self.history)

    def has_open_request(self, now: datetime) -> bool:
        """A request from the integrator that no vendor action has consumed yet."""
        match self.state:
            case MailboxState.CONSENT_REQUESTED:
                return not self.is_expired(now)
            case MailboxState.RESUME_REQUESTED | MailboxState.VERIFYING:
                return True
            case MailboxState.START_FAILED:
                return not self.parked
        return False

    def is_bound_request(self) -> bool:
        """The open request is about the mailbox's existing campaign: resume it, never start."""
        return self.request_kind in (RequestKind.RECONNECT, RequestKind.RESUME)

    def claim_is_live(self, now: datetime, lease: timedelta) -> bool:
        """A worker is (or, within the lease, may still be) inside this record's vendor call;
        or that call's answer never came and Mailivery may still be applying it (for
        UNKNOWN_OUTCOME_SETTLE after the outcome was recorded). Either way no other delivery
        may act on the request yet: a re-read could not yet tell whether the call ran."""
        until = self.claim_held_until(lease)
        return until is not None and until > now

    def claim_held_until(self, lease: timedelta) -> datetime | None:
        """When the claim stops holding other deliveries back (None: no claim)."""
        if self.state is not MailboxState.VERIFYING:
            return None
        held = UNKNOWN_OUTCOME_SETTLE if self.outcome_unknown else lease
        return parse_iso(self.updated_at) + held

    def transition(
        self,
        to_state: MailboxState,
        *,
        event: MailboxEvent,
        now: datetime,
        reason: str,
        **changes: Any,
    ) -> ExpectedMailbox:
        """A copy in `to_state`, with the transition appended to the bounded history.

        Raises IllegalTransition for a move TRANSITIONS does not list.
        """
        if (self.state, event, to_state) not in TRANSITIONS:
            raise IllegalTransition(f"{self.state.value} --{event.value}--> {to_state.value}")
        entry = Transition(at=iso(now), from_state=self.state, to_state=to_state, reason=reason)
        return replace(
            self,
            state=to_state,
            updated_at=iso(now),
            history=(*self.history, entry)[-HISTORY_LIMIT:],
            **changes,
        )
