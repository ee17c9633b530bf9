"""OnboardingService on in-memory fakes: request, replay, reconnect, withdraw, resume, claims."""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta

import pytest

from tests.unit.services.world import CID, EMAIL, OWNER, World
from warmgate.adapters.mailivery import CampaignStatus, ServerError
from warmgate.domain.mailboxes import MailboxState, RequestKind, iso
from warmgate.domain.webhooks import EventType
from warmgate.services.mailbox_requests import (
    UNKNOWN_OUTCOME_RETRY_AFTER,
    MailboxListQuery,
    MailboxRequest,
    NotOwner,
    OnboardingConflict,
)

S = MailboxState
REQUEST = MailboxRequest(email=EMAIL, first_name="Ada", requested_by="user-1")


@pytest.fixture
def world() -> World:
    return World()


def conflict(world: World, call: Callable[[], object]) -> OnboardingConflict:
    with pytest.raises(OnboardingConflict) as raised:
        call()
    return raised.value


def test_a_request_stores_its_expectation_then_its_link(world: World) -> None:
    outcome = world.onboarding().request_consent(REQUEST, OWNER)

    record = world.store.mailboxes[EMAIL]
    assert outcome.created
    assert record.state is S.CONSENT_REQUESTED
    assert record.consent_url == outcome.mailbox.consent_url is not None
    assert record.requested_by_principal == OWNER
    assert world.store.writes == [f"mailbox#{EMAIL}"] * 2  # the claim, then the link
    assert world.api.actions() == [("consent", EMAIL)]


def test_a_replay_is_answered_from_the_record(world: World) -> None:
    first = world.onboarding().request_consent(REQUEST, OWNER)
    replay = world.onboarding().request_consent(REQUEST, OWNER)

    assert not replay.created
    assert replay.mailbox.consent_url == first.mailbox.consent_url
    assert world.api.actions() == [("consent", EMAIL)]


def test_other_details_or_another_principal_are_refused_while_a_link_lives(world: World) -> None:
    world.onboarding().request_consent(REQUEST, OWNER)
    other = REQUEST.model_copy(update={"first_name": "Grace"})

    mismatch = conflict(world, lambda: world.onboarding().request_consent(other, OWNER))
    stranger = conflict(world, lambda: world.onboarding().request_consent(REQUEST, "someone"))

    assert (mismatch.code, stranger.code) == ("REQUEST_MISMATCH", "REQUESTED_BY_ANOTHER")
    assert len(world.api.actions()) == 1


def test_a_failed_consent_request_is_recorded_and_may_be_retried(world: World) -> None:
    world.api.fail("consent", ServerError("down", request_id="r-9", status=503))

    with pytest.raises(ServerError):
        world.onboarding().request_consent(REQUEST, OWNER)
    failed = world.store.mailboxes[EMAIL]
    retried = world.onboarding().request_consent(REQUEST, OWNER)

    assert failed.state is S.REQUEST_FAILED
    assert failed.last_error is not None
    assert failed.last_error.request_id == "r-9"
    assert retried.created
    assert retried.mailbox.state is S.CONSENT_REQUESTED


def test_a_request_racing_another_decides_again_on_its_record(world: World) -> None:
    world.store.race(f"mailbox#{EMAIL}")  # the first claim finds a concurrent write

    outcome = world.onboarding().request_consent(REQUEST, OWNER)

    assert outcome.created
    assert world.api.actions() == [("consent", EMAIL)]


def test_a_request_for_a_paused_mailbox_is_a_reconnect_bound_to_its_campaign(
    world: World,
) -> None:
    world.mailbox(S.PAUSED)
    world.api.add(CID, EMAIL, CampaignStatus.PAUSED)

    record = world.onboarding().request_consent(REQUEST, OWNER).mailbox

    assert record.request_kind is RequestKind.RECONNECT
    assert record.campaign_id == CID
    assert record.is_bound_request()


def test_a_reconnect_of_a_campaign_warming_at_mailivery_is_refused(world: World) -> None:
    world.mailbox(S.PAUSED)
    world.api.add(CID, EMAIL, CampaignStatus.ACTIVE)

    refused = conflict(world, lambda: world.onboarding().request_consent(REQUEST, OWNER))

    assert refused.code == "ALREADY_WARMING"
    assert world.api.actions() == []


def test_a_reconnect_of_a_campaign_mailivery_lost_onboards_afresh(world: World) -> None:
    world.mailbox(S.CONNECTION_PROBLEM)

    record = world.onboarding().request_consent(REQUEST, OWNER).mailbox

    assert (record.request_kind, record.campaign_id) == (RequestKind.ONBOARD, None)


def test_a_held_claim_answers_when_to_retry(world: World) -> None:
    now = world.clock()
    world.mailbox(S.VERIFYING, updated_at=iso(now - timedelta(seconds=30)))
    live = conflict(world, lambda: world.onboarding().request_consent(REQUEST, OWNER))
    world.mailbox(S.VERIFYING, updated_at=iso(now), outcome_unknown=True)
    unknown = conflict(world, lambda: world.onboarding().withdraw(EMAIL, OWNER))

    assert (live.code, live.retry_after) == ("CLAIM_HELD", 61)  # the lease's 90 s, 30 gone
    assert (unknown.code, unknown.retry_after) == ("CLAIM_HELD", UNKNOWN_OUTCOME_RETRY_AFTER)


def test_withdraw_ends_an_open_request_only(world: World) -> None:
    world.mailbox()
    withdrawn = world.onboarding().withdraw(EMAIL, OWNER)
    world.mailbox(S.WARMING)
    warming = conflict(world, lambda: world.onboarding().withdraw(EMAIL, OWNER))

    assert withdrawn.state is S.WITHDRAWN
    assert warming.code == "NOT_WITHDRAWABLE"


def test_only_the_requesting_principal_or_an_admin_may_withdraw(world: World) -> None:
    world.mailbox()

    with pytest.raises(NotOwner):
        world.onboarding().withdraw(EMAIL, "someone")
    assert world.onboarding().withdraw(EMAIL, "admin").state is S.WITHDRAWN


def test_a_resume_request_is_recorded_then_queued_once(world: World) -> None:
    world.mailbox(S.PAUSED)
    world.api.add(CID, EMAIL, CampaignStatus.PAUSED)

    first = world.onboarding().request_resume(EMAIL, OWNER)
    again = world.onboarding().request_resume(EMAIL, OWNER)

    assert first.state is S.RESUME_REQUESTED
    assert first.request_kind is RequestKind.RESUME
    assert again == first
    [(message, delay)] = world.queue.sent
    assert (message.event_type, message.campaign_id, message.email, delay) == (
        EventType.RESUME_REQUESTED,
        CID,
        EMAIL,
        0,
    )
    assert world.api.actions() == []  # the worker makes the call


@pytest.mark.parametrize(
    ("status", "code"),
    [
        (CampaignStatus.ACTIVE, "ALREADY_WARMING"),
        (CampaignStatus.CONNECTION_PROBLEM, "RECONNECT_REQUIRED"),
        (None, "CAMPAIGN_GONE"),
    ],
)
def test_a_resume_the_campaign_cannot_take_is_refused(
    world: World, status: CampaignStatus | None, code: str
) -> None:
    world.mailbox(S.PAUSED)
    if status is not None:
        world.api.add(CID, EMAIL, status)

    assert conflict(world, lambda: world.onboarding().request_resume(EMAIL, OWNER)).code == code
    assert world.store.mailboxes[EMAIL].state is S.PAUSED
    assert world.queue.sent == []


def test_a_resume_whose_message_is_lost_stays_recorded_for_the_reconciler(world: World) -> None:
    world.mailbox(S.PAUSED)
    world.api.add(CID, EMAIL, CampaignStatus.PAUSED)
    world.queue.fail(RuntimeError("SQS unavailable"))

    with pytest.raises(RuntimeError):
        world.onboarding().request_resume(EMAIL, OWNER)
    assert world.store.mailboxes[EMAIL].state is S.RESUME_REQUESTED


def test_listing_pages_through_the_callers_own_mailboxes(world: World) -> None:
    for n in range(3):
        world.mailbox(email=f"user{n}@contoso.com", updated_at=iso(world.clock()))
        world.clock.advance(1)
    world.mailbox(email="other@contoso.com", requested_by_principal="someone")
    service = world.onboarding()

    first = service.list_mailboxes(MailboxListQuery(limit=2), OWNER)
    assert first.next_cursor is not None
    second = service.list_mailboxes(MailboxListQuery(limit=2, cursor=first.next_cursor), OWNER)
    everyone = service.list_mailboxes(MailboxListQuery(limit=10), "admin")

    assert [m.email for m in first.mailboxes + second.mailboxes] == [
        "user2@contoso.com",
        "user1@contoso.com",
        "user0@contoso.com",
    ]
    assert second.next_cursor is None
    assert len(everyone.mailboxes) == 4
