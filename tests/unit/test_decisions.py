"""The decision table: every rule of decisions.decide, one row per case."""

from __future__ import annotations

from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from tests.properties import examples
from warmgate.domain.campaigns import Campaign
from warmgate.domain.decisions import (
    Action,
    EventKind,
    Outcome,
    classify_event,
    decide,
    replayed,
)
from warmgate.domain.ledger import CampaignLedgerEntry, LedgerState
from warmgate.domain.mailboxes import (
    ENDED_STATES,
    TRANSITIONS,
    UNKNOWN_OUTCOME_SETTLE,
    ExpectedMailbox,
    IllegalTransition,
    MailboxEvent,
    MailboxState,
    RequestKind,
    Transition,
    iso,
)
from warmgate.domain.policies import UnexpectedCampaignPolicy
from warmgate.services.start_attempts import UNKNOWN_OUTCOME_RETRY_BASE_SECONDS

NOW = datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
LEASE = timedelta(seconds=90)
SETTLED = NOW - UNKNOWN_OUTCOME_SETTLE  # an unknown outcome recorded long enough ago
CID = "4711"
LEAVE, DELETE = UnexpectedCampaignPolicy.LEAVE, UnexpectedCampaignPolicy.DELETE
RECONNECT, RESUME = RequestKind.RECONNECT, RequestKind.RESUME
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
    state: LedgerState,
    updated_at: datetime = NOW - timedelta(hours=1),
    first_seen: datetime = NOW,
) -> CampaignLedgerEntry:
    return CampaignLedgerEntry(CID, state, "ada@contoso.com", "r", iso(first_seen), iso(updated_at))


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
        "pending again after our active period, no request -> nothing",
        ONB,
        campaign(),
        mailbox(MailboxState.CONNECTION_PROBLEM, history=WARMED_BEFORE),
        None,
        LEAVE,
        (Outcome.IGNORED, Action.NONE, None, None),
    ),
    (
        "connection_problem campaign, no request -> already recorded, no call",
        ONB,
        campaign("connection_problem"),
        mailbox(MailboxState.CONNECTION_PROBLEM),
        None,
        LEAVE,
        (Outcome.DUPLICATE, Action.NONE, None, None),
    ),
    (
        "reconnect request, campaign paused -> resume",
        ONB,
        campaign("paused"),
        mailbox(campaign_id=CID, request_kind=RECONNECT),
        None,
        LEAVE,
        (Outcome.RESUMED, Action.RESUME, MailboxState.WARMING, None),
    ),
    (
        "reconnect request, campaign pending after warming -> resume, never start",
        ONB,
        campaign(),
        mailbox(campaign_id=CID, request_kind=RECONNECT, history=WARMED_BEFORE),
        None,
        LEAVE,
        (Outcome.RESUMED, Action.RESUME, MailboxState.WARMING, None),
    ),
    (
        "reconnect of a mailbox that never warmed, campaign pending -> start",
        ONB,
        campaign(),
        mailbox(campaign_id=CID, request_kind=RECONNECT),
        None,
        LEAVE,
        (Outcome.STARTED, Action.START, MailboxState.WARMING, None),
    ),
    (
        "reconnect request, connection still broken -> wait for the consent",
        ONB,
        campaign("connection_problem"),
        mailbox(campaign_id=CID, request_kind=RECONNECT),
        None,
        LEAVE,
        (Outcome.AWAITING_RECONNECT, Action.NONE, None, None),
    ),
    (
        "reconnect request, campaign active again -> warming, no call",
        ONB,
        campaign("active"),
        mailbox(campaign_id=CID, request_kind=RECONNECT),
        None,
        LEAVE,
        (Outcome.ALREADY_WARMING, Action.NONE, MailboxState.WARMING, None),
    ),
    (
        "reconnect request bound to another campaign -> unexpected, request kept",
        ONB,
        campaign(),
        mailbox(campaign_id="9999", request_kind=RECONNECT),
        None,
        LEAVE,
        (Outcome.UNEXPECTED_LEFT, Action.NONE, None, LedgerState.LEFT_PENDING),
    ),
    (
        "resume request, campaign paused -> resume",
        ONB,
        campaign("paused"),
        mailbox(MailboxState.RESUME_REQUESTED, request_kind=RESUME),
        None,
        LEAVE,
        (Outcome.RESUMED, Action.RESUME, MailboxState.WARMING, None),
    ),
    (
        "resume request, campaign resumed at Mailivery -> warming, no call",
        ONB,
        campaign("active"),
        mailbox(MailboxState.RESUME_REQUESTED, request_kind=RESUME),
        None,
        LEAVE,
        (Outcome.ALREADY_WARMING, Action.NONE, MailboxState.WARMING, None),
    ),
    (
        "operator pause, late duplicate pending -> paused recorded, no call",
        ONB,
        campaign("paused"),
        mailbox(MailboxState.WARMING, history=WARMED_BEFORE[:3]),
        None,
        LEAVE,
        (Outcome.PAUSE_RECORDED, Action.NONE, MailboxState.PAUSED, None),
    ),
    (
        "paused and reported paused again -> duplicate",
        ONB,
        campaign("paused"),
        mailbox(MailboxState.PAUSED),
        None,
        LEAVE,
        (Outcome.DUPLICATE, Action.NONE, None, None),
    ),
    (
        "paused, resumed in Mailivery's dashboard -> warming recorded",
        ONB,
        campaign("active"),
        mailbox(MailboxState.PAUSED),
        None,
        LEAVE,
        (Outcome.ACTIVE_RECORDED, Action.NONE, MailboxState.WARMING, None),
    ),
    (
        "outcome unknown, settled, re-read active -> warming, no second call",
        ONB,
        campaign("active"),
        mailbox(MailboxState.VERIFYING, outcome_unknown=True, updated_at=iso(SETTLED)),
        None,
        LEAVE,
        (Outcome.ALREADY_WARMING, Action.NONE, MailboxState.WARMING, None),
    ),
    (
        "outcome unknown, settled, re-read still pending -> start again",
        ONB,
        campaign(),
        mailbox(MailboxState.VERIFYING, outcome_unknown=True, updated_at=iso(SETTLED)),
        None,
        LEAVE,
        (Outcome.STARTED, Action.START, MailboxState.WARMING, None),
    ),
    (
        "outcome unknown moments ago, re-read pending -> busy (the call may still land)",
        ONB,
        campaign(),
        mailbox(MailboxState.VERIFYING, outcome_unknown=True, updated_at=iso(NOW)),
        None,
        LEAVE,
        (Outcome.BUSY, Action.NONE, None, None),
    ),
    (
        "parked, pending again -> nothing without a new request",
        ONB,
        campaign(),
        mailbox(MailboxState.START_FAILED, parked=True, start_attempts=4),
        None,
        LEAVE,
        (Outcome.IGNORED, Action.NONE, None, None),
    ),
    (
        "request made after the campaign was left as unexpected -> start, ledger adopted",
        ONB,
        campaign(),
        mailbox(requested_at=iso(NOW)),
        ledger(LedgerState.LEFT_PENDING, first_seen=NOW - timedelta(hours=2)),
        LEAVE,
        (Outcome.STARTED, Action.START, MailboxState.WARMING, LedgerState.ADOPTED),
    ),
    (
        "re-read answers another campaign id -> nothing",
        ONB,
        campaign(id=4712),
        mailbox(),
        None,
        LEAVE,
        (Outcome.ID_MISMATCH, Action.NONE, None, None),
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
        campaign(),
        mailbox(MailboxState.WARMING, campaign_id="9999"),
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
        "connection problem but active again -> nothing to record",
        CONN,
        campaign("active"),
        mailbox(MailboxState.WARMING),
        None,
        LEAVE,
        (Outcome.DUPLICATE, Action.NONE, None, None),
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
    decision = decide(kind, CID, found, record, entry, policy, NOW, LEASE)
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


@pytest.mark.parametrize(
    ("event_type", "record", "expected"),
    [
        ("campaign.pending", mailbox(MailboxState.WARMING), True),
        (" Campaign.Created ", mailbox(MailboxState.WARMING), True),
        # updated may report a change (e.g. after a reconnect): always re-read
        ("campaign.updated", mailbox(MailboxState.WARMING), False),
        ("campaign.deleted", mailbox(MailboxState.WARMING), False),
        ("campaign.pending", mailbox(MailboxState.WARMING, campaign_id="9999"), False),
        ("campaign.pending", mailbox(MailboxState.VERIFYING), False),
        ("campaign.pending", mailbox(MailboxState.PAUSED), False),
        ("campaign.pending", mailbox(MailboxState.RESUME_REQUESTED), False),
        ("campaign.pending", mailbox(MailboxState.CONSENT_REQUESTED), False),
        ("campaign.pending", None, False),
    ],
)
def test_replayed_only_announcements_of_the_campaign_a_mailbox_warms_with(
    event_type: str, record: ExpectedMailbox | None, expected: bool
) -> None:
    assert replayed(event_type, CID, record) is expected


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
            requested_at=iso(NOW - timedelta(seconds=draw(st.integers(0, 600)))),
            campaign_id=draw(st.sampled_from([None, CID, "9999"])),
            request_kind=draw(st.sampled_from([None, *RequestKind])),
            parked=draw(st.booleans()),
            outcome_unknown=draw(st.booleans()),
        )
    entry = None
    if draw(st.booleans()):
        entry = ledger(
            draw(st.sampled_from(list(LedgerState))),
            NOW - timedelta(seconds=draw(st.integers(0, 600))),
            NOW - timedelta(seconds=draw(st.integers(0, 600))),
        )
    policy = draw(st.sampled_from(list(UnexpectedCampaignPolicy)))
    return kind, found, record, entry, policy


@settings(max_examples=examples(600), deadline=None)
@given(situations())
def test_decide_invariants_hold_for_any_situation(situation: tuple[Any, ...]) -> None:
    kind, found, record, entry, policy = situation
    decision = decide(kind, CID, found, record, entry, policy, NOW, LEASE)

    if decision.action in (Action.START, Action.RESUME):
        # Never without an unconsumed request for the re-read campaign's own email.
        assert kind is EventKind.ONBOARDING
        assert found is not None
        assert found.is_ms_graph
        assert record is not None
        assert record.email == found.email
        assert record.has_open_request(NOW)
        assert not record.claim_is_live(NOW, LEASE)
        assert record.campaign_id in (None, CID)  # a bound request acts on its campaign only
        if decision.action is Action.START:  # a bound request resumes what warmed before
            assert not record.is_bound_request() or all(
                t.to_state is not MailboxState.WARMING for t in record.history
            )
        assert entry is None or entry.first_seen_at <= record.requested_at
        assert decision.mailbox_state is MailboxState.WARMING
    if decision.action is Action.DELETE:
        # Only a pending ms-graph campaign nobody tracks, only by policy, only once.
        assert policy is UnexpectedCampaignPolicy.DELETE
        assert found is not None
        assert found.is_ms_graph
        assert found.raw_status == "pending"
        assert entry is None or entry.state is LedgerState.DELETING
        if record is not None and record.email == found.email:  # never one a record tracks
            assert record.campaign_id != CID or record.state in ENDED_STATES
    if record is not None and decision.mailbox_state is not None:
        # A decision only names moves the state machine allows.
        assert decision.mailbox_event is not None
        acted = decision.action in (Action.START, Action.RESUME)  # recorded after the claim
        source = MailboxState.VERIFYING if acted else record.state
        assert (source, decision.mailbox_event, decision.mailbox_state) in TRANSITIONS
    if (
        record is not None
        and record.state is MailboxState.WARMING
        and record.campaign_id == CID
        and found is not None
        and found.raw_status == "active"
    ):
        assert decision.action is Action.NONE  # already warming: no second call
    assert decision.reason


@settings(max_examples=examples(300), deadline=None)
@given(situations())
def test_replayed_is_decided_as_no_action_by_decide_too(situation: tuple[Any, ...]) -> None:
    """What the shortcut skips, the full decision would not have acted on either (it could
    only have recorded what the re-read shows)."""
    _, found, record, entry, policy = situation
    record = replace(record or mailbox(), state=MailboxState.WARMING, campaign_id=CID)
    if found is not None:  # a record only ever tracks a campaign of its own email
        found = replace(found, email=record.email)
    assert replayed("campaign.pending", CID, record)

    decision = decide(EventKind.ONBOARDING, CID, found, record, entry, policy, NOW, LEASE)

    assert decision.action is Action.NONE


# --- the rule over whole lifetimes: one vendor action per request ---------------------------

STEPS = st.one_of(
    st.tuples(st.just("webhook"), st.sampled_from([ONB, CONN, OTHER])),
    st.tuples(st.just("vendor"), st.sampled_from(["paused", "connection_problem", "active"])),
    st.tuples(st.just("request"), st.sampled_from(list(RequestKind))),
)


@settings(max_examples=examples(300), deadline=None)
@given(st.lists(STEPS, max_size=25))
def test_every_start_or_resume_consumes_exactly_one_request(steps: list[tuple[str, Any]]) -> None:
    """A mailbox's life as the worker lives it: webhooks (duplicates, late, replayed), changes
    made at Mailivery on its own, and the integrator's requests. Every start/resume is backed by
    an unconsumed request, no request backs two, and every recorded move is a legal one."""
    record = mailbox(request_kind=RequestKind.ONBOARD)
    vendor_status, requests, actions = "pending", 1, 0
    actions_per_request: dict[int, int] = {}
    for step, arg in steps:
        if step == "vendor":
            vendor_status = arg if vendor_status != "pending" or arg == "active" else "pending"
            continue
        if step == "request":
            if not record.can_reconnect():
                continue  # the API refuses: ALREADY_ONBOARDED / NOT_PAUSED
            target = (
                MailboxState.RESUME_REQUESTED
                if arg is RequestKind.RESUME
                else MailboxState.CONSENT_REQUESTED
            )
            event = (
                MailboxEvent.RESUME_REQUESTED
                if arg is RequestKind.RESUME
                else MailboxEvent.REQUESTED
            )
            record = record.transition(
                target,
                event=event,
                now=NOW,
                reason="request",
                request_kind=RequestKind.RECONNECT if arg is RequestKind.ONBOARD else arg,
                requested_at=iso(NOW),
            )
            requests += 1
            continue
        decision = decide(arg, CID, campaign(vendor_status), record, None, LEAVE, NOW, LEASE)
        if decision.action in (Action.START, Action.RESUME):
            assert record.has_open_request(NOW)
            actions_per_request[requests] = actions_per_request.get(requests, 0) + 1
            actions += 1
            vendor_status = "active"
            claimed = record.transition(
                MailboxState.VERIFYING,
                event=MailboxEvent.CLAIMED,
                now=NOW,
                reason="claim",
                campaign_id=CID,
            )
            record = claimed.transition(
                MailboxState.WARMING, event=MailboxEvent.ACCEPTED, now=NOW, reason="accepted"
            )
        elif decision.mailbox_state is not None:
            assert decision.mailbox_event is not None
            record = record.transition(
                decision.mailbox_state,
                event=decision.mailbox_event,
                now=NOW,
                reason=decision.reason,
                campaign_id=CID,
            )
    assert all(count == 1 for count in actions_per_request.values())
    assert actions <= requests


def test_transition_refuses_a_move_outside_the_table() -> None:
    warming = mailbox(MailboxState.WARMING)
    with pytest.raises(IllegalTransition, match="warming --claimed--> verifying"):
        warming.transition(
            MailboxState.VERIFYING, event=MailboxEvent.CLAIMED, now=NOW, reason="no request"
        )


def test_an_unknown_outcome_settles_before_the_workers_own_retry_rereads() -> None:
    # Other deliveries wait UNKNOWN_OUTCOME_SETTLE; the deferred retry must not be one of them.
    assert UNKNOWN_OUTCOME_SETTLE.total_seconds() < UNKNOWN_OUTCOME_RETRY_BASE_SECONDS
    retry_at = NOW + timedelta(seconds=UNKNOWN_OUTCOME_RETRY_BASE_SECONDS)
    record = mailbox(MailboxState.VERIFYING, outcome_unknown=True, updated_at=iso(NOW))
    assert record.claim_is_live(NOW + timedelta(seconds=1), LEASE)
    assert not record.claim_is_live(retry_at, LEASE)
