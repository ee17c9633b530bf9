"""CampaignWorker.handle on in-memory fakes: every outcome of the decision table, applied.

Each scenario arranges a world, hands the worker one message and states what must follow: the
result (an Outcome, or the RetryLater kind), the decision taken (if one was), the vendor calls
made and the records left. `test_every_outcome_and_action_is_reached` reads the same table, so
removing a scenario cannot silently drop an outcome from the tested set.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import timedelta
from typing import Any

import pytest

from tests.fakes import FakeBudget
from tests.unit.services.world import CID, EMAIL, LEASE, MAX_START_ATTEMPTS, World
from warmgate.adapters.mailivery import (
    CampaignStatus,
    Conflict,
    MailiveryError,
    RateLimited,
    ServerError,
    Timeout,
    ValidationFailed,
)
from warmgate.adapters.sqs import QueuedWebhook
from warmgate.domain import decisions
from warmgate.domain.decisions import Action, CampaignDecision, Outcome
from warmgate.domain.ledger import LedgerState
from warmgate.domain.mailboxes import MailboxState, RequestKind, iso
from warmgate.domain.policies import UnexpectedCampaignPolicy
from warmgate.services import worker as worker_module
from warmgate.services.start_attempts import (
    RACE_RETRY_SECONDS,
    START_RETRY_BASE_SECONDS,
    UNKNOWN_OUTCOME_RETRY_BASE_SECONDS,
)
from warmgate.services.worker import RetryLater

S, C, L = MailboxState, CampaignStatus, LedgerState
Arrange = Callable[[World], QueuedWebhook]
RETRY_KINDS = {"rate_limited", "busy", "start_failed", "outcome_unknown", "conflict"}


@dataclass(frozen=True)
class Scenario:
    name: str
    arrange: Callable[[World], QueuedWebhook]
    result: Outcome | str  # what handle returned, or "retry:<kind>" for RetryLater
    decided: Outcome | None = None  # the decision's outcome (None: decided before decide)
    action: Action = Action.NONE
    calls: tuple[str, ...] = ()  # vendor actions made, in order
    state: MailboxState | None = None  # EMAIL's record after (None: no record)
    ledger: LedgerState | None = None  # CID's ledger entry after (None: none)
    delay: float | None = None  # RetryLater's delay
    policy: UnexpectedCampaignPolicy = UnexpectedCampaignPolicy.LEAVE
    then: Callable[[World], None] = field(default=lambda world: None)


def pending_request(world: World) -> QueuedWebhook:
    world.mailbox()
    world.api.add(CID, EMAIL)
    return world.message()


def tracked(
    state: MailboxState, status: CampaignStatus | str, event: str = "campaign.updated"
) -> Arrange:
    def arrange(world: World) -> QueuedWebhook:
        world.mailbox(state)
        world.api.add(CID, EMAIL, status)
        return world.message(event)

    return arrange


def untracked(status: CampaignStatus | str, imap_type: str = "ms-graph") -> Arrange:
    def arrange(world: World) -> QueuedWebhook:
        world.api.add(CID, EMAIL, status, imap_type=imap_type)
        return world.message()

    return arrange


def failing_start(
    error: MailiveryError, *, applied: bool = False, attempts: int = 0, attempt: int = 0
) -> Arrange:
    def arrange(world: World) -> QueuedWebhook:
        world.mailbox(start_attempts=attempts)
        world.api.add(CID, EMAIL)
        world.api.fail("start", error, applied=applied)
        return world.message(attempt=attempt)

    return arrange


def vendor(kind: type[MailiveryError], message: str = "refused") -> MailiveryError:
    return kind(message, request_id="r-1", status=400)


def started_then_adopted(world: World) -> QueuedWebhook:
    world.ledger_entry(L.LEFT_PENDING, age=timedelta(days=2))  # before the request
    return pending_request(world)


def adopted_ledger(world: World) -> None:
    assert world.store.ledger[CID].state is L.ADOPTED


def claim_prepaid(world: World) -> None:
    # The re-read took a token by the throttle; the claim took the start's, which skipped it.
    assert world.budget.taken == 2
    assert world.store.mailboxes[EMAIL].start_attempts == 0


def awaiting_reconnect(world: World) -> QueuedWebhook:
    world.reconnect()
    world.api.add(CID, EMAIL, C.CONNECTION_PROBLEM)
    return world.message("campaign.updated")


def reconnect_paused(world: World) -> QueuedWebhook:
    world.reconnect()
    world.api.add(CID, EMAIL, C.PAUSED)
    return world.message("campaign.updated")


def resume_request(world: World) -> QueuedWebhook:
    world.mailbox(S.RESUME_REQUESTED, request_kind=RequestKind.RESUME)
    world.api.add(CID, EMAIL, C.PAUSED)
    return world.message(decisions.EventType.RESUME_REQUESTED)


def replayed_pending(world: World) -> QueuedWebhook:
    world.mailbox(S.WARMING)
    world.api.add(CID, EMAIL, C.ACTIVE)
    return world.message("campaign.pending")


def no_reread(world: World) -> None:
    assert world.api.calls == []


def ledger_seen(
    state: LedgerState, status: CampaignStatus | None = C.PENDING, event: str = "campaign.pending"
) -> Arrange:
    def arrange(world: World) -> QueuedWebhook:
        world.ledger_entry(state)
        if status is not None:
            world.api.add(CID, EMAIL, status)
        return world.message(event)

    return arrange


def id_mismatch(world: World) -> QueuedWebhook:
    world.mailbox()
    world.api.campaigns[CID] = world.api.add("4712", EMAIL)
    return world.message()


def campaign_gone(event: str) -> Arrange:
    def arrange(world: World) -> QueuedWebhook:
        world.mailbox(S.WARMING)
        return world.message(event)

    return arrange


def other_event(world: World) -> QueuedWebhook:
    world.mailbox()
    world.api.add(CID, EMAIL)
    return world.message("campaign.stats_updated")


def connection_problem_untracked(world: World) -> QueuedWebhook:
    world.api.add(CID, EMAIL, C.PAUSED)
    return world.message("campaign.connection_problem")


def live_claim(world: World) -> QueuedWebhook:
    world.mailbox(S.VERIFYING, updated_at=_iso_ago(world, 30))
    world.api.add(CID, EMAIL)
    return world.message()


def live_delete_claim(world: World) -> QueuedWebhook:
    world.ledger_entry(L.DELETING, age=timedelta(seconds=30))
    world.api.add(CID, EMAIL)
    return world.message()


def _iso_ago(world: World, seconds: float) -> str:
    return iso(world.clock() - timedelta(seconds=seconds))


def expired_request(world: World) -> QueuedWebhook:
    world.mailbox(expires_at=_iso_ago(world, 60))
    world.api.add(CID, EMAIL)
    return world.message()


def unknown_then_settled(world: World) -> QueuedWebhook:
    """A start whose answer was lost but which ran: the retry re-reads it active, no 2nd call."""
    message = failing_start(vendor(Timeout), applied=True)(world)
    with pytest.raises(RetryLater):
        world.worker().handle(message)
    world.clock.advance(UNKNOWN_OUTCOME_RETRY_BASE_SECONDS)
    return world.message(attempt=1)


def budget_gone_at_claim(world: World) -> QueuedWebhook:
    world.budget.tokens = 1  # the re-read takes it
    return pending_request(world)


def raced_claim(world: World) -> QueuedWebhook:
    message = pending_request(world)
    world.store.race(f"mailbox#{EMAIL}")
    return message


def by_email(world: World) -> QueuedWebhook:
    world.mailbox()
    world.api.add(CID, EMAIL)
    return world.message(campaign_id=None)


def nothing_to_find(world: World) -> QueuedWebhook:
    return world.message(campaign_id=None, email="nobody@contoso.com")


def released(world: World) -> None:
    """Claimed (version 2), then put back as it was read (3): no lease blocks the retry."""
    record = world.store.mailboxes[EMAIL]
    assert record.version == 3
    assert record.history[-1].to_state is S.CONSENT_REQUESTED


def untouched(world: World) -> None:
    assert world.store.writes == []
    assert world.store.mailboxes[EMAIL].version == 1


DELETE = UnexpectedCampaignPolicy.DELETE
SCENARIOS = [
    Scenario(
        "start",
        pending_request,
        Outcome.STARTED,
        Outcome.STARTED,
        Action.START,
        ("start",),
        S.WARMING,
        then=claim_prepaid,
    ),
    Scenario(
        "start, found by email",
        by_email,
        Outcome.STARTED,
        Outcome.STARTED,
        Action.START,
        ("start",),
        S.WARMING,
    ),
    Scenario(
        "start adopts a ledger entry older than the request",
        started_then_adopted,
        Outcome.STARTED,
        Outcome.STARTED,
        Action.START,
        ("start",),
        S.WARMING,
        L.ADOPTED,
        then=adopted_ledger,
    ),
    Scenario(
        "reconnect resumes",
        reconnect_paused,
        Outcome.RESUMED,
        Outcome.RESUMED,
        Action.RESUME,
        ("resume",),
        S.WARMING,
    ),
    Scenario(
        "resume request",
        resume_request,
        Outcome.RESUMED,
        Outcome.RESUMED,
        Action.RESUME,
        ("resume",),
        S.WARMING,
    ),
    Scenario(
        "already warming",
        tracked(S.CONSENT_REQUESTED, C.ACTIVE, "campaign.created"),
        Outcome.ALREADY_WARMING,
        Outcome.ALREADY_WARMING,
        state=S.WARMING,
    ),
    Scenario(
        "reconnect waits for consent",
        awaiting_reconnect,
        Outcome.AWAITING_RECONNECT,
        Outcome.AWAITING_RECONNECT,
        state=S.CONSENT_REQUESTED,
    ),
    Scenario(
        "pause recorded",
        tracked(S.WARMING, C.PAUSED),
        Outcome.PAUSE_RECORDED,
        Outcome.PAUSE_RECORDED,
        state=S.PAUSED,
    ),
    Scenario(
        "active recorded",
        tracked(S.PAUSED, C.ACTIVE),
        Outcome.ACTIVE_RECORDED,
        Outcome.ACTIVE_RECORDED,
        state=S.WARMING,
    ),
    Scenario(
        "connection problem recorded",
        tracked(S.WARMING, C.PAUSED, "campaign.connection_problem"),
        Outcome.CONNECTION_PROBLEM,
        Outcome.CONNECTION_PROBLEM,
        state=S.CONNECTION_PROBLEM,
    ),
    Scenario(
        "a pause recorded twice",
        tracked(S.PAUSED, C.PAUSED),
        Outcome.DUPLICATE,
        Outcome.DUPLICATE,
        state=S.PAUSED,
    ),
    Scenario(
        "unexpected, left",
        untracked(C.PENDING),
        Outcome.UNEXPECTED_LEFT,
        Outcome.UNEXPECTED_LEFT,
        ledger=L.LEFT_PENDING,
    ),
    Scenario(
        "unexpected, deleted",
        untracked(C.PENDING),
        Outcome.UNEXPECTED_DELETED,
        Outcome.UNEXPECTED_DELETED,
        Action.DELETE,
        ("delete",),
        ledger=L.DELETED,
        policy=DELETE,
    ),
    Scenario(
        "expired request: rejected, deleted",
        expired_request,
        Outcome.UNEXPECTED_DELETED,
        Outcome.UNEXPECTED_DELETED,
        Action.DELETE,
        ("delete",),
        S.REJECTED,
        L.DELETED,
        policy=DELETE,
    ),
    Scenario(
        "stale delete claim taken over",
        ledger_seen(L.DELETING),
        Outcome.UNEXPECTED_DELETED,
        Outcome.UNEXPECTED_DELETED,
        Action.DELETE,
        ("delete",),
        ledger=L.DELETED,
        policy=DELETE,
    ),
    Scenario(
        "unexpected, active: never deleted",
        untracked(C.ACTIVE),
        Outcome.UNEXPECTED_ACTIVE,
        Outcome.UNEXPECTED_ACTIVE,
        ledger=L.UNEXPECTED_ACTIVE,
        policy=DELETE,
    ),
    Scenario(
        "replayed event: no re-read",
        replayed_pending,
        Outcome.DUPLICATE,
        None,
        state=S.WARMING,
        then=no_reread,
    ),
    Scenario(
        "unexpected seen again",
        ledger_seen(L.LEFT_PENDING),
        Outcome.DUPLICATE,
        Outcome.DUPLICATE,
        ledger=L.LEFT_PENDING,
        policy=DELETE,
    ),
    Scenario(
        "not ms-graph", untracked(C.PENDING, "gmail"), Outcome.NOT_MS_GRAPH, Outcome.NOT_MS_GRAPH
    ),
    Scenario(
        "id mismatch",
        id_mismatch,
        Outcome.ID_MISMATCH,
        Outcome.ID_MISMATCH,
        state=S.CONSENT_REQUESTED,
    ),
    Scenario(
        "campaign gone",
        campaign_gone("campaign.updated"),
        Outcome.CAMPAIGN_GONE,
        Outcome.CAMPAIGN_GONE,
        state=S.DELETED,
    ),
    Scenario(
        "deleted at Mailivery",
        campaign_gone("campaign.deleted"),
        Outcome.DELETED_SEEN,
        Outcome.DELETED_SEEN,
        state=S.DELETED,
        ledger=L.DELETED,
    ),
    Scenario(
        "deletion seen twice",
        ledger_seen(L.DELETED, None, "campaign.deleted"),
        Outcome.DUPLICATE,
        Outcome.DUPLICATE,
        ledger=L.DELETED,
    ),
    Scenario(
        "unknown status",
        tracked(S.CONSENT_REQUESTED, "archived", "campaign.updated"),
        Outcome.UNKNOWN_STATUS,
        Outcome.UNKNOWN_STATUS,
        state=S.CONSENT_REQUESTED,
    ),
    Scenario(
        "event type not acted upon",
        other_event,
        Outcome.IGNORED,
        None,
        state=S.CONSENT_REQUESTED,
        then=no_reread,
    ),
    Scenario(
        "connection problem of no one's campaign",
        connection_problem_untracked,
        Outcome.IGNORED,
        Outcome.IGNORED,
    ),
    Scenario("no campaign to find", nothing_to_find, Outcome.IGNORED, None),
    Scenario(
        "live claim: busy",
        live_claim,
        "retry:busy",
        Outcome.BUSY,
        state=S.VERIFYING,
        delay=(LEASE - timedelta(seconds=30)).total_seconds(),
    ),
    Scenario(
        "live delete claim: busy",
        live_delete_claim,
        "retry:busy",
        Outcome.BUSY,
        ledger=L.DELETING,
        delay=LEASE.total_seconds(),
    ),
    Scenario(
        "start refused: retried",
        failing_start(vendor(ValidationFailed)),
        "retry:start_failed",
        Outcome.STARTED,
        Action.START,
        ("start",),
        S.START_FAILED,
        delay=START_RETRY_BASE_SECONDS,
    ),
    Scenario(
        "start refused at the bound: parked",
        failing_start(vendor(ValidationFailed), attempts=MAX_START_ATTEMPTS - 1),
        Outcome.START_PARKED,
        Outcome.STARTED,
        Action.START,
        ("start",),
        S.START_FAILED,
        then=lambda world: _parked(world),
    ),
    Scenario(
        "the message's own count parks too",
        failing_start(vendor(ValidationFailed), attempt=MAX_START_ATTEMPTS - 1),
        Outcome.START_PARKED,
        Outcome.STARTED,
        Action.START,
        ("start",),
        S.START_FAILED,
        then=lambda world: _parked(world),
    ),
    Scenario(
        "start timed out: outcome unknown",
        failing_start(vendor(Timeout)),
        "retry:outcome_unknown",
        Outcome.STARTED,
        Action.START,
        ("start",),
        S.VERIFYING,
        delay=UNKNOWN_OUTCOME_RETRY_BASE_SECONDS,
        then=lambda world: _outcome_unknown(world),
    ),
    Scenario(
        "unknown outcome settled by the re-read",
        unknown_then_settled,
        Outcome.ALREADY_WARMING,
        Outcome.ALREADY_WARMING,
        state=S.WARMING,
    ),
    Scenario(
        "409 but active after all",
        failing_start(vendor(Conflict), applied=True),
        Outcome.STARTED,
        Outcome.STARTED,
        Action.START,
        ("start",),
        S.WARMING,
    ),
    Scenario(
        "409 and not active",
        failing_start(vendor(Conflict)),
        "retry:start_failed",
        Outcome.STARTED,
        Action.START,
        ("start",),
        S.START_FAILED,
        delay=START_RETRY_BASE_SECONDS,
    ),
    Scenario(
        "5xx: kept claimed",
        failing_start(vendor(ServerError)),
        "retry:outcome_unknown",
        Outcome.STARTED,
        Action.START,
        ("start",),
        S.VERIFYING,
        delay=UNKNOWN_OUTCOME_RETRY_BASE_SECONDS,
    ),
    Scenario(
        "429 at start: claim released",
        failing_start(RateLimited("slow", request_id="r", retry_after=30)),
        "retry:rate_limited",
        Outcome.STARTED,
        Action.START,
        ("start",),
        S.CONSENT_REQUESTED,
        delay=30,
        then=released,
    ),
    Scenario(
        "budget gone at the claim: nothing written",
        budget_gone_at_claim,
        "retry:rate_limited",
        Outcome.STARTED,
        Action.START,
        (),
        S.CONSENT_REQUESTED,
        delay=FakeBudget().retry_after,
        then=untouched,
    ),
    Scenario(
        "claim lost to a concurrent write",
        raced_claim,
        "retry:conflict",
        Outcome.STARTED,
        Action.START,
        (),
        S.CONSENT_REQUESTED,
        delay=RACE_RETRY_SECONDS,
        then=untouched,
    ),
]


def _parked(world: World) -> None:
    record = world.store.mailboxes[EMAIL]
    assert record.parked
    assert record.start_attempts == MAX_START_ATTEMPTS
    assert not record.has_open_request(world.clock())


def _outcome_unknown(world: World) -> None:
    record = world.store.mailboxes[EMAIL]
    assert record.outcome_unknown
    assert record.start_attempts == 1
    assert record.claim_is_live(world.clock(), LEASE)  # held back for the settling time


@pytest.fixture
def decided(monkeypatch: pytest.MonkeyPatch) -> list[CampaignDecision]:
    """Every decision `decide` returns to the worker, in order."""
    seen: list[CampaignDecision] = []

    def recording(*args: Any, **kwargs: Any) -> CampaignDecision:
        seen.append(decisions.decide(*args, **kwargs))
        return seen[-1]

    monkeypatch.setattr(worker_module, "decide", recording)
    return seen


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda s: s.name)
def test_scenario(scenario: Scenario, decided: list[CampaignDecision]) -> None:
    world = World(policy=scenario.policy)
    message = scenario.arrange(world)
    world.api.calls.clear()
    decided.clear()

    try:
        result: Outcome | str = world.worker().handle(message)
        delay = None
    except RetryLater as retry:
        result, delay = f"retry:{retry.kind}", retry.delay

    assert result == scenario.result
    assert delay == scenario.delay
    assert [d.outcome for d in decided[-1:]] == ([scenario.decided] if scenario.decided else [])
    assert [d.action for d in decided[-1:]] == ([scenario.action] if scenario.decided else [])
    assert [name for name, _ in world.api.actions()] == list(scenario.calls)
    record = world.store.mailboxes.get(EMAIL)
    assert (record.state if record else None) is scenario.state
    entry = world.store.ledger.get(CID)
    assert (entry.state if entry else None) is scenario.ledger
    scenario.then(world)


def test_every_outcome_and_action_is_reached() -> None:
    outcomes = {s.result for s in SCENARIOS} | {s.decided for s in SCENARIOS}
    assert set(Outcome) - outcomes == set()
    assert set(Action) - {s.action for s in SCENARIOS} == set()
    retried = {
        s.result.removeprefix("retry:") for s in SCENARIOS if not isinstance(s.result, Outcome)
    }
    assert retried == RETRY_KINDS


def test_a_duplicate_delivery_after_the_start_makes_no_second_call() -> None:
    world = World()
    message = pending_request(world)
    worker = world.worker()

    assert worker.handle(message) is Outcome.STARTED
    assert worker.handle(message) is Outcome.DUPLICATE

    assert world.api.actions() == [("start", CID)]


def test_a_claim_held_by_a_crashed_worker_is_taken_over_after_its_lease() -> None:
    world = World()
    message = live_claim(world)
    world.clock.advance(LEASE.total_seconds())

    assert world.worker().handle(message) is Outcome.STARTED
    assert world.store.mailboxes[EMAIL].state is S.WARMING


def test_the_decision_is_logged_with_the_events_dedup_key(caplog: pytest.LogCaptureFixture) -> None:
    world = World()
    message = pending_request(world)

    with caplog.at_level(logging.INFO):
        world.worker().handle(message)

    [logged] = [r for r in caplog.records if r.getMessage() == "campaign decision"]
    assert logged.__dict__["dedup_key"] == f"campaign.pending:{CID}"
