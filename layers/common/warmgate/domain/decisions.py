"""What to do with one campaign event: a pure function of what warmgate knows at that moment.

Inputs: the event's kind, the campaign as re-read from Mailivery (the webhook is only a hint),
the expected-mailbox record for the campaign's email, the campaign's ledger entry, the policy
for unexpected campaigns, and the time. No I/O here: `warmgate.services.worker` reads the inputs,
applies the decision with conditional writes, and makes at most the one vendor call it names.

The rule everything below serves: **every start or resume is backed by exactly one unconsumed
request from the integrator.** A request is `POST /mailboxes` (a new onboarding, or a reconnect
of a mailbox that warmed before) or `POST /mailboxes/{email}/resume`; it is open while the
mailbox is `consent_requested` (unexpired), `resume_requested`, `verifying` or a `start_failed`
that is not parked, and the vendor action it leads to consumes it (`warming`). Whatever
Mailivery reports later (paused, connection problem, updated, a replayed pending) is recorded
in the mailbox's state and history and never acted on without a new request.

Safety rules encoded below:
- start/resume only for an open request of the same normalized email, only for an ms-graph
  campaign, and only for the campaign a bound request (reconnect, resume) names; a bound
  request resumes (it starts only a campaign that never warmed under our record), and waits
  while Mailivery still reports a connection problem (the owner has not reconnected yet);
- never delete a campaign that is not pending, nor anything that is not ms-graph, nor a
  campaign a mailbox record tracks;
- a campaign handled as unexpected (ledger entry) causes no second call, unless a request
  created after that entry adopts it: same mailbox, consented at Microsoft by its owner.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from warmgate.domain.campaigns import Campaign, CampaignStatus
from warmgate.domain.ledger import CampaignLedgerEntry, LedgerState
from warmgate.domain.mailboxes import (
    ENDED_STATES,
    TRANSITIONS,
    ExpectedMailbox,
    MailboxEvent,
    MailboxState,
    RequestKind,
    parse_iso,
)
from warmgate.domain.policies import UnexpectedCampaignPolicy
from warmgate.domain.webhooks import EventType

# A resume request (POST /mailboxes/{email}/resume) is acted on as a consent is.
ONBOARDING_EVENT_TYPES = frozenset(
    {EventType.PENDING, EventType.CREATED, EventType.UPDATED, EventType.RESUME_REQUESTED}
)
# Events that only announce a campaign: once its mailbox warms with it, a repeat says nothing new.
ANNOUNCING_EVENT_TYPES = frozenset({EventType.PENDING, EventType.CREATED})


class EventKind(StrEnum):
    ONBOARDING = "onboarding"  # pending / created / updated (also sent after a reconnect)
    DELETED = "deleted"
    CONNECTION_PROBLEM = "connection_problem"
    OTHER = "other"


def classify_event(event_type: str, connection_problem_markers: tuple[str, ...]) -> EventKind:
    """The connection-problem type string is [unknown]: matched by markers from the contract."""
    normalized = event_type.strip().lower()
    if normalized in ONBOARDING_EVENT_TYPES:
        return EventKind.ONBOARDING
    if normalized == EventType.DELETED:
        return EventKind.DELETED
    if any(marker in normalized for marker in connection_problem_markers):
        return EventKind.CONNECTION_PROBLEM
    return EventKind.OTHER


class Action(StrEnum):
    START = "start"
    RESUME = "resume"
    DELETE = "delete"
    NONE = "none"


class Outcome(StrEnum):
    STARTED = "started"
    RESUMED = "resumed"
    ALREADY_WARMING = "already_warming"
    PAUSE_RECORDED = "pause_recorded"  # paused at Mailivery, no request: recorded, left alone
    ACTIVE_RECORDED = "active_recorded"  # warming again at Mailivery (resumed there)
    AWAITING_RECONNECT = "awaiting_reconnect"  # a reconnect waits for the owner's consent
    UNEXPECTED_LEFT = "unexpected_left"
    UNEXPECTED_DELETED = "unexpected_deleted"
    UNEXPECTED_ACTIVE = "unexpected_active"
    DUPLICATE = "duplicate"
    NOT_MS_GRAPH = "not_ms_graph"
    ID_MISMATCH = "id_mismatch"  # the re-read campaign is not the one the event names
    CAMPAIGN_GONE = "campaign_gone"
    DELETED_SEEN = "deleted_seen"
    CONNECTION_PROBLEM = "connection_problem"
    UNKNOWN_STATUS = "unknown_status"
    IGNORED = "ignored"
    BUSY = "busy"  # another worker holds a live claim on this campaign: try again later
    START_PARKED = "start_parked"  # attempts exhausted: parked until a new request


@dataclass(frozen=True, slots=True)
class CampaignDecision:
    outcome: Outcome
    reason: str
    action: Action = Action.NONE
    # Target state (and why) once the action (if any) succeeded; None leaves the record as is.
    mailbox_state: MailboxState | None = None
    mailbox_event: MailboxEvent | None = None
    ledger_state: LedgerState | None = None


def decide(
    kind: EventKind,
    campaign_id: str,
    campaign: Campaign | None,
    mailbox: ExpectedMailbox | None,
    ledger: CampaignLedgerEntry | None,
    policy: UnexpectedCampaignPolicy,
    now: datetime,
    claim_lease: timedelta,
) -> CampaignDecision:
    if kind is EventKind.OTHER:
        return CampaignDecision(Outcome.IGNORED, "event type not acted upon")
    if kind is EventKind.DELETED:
        return _deleted(campaign_id, campaign, mailbox, ledger)
    if campaign is None:
        return _gone(campaign_id, mailbox)
    if campaign.campaign_id != campaign_id:
        return CampaignDecision(
            Outcome.ID_MISMATCH,
            f"Mailivery answered campaign {campaign.campaign_id!r} for {campaign_id!r}",
        )
    if not campaign.is_ms_graph:
        return CampaignDecision(
            Outcome.NOT_MS_GRAPH, f"imap_type is {campaign.imap_type!r}, not ms-graph"
        )
    owner = mailbox if mailbox is not None and mailbox.email == campaign.email else None
    if owner is not None:
        tracked = _tracks(owner, campaign_id)
        if tracked and owner.claim_is_live(now, claim_lease):
            return CampaignDecision(Outcome.BUSY, "another worker is verifying this campaign")
        if (
            kind is EventKind.ONBOARDING
            and _request_refusal(campaign_id, owner, ledger, now) is None
        ):
            return _fulfil(campaign, owner, ledger)
        if tracked:
            return _observe(kind, campaign, owner, now)
    if kind is EventKind.CONNECTION_PROBLEM:
        return CampaignDecision(
            Outcome.IGNORED, f"connection-problem event, campaign {campaign.status.value}"
        )
    reason = _why_unexpected(owner, campaign_id, now)
    return _unexpected(campaign, owner, ledger, policy, reason, now, claim_lease)


def replayed(event_type: str, campaign_id: str, mailbox: ExpectedMailbox | None) -> bool:
    """A pending or created event for the campaign its mailbox already warms with: Mailivery
    retrying a delivery, or the reconciler re-queueing it. Decided from our record alone, before
    any re-read: `warming` holds no open request, so `decide` could only observe the campaign
    (its pause or connection problem have webhooks of their own), never act on it."""
    return (
        event_type.strip().lower() in ANNOUNCING_EVENT_TYPES
        and mailbox is not None
        and mailbox.state is MailboxState.WARMING
        and mailbox.campaign_id == campaign_id
    )


def _request_refusal(
    campaign_id: str,
    owner: ExpectedMailbox,
    ledger: CampaignLedgerEntry | None,
    now: datetime,
) -> str | None:
    """Why the owner's open request cannot act on this campaign; None: it can."""
    if not owner.has_open_request(now):
        return "no open request"
    if owner.campaign_id is not None and owner.campaign_id != campaign_id:
        return f"the open request is for campaign {owner.campaign_id}"
    if ledger is not None and parse_iso(ledger.first_seen_at) > parse_iso(owner.requested_at):
        return f"handled as unexpected ({ledger.state.value}) before this request"
    return None


def _fulfil(
    campaign: Campaign, owner: ExpectedMailbox, ledger: CampaignLedgerEntry | None
) -> CampaignDecision:
    """An open request meets its campaign: the one start or resume it backs (or none needed)."""
    adopted = LedgerState.ADOPTED if ledger is not None else None
    match campaign.status:
        case CampaignStatus.ACTIVE:
            return CampaignDecision(
                Outcome.ALREADY_WARMING,
                "campaign already active at Mailivery: the request is fulfilled",
                mailbox_state=MailboxState.WARMING,
                mailbox_event=MailboxEvent.FOUND_ACTIVE,
                ledger_state=adopted,
            )
        case CampaignStatus.CONNECTION_PROBLEM if owner.is_bound_request():
            return CampaignDecision(
                Outcome.AWAITING_RECONNECT,
                "Mailivery still reports a connection problem: waiting for the owner's consent",
            )
        case CampaignStatus.PENDING if not (owner.is_bound_request() and owner.ever_warmed()):
            return CampaignDecision(
                Outcome.STARTED,
                "requested mailbox, new campaign",
                action=Action.START,
                mailbox_state=MailboxState.WARMING,
                mailbox_event=MailboxEvent.ACCEPTED,
                ledger_state=adopted,
            )
        case CampaignStatus.PENDING | CampaignStatus.PAUSED | CampaignStatus.CONNECTION_PROBLEM:
            return CampaignDecision(
                Outcome.RESUMED,
                f"{owner.request_kind or RequestKind.ONBOARD} request, "
                f"campaign {campaign.status.value}",
                action=Action.RESUME,
                mailbox_state=MailboxState.WARMING,
                mailbox_event=MailboxEvent.ACCEPTED,
                ledger_state=adopted,
            )
    return CampaignDecision(
        Outcome.UNKNOWN_STATUS, f"campaign status {campaign.raw_status!r} is not understood"
    )


def _observe(
    kind: EventKind, campaign: Campaign, owner: ExpectedMailbox, now: datetime
) -> CampaignDecision:
    """What Mailivery reports about a campaign we track, with no request to act on: record it."""
    status = campaign.status
    if kind is EventKind.CONNECTION_PROBLEM and status is CampaignStatus.PAUSED:
        status = CampaignStatus.CONNECTION_PROBLEM  # the event says why it is paused
    if owner.has_open_request(now):  # a bound request waiting, e.g. a reconnect
        return CampaignDecision(
            Outcome.IGNORED, f"campaign {status.value}; the open request decides later"
        )
    target = {
        CampaignStatus.ACTIVE: (MailboxState.WARMING, MailboxEvent.FOUND_ACTIVE),
        CampaignStatus.PAUSED: (MailboxState.PAUSED, MailboxEvent.PAUSE_SEEN),
        CampaignStatus.CONNECTION_PROBLEM: (
            MailboxState.CONNECTION_PROBLEM,
            MailboxEvent.CONNECTION_PROBLEM_SEEN,
        ),
    }.get(status)
    if target is None:
        return CampaignDecision(
            Outcome.IGNORED, f"campaign {campaign.raw_status!r}; mailbox {owner.state.value}"
        )
    state, event = target
    if owner.state is state:
        return CampaignDecision(Outcome.DUPLICATE, f"already recorded: {state.value}")
    if (owner.state, event, state) not in TRANSITIONS:
        return CampaignDecision(
            Outcome.IGNORED, f"campaign {status.value}; mailbox {owner.state.value} stays"
        )
    outcome = {
        MailboxState.WARMING: Outcome.ACTIVE_RECORDED,
        MailboxState.PAUSED: Outcome.PAUSE_RECORDED,
        MailboxState.CONNECTION_PROBLEM: Outcome.CONNECTION_PROBLEM,
    }[state]
    return CampaignDecision(
        outcome,
        f"Mailivery reports the campaign {status.value}; recorded, no action without a request",
        mailbox_state=state,
        mailbox_event=event,
    )


def _why_unexpected(owner: ExpectedMailbox | None, campaign_id: str, now: datetime) -> str:
    if owner is None:
        return "no expectation for this mailbox"
    if owner.state is MailboxState.CONSENT_REQUESTED and owner.is_expired(now):
        return "expectation expired"
    if owner.state in ENDED_STATES:
        return f"expectation {owner.state.value}"
    return f"mailbox is {owner.state.value} with campaign {owner.campaign_id}, not {campaign_id}"


def _unexpected(
    campaign: Campaign,
    owner: ExpectedMailbox | None,
    ledger: CampaignLedgerEntry | None,
    policy: UnexpectedCampaignPolicy,
    reason: str,
    now: datetime,
    claim_lease: timedelta,
) -> CampaignDecision:
    deletable = campaign.status is CampaignStatus.PENDING
    if ledger is not None:
        if ledger.is_claim_live(now, claim_lease):
            return CampaignDecision(Outcome.BUSY, "another worker is deleting this campaign")
        stale_delete = ledger.state is LedgerState.DELETING
        if not (stale_delete and deletable and policy is UnexpectedCampaignPolicy.DELETE):
            return CampaignDecision(Outcome.DUPLICATE, f"already handled: {ledger.state.value}")
    rejected = (
        owner is not None
        and owner.state is MailboxState.CONSENT_REQUESTED
        and owner.is_expired(now)
    )
    rejection = (
        {"mailbox_state": MailboxState.REJECTED, "mailbox_event": MailboxEvent.UNEXPECTED}
        if rejected
        else {}
    )
    if not deletable:
        return CampaignDecision(
            Outcome.UNEXPECTED_ACTIVE,
            f"{reason}; campaign is {campaign.status.value}, never deleted automatically",
            ledger_state=LedgerState.UNEXPECTED_ACTIVE,
        )
    if policy is UnexpectedCampaignPolicy.DELETE:
        return CampaignDecision(
            Outcome.UNEXPECTED_DELETED,
            f"{reason}; policy delete",
            action=Action.DELETE,
            ledger_state=LedgerState.DELETED,
            **rejection,  # type: ignore[arg-type]
        )
    return CampaignDecision(
        Outcome.UNEXPECTED_LEFT,
        f"{reason}; policy leave (pending)",
        ledger_state=LedgerState.LEFT_PENDING,
        **rejection,  # type: ignore[arg-type]
    )


def _tracks(mailbox: ExpectedMailbox | None, campaign_id: str) -> bool:
    return (
        mailbox is not None
        and mailbox.campaign_id == campaign_id
        and mailbox.state not in ENDED_STATES
    )


def _gone(campaign_id: str, mailbox: ExpectedMailbox | None) -> CampaignDecision:
    gone = _tracks(mailbox, campaign_id)
    return CampaignDecision(
        Outcome.CAMPAIGN_GONE,
        "campaign not found at Mailivery",
        mailbox_state=MailboxState.DELETED if gone else None,
        mailbox_event=MailboxEvent.CAMPAIGN_DELETED if gone else None,
    )


def _deleted(
    campaign_id: str,
    campaign: Campaign | None,
    mailbox: ExpectedMailbox | None,
    ledger: CampaignLedgerEntry | None,
) -> CampaignDecision:
    if campaign is not None:
        return CampaignDecision(
            Outcome.IGNORED, f"{EventType.DELETED} received but the campaign still exists"
        )
    mailbox_gone = _tracks(mailbox, campaign_id)
    already = ledger is not None and ledger.state is LedgerState.DELETED
    if already and not mailbox_gone:
        return CampaignDecision(Outcome.DUPLICATE, "deletion already recorded")
    return CampaignDecision(
        Outcome.DELETED_SEEN,
        "campaign deleted at Mailivery",
        mailbox_state=MailboxState.DELETED if mailbox_gone else None,
        mailbox_event=MailboxEvent.CAMPAIGN_DELETED if mailbox_gone else None,
        ledger_state=None if already else LedgerState.DELETED,
    )
