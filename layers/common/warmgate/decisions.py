"""What to do with one campaign event: a pure function of what warmgate knows at that moment.

Inputs: the event's kind, the campaign as re-read from Mailivery (the webhook is only a hint),
the expected-mailbox record for the campaign's email, the campaign's ledger entry, the policy
for unexpected campaigns, and the time. No I/O here: `warmgate.worker` reads the inputs,
applies the decision with conditional writes, and makes at most the one vendor call it names.

Safety rules encoded below (architecture §5):
- start/resume only for an unexpired expectation with the same normalized email, and only for
  an ms-graph campaign;
- never delete a campaign that is not pending, nor anything that is not ms-graph;
- a campaign already handled (mailbox warming with it, or a ledger entry) causes no call, and a
  campaign in the ledger (handled as unexpected) is never started later.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum

from warmgate.campaigns import CampaignLedgerEntry, LedgerState
from warmgate.mailboxes import ENDED_STATES, ExpectedMailbox, MailboxState, parse_iso
from warmgate.mailivery.models import Campaign, CampaignStatus
from warmgate.settings import UnexpectedCampaignPolicy

ONBOARDING_EVENT_TYPES = frozenset({"campaign.pending", "campaign.created", "campaign.updated"})
DELETED_EVENT_TYPE = "campaign.deleted"


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
    if normalized == DELETED_EVENT_TYPE:
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
    UNEXPECTED_LEFT = "unexpected_left"
    UNEXPECTED_DELETED = "unexpected_deleted"
    UNEXPECTED_ACTIVE = "unexpected_active"
    DUPLICATE = "duplicate"
    NOT_MS_GRAPH = "not_ms_graph"
    CAMPAIGN_GONE = "campaign_gone"
    DELETED_SEEN = "deleted_seen"
    CONNECTION_PROBLEM = "connection_problem"
    UNKNOWN_STATUS = "unknown_status"
    IGNORED = "ignored"
    BUSY = "busy"  # another worker holds a live claim on this campaign: try again later
    START_PARKED = "start_parked"  # start refused MAX_START_ATTEMPTS times: left for an operator


@dataclass(frozen=True, slots=True)
class CampaignDecision:
    outcome: Outcome
    reason: str
    action: Action = Action.NONE
    # Target states once the action (if any) succeeded; None leaves that record untouched.
    mailbox_state: MailboxState | None = None
    ledger_state: LedgerState | None = None


@dataclass(frozen=True, slots=True)
class _Ownership:
    expected: bool
    busy: bool
    reason: str


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
        gone = mailbox is not None and mailbox.campaign_id == campaign_id
        return CampaignDecision(
            Outcome.CAMPAIGN_GONE,
            "campaign not found at Mailivery",
            mailbox_state=MailboxState.DELETED
            if gone and mailbox is not None and mailbox.state not in ENDED_STATES
            else None,
        )
    if not campaign.is_ms_graph:
        return CampaignDecision(
            Outcome.NOT_MS_GRAPH, f"imap_type is {campaign.imap_type!r}, not ms-graph"
        )
    ownership = _ownership(campaign_id, campaign, mailbox, now, claim_lease)
    if kind is EventKind.CONNECTION_PROBLEM:
        return _connection_problem(campaign, mailbox, ownership)
    if ownership.busy:
        return CampaignDecision(Outcome.BUSY, ownership.reason)
    # A campaign once handled as unexpected stays so, even if an expectation for its email
    # appears later: its consent was given before anyone asked for it.
    if ownership.expected and mailbox is not None and ledger is None:
        return _expected(campaign, mailbox)
    return _unexpected(campaign, mailbox, ledger, policy, ownership.reason, now, claim_lease)


def _ownership(
    campaign_id: str,
    campaign: Campaign,
    mailbox: ExpectedMailbox | None,
    now: datetime,
    claim_lease: timedelta,
) -> _Ownership:
    if mailbox is None or campaign.email is None or campaign.email != mailbox.email:
        return _Ownership(False, False, "no expectation for this mailbox")
    state = mailbox.state
    if state is MailboxState.CONSENT_REQUESTED:
        if mailbox.is_expired(now):
            return _Ownership(False, False, "expectation expired")
        return _Ownership(True, False, "expected")
    if state in ENDED_STATES:
        return _Ownership(False, False, f"expectation {state.value}")
    if mailbox.campaign_id != campaign_id:
        return _Ownership(
            False, False, f"mailbox is {state.value} with campaign {mailbox.campaign_id}"
        )
    if state is MailboxState.VERIFYING:
        if parse_iso(mailbox.updated_at) + claim_lease > now:
            return _Ownership(False, True, "another worker is verifying this campaign")
        return _Ownership(True, False, "expected (stale verification taken over)")
    if state in (
        MailboxState.WARMING,
        MailboxState.START_FAILED,
        MailboxState.CONNECTION_PROBLEM,
    ):
        return _Ownership(True, False, "expected")
    return _Ownership(False, False, f"mailbox is {state.value}")


def _expected(campaign: Campaign, mailbox: ExpectedMailbox) -> CampaignDecision:
    match campaign.status:
        case CampaignStatus.ACTIVE:
            if mailbox.state is MailboxState.WARMING:
                return CampaignDecision(Outcome.DUPLICATE, "already warming")
            return CampaignDecision(
                Outcome.ALREADY_WARMING,
                "campaign already active at Mailivery",
                mailbox_state=MailboxState.WARMING,
            )
        case CampaignStatus.PENDING if not _warmed_before(mailbox):
            return CampaignDecision(
                Outcome.STARTED,
                "expected mailbox, new campaign",
                action=Action.START,
                mailbox_state=MailboxState.WARMING,
            )
        case CampaignStatus.PENDING | CampaignStatus.PAUSED | CampaignStatus.CONNECTION_PROBLEM:
            return CampaignDecision(
                Outcome.RESUMED,
                f"expected mailbox, campaign {campaign.status.value} after an active period",
                action=Action.RESUME,
                mailbox_state=MailboxState.WARMING,
            )
    return CampaignDecision(
        Outcome.UNKNOWN_STATUS, f"campaign status {campaign.raw_status!r} is not understood"
    )


def _warmed_before(mailbox: ExpectedMailbox) -> bool:
    """Our own record of an active period since the current onboarding began."""
    for transition in reversed(mailbox.history):
        if transition.to_state is MailboxState.WARMING:
            return True
        if transition.to_state is MailboxState.CONSENT_REQUESTED:
            return False
    return False


def _unexpected(
    campaign: Campaign,
    mailbox: ExpectedMailbox | None,
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
        MailboxState.REJECTED
        if mailbox is not None
        and mailbox.email == campaign.email
        and mailbox.state is MailboxState.CONSENT_REQUESTED
        else None
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
            mailbox_state=rejected,
            ledger_state=LedgerState.DELETED,
        )
    return CampaignDecision(
        Outcome.UNEXPECTED_LEFT,
        f"{reason}; policy leave (pending)",
        mailbox_state=rejected,
        ledger_state=LedgerState.LEFT_PENDING,
    )


def _deleted(
    campaign_id: str,
    campaign: Campaign | None,
    mailbox: ExpectedMailbox | None,
    ledger: CampaignLedgerEntry | None,
) -> CampaignDecision:
    if campaign is not None:
        return CampaignDecision(
            Outcome.IGNORED, "campaign.deleted received but the campaign still exists"
        )
    mailbox_gone = (
        mailbox is not None
        and mailbox.campaign_id == campaign_id
        and mailbox.state is not MailboxState.DELETED
    )
    already = ledger is not None and ledger.state is LedgerState.DELETED
    if already and not mailbox_gone:
        return CampaignDecision(Outcome.DUPLICATE, "deletion already recorded")
    return CampaignDecision(
        Outcome.DELETED_SEEN,
        "campaign deleted at Mailivery",
        mailbox_state=MailboxState.DELETED if mailbox_gone else None,
        ledger_state=None if already else LedgerState.DELETED,
    )


def _connection_problem(
    campaign: Campaign, mailbox: ExpectedMailbox | None, ownership: _Ownership
) -> CampaignDecision:
    troubled = campaign.status in (CampaignStatus.PAUSED, CampaignStatus.CONNECTION_PROBLEM)
    if (
        ownership.expected
        and mailbox is not None
        and mailbox.state is MailboxState.WARMING
        and troubled
    ):
        return CampaignDecision(
            Outcome.CONNECTION_PROBLEM,
            f"Mailivery reports a connection problem (campaign {campaign.status.value})",
            mailbox_state=MailboxState.CONNECTION_PROBLEM,
        )
    return CampaignDecision(
        Outcome.IGNORED, f"connection-problem event, campaign {campaign.status.value}"
    )
