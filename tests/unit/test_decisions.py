"""The decision table: every rule of decisions.decide, one row per case."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from warmgate.campaigns import CampaignLedgerEntry, LedgerState
from warmgate.decisions import (
    Action,
    EventKind,
    Outcome,
    classify_event,
    decide,
)
from warmgate.mailboxes import ExpectedMailbox, MailboxState, Transition, iso
from warmgate.mailivery.models import Campaign
from warmgate.settings import UnexpectedCampaignPolicy

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=90)
CID = "4711"
LEAVE, DELETE = UnexpectedCampaignPolicy.LEAVE, UnexpectedCampaignPolicy.DELETE
MARKERS = ("connection", "disconnect")


def mailbox(
    state: MailboxState = MailboxState.CONSENT_REQUESTED, **changes: Any
) -> ExpectedMailbox:
    base = ExpectedMailbox(
        email="ada@contoso.com",
        state=state,
        first_name="Ada",
        requested_by="user-1",
        requested_at=iso(NOW - timedelta(hours=1)),
        expires_at=iso(NOW + timedelta(hours=23)),
        updated_at=iso(NOW - timedelta(minutes=30)),
        consent_url="https://login.microsoftonline.com/x?client_id=a&state=b",
        campaign_id=None if state is MailboxState.CONSENT_REQUESTED else CID,
        history=(Transition(iso(NOW), None, MailboxState.CONSENT_REQUESTED, "requested"),),
    )
    return replace(base, **changes)


def campaign(status: str | None = "pending", **fields: Any) -> Campaign:
    data = {
        "id": int(CID),
        "email": "Ada@Contoso.com",
        "status": status,
        "imap_type": "ms-graph",
        "smtp_type": "office 365",
    } | fields
    return Campaign.from_payload(data, ("status", "status_code"))


def ledger(
    state: LedgerState, updated_at: datetime = NOW - timedelta(hours=1)
) -> CampaignLedgerEntry:
    return CampaignLedgerEntry(CID, state, "ada@contoso.com", "r", iso(NOW), iso(updated_at))


WARMED_BEFORE = (
    Transition(iso(NOW), None, MailboxState.CONSENT_REQUESTED, "requested"),
    Transition(iso(NOW), MailboxState.CONSENT_REQUESTED, MailboxState.VERIFYING, "v"),
    Transition(iso(NOW), MailboxState.VERIFYING, MailboxState.WARMING, "w"),
    Transition(iso(NOW), MailboxState.WARMING, MailboxState.CONNECTION_PROBLEM, "c"),
)

ONB, DEL, CONN, OTHER = (
    EventKind.ONBOARDING,
    EventKind.DELETED,
    EventKind.CONNECTION_PROBLEM,
    EventKind.OTHER,
)

# (id, kind, campaign, mailbox, ledger, policy) -> (outcome, action, mailbox_state, ledger_state)
CASES: list[tuple[str, EventKind, Any, Any, Any, Any, tuple[Any, Any, Any, Any]]] = [
    (
        "expected pending -> start",
        ONB,
        campaign(),
        mailbox(),
        None,
        LEAVE,
        (Outcome.STARTED, Action.START, MailboxState.WARMING, None),
    ),
    (
        "email case and spaces differ -> start",
        ONB,
        campaign(email=" ADA@contoso.COM "),
        mailbox(),
        None,
        LEAVE,
        (Outcome.STARTED, Action.START, MailboxState.WARMING, None),
    ),
    (
        "status_code field -> start",
        ONB,
        campaign(None, status_code="pending"),
        mailbox(),
        None,
        LEAVE,
        (Outcome.STARTED, Action.START, MailboxState.WARMING, None),
    ),
    (
        "expected paused -> resume",
        ONB,
        campaign("paused"),
        mailbox(),
        None,
        LEAVE,
        (Outcome.RESUMED, Action.RESUME, MailboxState.WARMING, None),
    ),
    (
        "pending after our active period -> resume",
        ONB,
        campaign(),
        mailbox(MailboxState.CONNECTION_PROBLEM, history=WARMED_BEFORE),
        None,
        LEAVE,
        (Outcome.RESUMED, Action.RESUME, MailboxState.WARMING, None),
    ),
    (
        "connection_problem campaign, expected -> resume",
        ONB,
        campaign("connection_problem"),
        mailbox(MailboxState.CONNECTION_PROBLEM),
        None,
        LEAVE,
        (Outcome.RESUMED, Action.RESUME, MailboxState.WARMING, None),
    ),
    (
        "already active, record consent_requested -> warming, no call",
        ONB,
        campaign("active"),
        mailbox(),
        None,
        LEAVE,
        (Outcome.ALREADY_WARMING, Action.NONE, MailboxState.WARMING, None),
    ),
    (
        "already active and warming -> duplicate",
        ONB,
        campaign("active"),
        mailbox(MailboxState.WARMING),
        None,
        LEAVE,
        (Outcome.DUPLICATE, Action.NONE, None, None),
    ),
    (
        "start_failed retried on next event",
        ONB,
        campaign(),
        mailbox(MailboxState.START_FAILED),
        None,
        LEAVE,
        (Outcome.STARTED, Action.START, MailboxState.WARMING, None),
    ),
    (
        "verifying by another worker -> busy",
        ONB,
        campaign(),
        mailbox(MailboxState.VERIFYING, updated_at=iso(NOW - timedelta(seconds=10))),
        None,
        LEAVE,
        (Outcome.BUSY, Action.NONE, None, None),
    ),
    (
        "stale verifying taken over -> start",
        ONB,
        campaign(),
        mailbox(MailboxState.VERIFYING, updated_at=iso(NOW - timedelta(minutes=5))),
        None,
        LEAVE,
        (Outcome.STARTED, Action.START, MailboxState.WARMING, None),
    ),
    (
        "unknown status -> nothing",
        ONB,
        campaign("archived"),
        mailbox(),
        None,
        LEAVE,
        (Outcome.UNKNOWN_STATUS, Action.NONE, None, None),
    ),
    (
        "wrong imap_type -> nothing, even if expected",
        ONB,
        campaign(imap_type="imap"),
        mailbox(),
        None,
        DELETE,
        (Outcome.NOT_MS_GRAPH, Action.NONE, None, None),
    ),
    (
        "no expectation, leave",
        ONB,
        campaign(),
        None,
        None,
        LEAVE,
        (Outcome.UNEXPECTED_LEFT, Action.NONE, None, LedgerState.LEFT_PENDING),
    ),
    (
        "no expectation, delete",
        ONB,
        campaign(),
        None,
        None,
        DELETE,
        (Outcome.UNEXPECTED_DELETED, Action.DELETE, None, LedgerState.DELETED),
    ),
    (
        "expired expectation -> rejected, left",
        ONB,
        campaign(),
        mailbox(expires_at=iso(NOW - timedelta(minutes=1))),
        None,
        LEAVE,
        (Outcome.UNEXPECTED_LEFT, Action.NONE, MailboxState.REJECTED, LedgerState.LEFT_PENDING),
    ),
    (
        "expired expectation -> rejected, deleted",
        ONB,
        campaign(),
        mailbox(expires_at=iso(NOW - timedelta(minutes=1))),
        None,
        DELETE,
        (Outcome.UNEXPECTED_DELETED, Action.DELETE, MailboxState.REJECTED, LedgerState.DELETED),
    ),
    (
        "withdrawn expectation -> unexpected",
        ONB,
        campaign(),
        mailbox(MailboxState.WITHDRAWN, campaign_id=None),
        None,
        DELETE,
        (Outcome.UNEXPECTED_DELETED, Action.DELETE, None, LedgerState.DELETED),
    ),
    (
        "other mailbox consented -> unexpected",
        ONB,
        campaign(email="eve@contoso.com"),
        mailbox(),
        None,
        LEAVE,
        (Outcome.UNEXPECTED_LEFT, Action.NONE, None, LedgerState.LEFT_PENDING),
    ),
    (
        "second campaign for a warming mailbox -> unexpected",
        ONB,
        campaign(id=9999),
        mailbox(MailboxState.WARMING, campaign_id="4711"),
        None,
        LEAVE,
        (Outcome.UNEXPECTED_LEFT, Action.NONE, None, LedgerState.LEFT_PENDING),
    ),
    (
        "unexpected active campaign -> never deleted",
        ONB,
        campaign("active"),
        None,
        None,
        DELETE,
        (Outcome.UNEXPECTED_ACTIVE, Action.NONE, None, LedgerState.UNEXPECTED_ACTIVE),
    ),
    (
        "left as unexpected, expectation appears later -> never started",
        ONB,
        campaign(),
        mailbox(),
        ledger(LedgerState.LEFT_PENDING),
        LEAVE,
        (Outcome.DUPLICATE, Action.NONE, None, None),
    ),
    (
        "unexpected already left -> duplicate",
        ONB,
        campaign(),
        None,
        ledger(LedgerState.LEFT_PENDING),
        DELETE,
        (Outcome.DUPLICATE, Action.NONE, None, None),
    ),
    (
        "unexpected delete claimed by another worker -> busy",
        ONB,
        campaign(),
        None,
        ledger(LedgerState.DELETING, NOW - timedelta(seconds=5)),
        DELETE,
        (Outcome.BUSY, Action.NONE, None, None),
    ),
    (
        "unexpected stale delete claim -> delete again",
        ONB,
        campaign(),
        None,
        ledger(LedgerState.DELETING),
        DELETE,
        (Outcome.UNEXPECTED_DELETED, Action.DELETE, None, LedgerState.DELETED),
    ),
    (
        "campaign gone at re-read -> mailbox deleted",
        ONB,
        None,
        mailbox(MailboxState.WARMING),
        None,
        LEAVE,
        (Outcome.CAMPAIGN_GONE, Action.NONE, MailboxState.DELETED, None),
    ),
    (
        "campaign gone, no record -> nothing",
        ONB,
        None,
        None,
        None,
        DELETE,
        (Outcome.CAMPAIGN_GONE, Action.NONE, None, None),
    ),
    (
        "deleted event, warming mailbox -> deleted",
        DEL,
        None,
        mailbox(MailboxState.WARMING),
        None,
        LEAVE,
        (Outcome.DELETED_SEEN, Action.NONE, MailboxState.DELETED, LedgerState.DELETED),
    ),
    (
        "deleted event but campaign still exists -> ignored",
        DEL,
        campaign(),
        mailbox(MailboxState.WARMING),
        None,
        LEAVE,
        (Outcome.IGNORED, Action.NONE, None, None),
    ),
    (
        "deleted event twice -> duplicate",
        DEL,
        None,
        mailbox(MailboxState.DELETED),
        ledger(LedgerState.DELETED),
        LEAVE,
        (Outcome.DUPLICATE, Action.NONE, None, None),
    ),
    (
        "deleted event after our own delete -> duplicate",
        DEL,
        None,
        None,
        ledger(LedgerState.DELETED),
        LEAVE,
        (Outcome.DUPLICATE, Action.NONE, None, None),
    ),
    (
        "connection problem while warming",
        CONN,
        campaign("paused"),
        mailbox(MailboxState.WARMING),
        None,
        LEAVE,
        (Outcome.CONNECTION_PROBLEM, Action.NONE, MailboxState.CONNECTION_PROBLEM, None),
    ),
    (
        "connection problem but active again -> ignored",
        CONN,
        campaign("active"),
        mailbox(MailboxState.WARMING),
        None,
        LEAVE,
        (Outcome.IGNORED, Action.NONE, None, None),
    ),
    (
        "connection problem for unexpected campaign -> ignored",
        CONN,
        campaign("paused"),
        None,
        None,
        DELETE,
        (Outcome.IGNORED, Action.NONE, None, None),
    ),
    (
        "other event type -> ignored",
        OTHER,
        campaign(),
        mailbox(),
        None,
        DELETE,
        (Outcome.IGNORED, Action.NONE, None, None),
    ),
]


@pytest.mark.parametrize(
    ("kind", "found", "record", "entry", "policy", "expected"),
    [case[1:] for case in CASES],
    ids=[case[0] for case in CASES],
)
def test_decide_table(
    kind: EventKind,
    found: Campaign | None,
    record: ExpectedMailbox | None,
    entry: CampaignLedgerEntry | None,
    policy: UnexpectedCampaignPolicy,
    expected: tuple[Any, Any, Any, Any],
) -> None:
    campaign_id = found.campaign_id if found is not None else CID
    decision = decide(kind, campaign_id, found, record, entry, policy, NOW, LEASE)
    assert (
        decision.outcome,
        decision.action,
        decision.mailbox_state,
        decision.ledger_state,
    ) == expected
    assert decision.reason


@pytest.mark.parametrize(
    ("event_type", "kind"),
    [
        ("campaign.pending", EventKind.ONBOARDING),
        ("campaign.created", EventKind.ONBOARDING),
        (" Campaign.Updated ", EventKind.ONBOARDING),
        ("campaign.deleted", EventKind.DELETED),
        ("campaign.connection_problem", EventKind.CONNECTION_PROBLEM),
        ("campaign.disconnected", EventKind.CONNECTION_PROBLEM),
        ("campaign.archived", EventKind.OTHER),
        ("", EventKind.OTHER),
    ],
)
def test_classify_event_known_and_tolerant_types(event_type: str, kind: EventKind) -> None:
    assert classify_event(event_type, MARKERS) is kind


def test_decide_never_starts_without_matching_unexpired_expectation() -> None:
    """Safety property over every mailbox state: START/RESUME only for the expected email."""
    for state in MailboxState:
        for expired in (False, True):
            record = mailbox(
                state,
                email="ada@contoso.com",
                expires_at=iso(NOW + timedelta(hours=-1 if expired else 1)),
            )
            decision = decide(
                ONB, CID, campaign(email="eve@contoso.com"), record, None, LEAVE, NOW, LEASE
            )
            assert decision.action not in (Action.START, Action.RESUME)
            if state in (MailboxState.WITHDRAWN, MailboxState.EXPIRED, MailboxState.REJECTED):
                same = decide(ONB, CID, campaign(), record, None, LEAVE, NOW, LEASE)
                assert same.action not in (Action.START, Action.RESUME)


# --- invariants, over generated inputs -------------------------------------------------------

from hypothesis import given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

EMAILS = ("ada@contoso.com", "eve@contoso.com")
STATUSES = ("pending", "active", "paused", "connection_problem", "archived", None)


@st.composite
def situations(draw: st.DrawFn) -> tuple[Any, ...]:
    kind = draw(st.sampled_from(list(EventKind)))
    found = None
    if draw(st.booleans()):
        found = campaign(
            draw(st.sampled_from(STATUSES)),
            email=draw(st.sampled_from(EMAILS)),
            imap_type=draw(st.sampled_from(["ms-graph", "imap", None])),
        )
    record = None
    if draw(st.booleans()):
        state = draw(st.sampled_from(list(MailboxState)))
        record = mailbox(
            state,
            email=draw(st.sampled_from(EMAILS)),
            expires_at=iso(NOW + timedelta(minutes=draw(st.integers(-120, 120)))),
            updated_at=iso(NOW - timedelta(seconds=draw(st.integers(0, 600)))),
            campaign_id=draw(st.sampled_from([None, CID, "9999"])),
        )
    entry = None
    if draw(st.booleans()):
        entry = ledger(
            draw(st.sampled_from(list(LedgerState))),
            NOW - timedelta(seconds=draw(st.integers(0, 600))),
        )
    policy = draw(st.sampled_from(list(UnexpectedCampaignPolicy)))
    return kind, found, record, entry, policy


@settings(max_examples=400, deadline=None)
@given(situations())
def test_decide_invariants_hold_for_any_situation(situation: tuple[Any, ...]) -> None:
    kind, found, record, entry, policy = situation
    decision = decide(kind, CID, found, record, entry, policy, NOW, LEASE)

    if decision.action in (Action.START, Action.RESUME):
        # Never start without a live expectation for the re-read campaign's own email.
        assert kind is EventKind.ONBOARDING
        assert found is not None
        assert found.is_ms_graph
        assert record is not None
        assert record.email == found.email
        assert record.state not in (MailboxState.WITHDRAWN, MailboxState.EXPIRED)
        assert not (record.state is MailboxState.CONSENT_REQUESTED and record.is_expired(NOW))
        assert decision.mailbox_state is MailboxState.WARMING
    if decision.action is Action.DELETE:
        # Only a pending ms-graph campaign nobody expects, only by policy, only once.
        assert policy is UnexpectedCampaignPolicy.DELETE
        assert found is not None
        assert found.is_ms_graph
        assert found.raw_status == "pending"
        assert entry is None or entry.state is LedgerState.DELETING
    if entry is not None:
        # A campaign handled without an expectation is never started, and gets no second
        # action but the retake of a stale delete claim.
        assert decision.action in (Action.NONE, Action.DELETE)
        assert decision.action is Action.NONE or entry.state is LedgerState.DELETING
    if (
        record is not None
        and record.state is MailboxState.WARMING
        and record.campaign_id == CID
        and found is not None
        and found.raw_status == "active"
    ):
        assert decision.action is Action.NONE  # already warming: no second call
    assert decision.reason
