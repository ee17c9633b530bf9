"""Reconciler on in-memory fakes: expiry, stranded campaigns, stale requests, its cursor."""

from __future__ import annotations

from datetime import timedelta

import pytest

from tests.unit.services.world import CID, EMAIL, World
from warmgate.adapters.mailivery import RateLimited, VendorContract
from warmgate.domain.mailboxes import MailboxState, RequestKind, iso
from warmgate.domain.webhooks import EventType
from warmgate.services.reconciler import RECONCILED_EVENT_TYPE, RESUME_REQUEUE_AFTER

S = MailboxState


@pytest.fixture
def world() -> World:
    return World()


def queued(world: World) -> list[tuple[str, str | None, str | None]]:
    return [(m.event_type, m.campaign_id, m.email) for m, _ in world.queue.sent]


def test_an_expectation_past_its_expiry_expires(world: World) -> None:
    world.mailbox(expires_at=iso(world.clock() - timedelta(seconds=1)))

    report = world.reconciler().run()

    assert report.expired == 1
    assert world.store.mailboxes[EMAIL].state is S.EXPIRED


def test_a_pending_campaign_no_webhook_announced_is_queued_and_others_counted(
    world: World,
) -> None:
    world.mailbox()
    world.api.add(CID, EMAIL)
    world.api.add("9", "stranger@contoso.com")
    world.api.add("10", "ada2@contoso.com", imap_type="gmail")  # not ours to look at

    report = world.reconciler().run()

    assert queued(world) == [(RECONCILED_EVENT_TYPE, CID, EMAIL)]
    assert (report.pending_seen, report.enqueued, report.unexpected_pending) == (2, 1, 1)
    assert report.pass_completed
    assert world.store.cursor.next_page == 1


@pytest.mark.parametrize(
    ("age", "requeued"), [(RESUME_REQUEUE_AFTER, 1), (RESUME_REQUEUE_AFTER / 2, 0)]
)
def test_a_resume_request_waiting_too_long_is_queued_again(
    world: World, age: timedelta, requeued: int
) -> None:
    world.mailbox(
        S.RESUME_REQUESTED,
        request_kind=RequestKind.RESUME,
        updated_at=iso(world.clock() - age),
    )

    report = world.reconciler().run()

    assert report.resumes_requeued == requeued
    assert queued(world) == [(EventType.RESUME_REQUESTED, CID, EMAIL)] * requeued


def test_a_reconnect_whose_webhook_was_lost_is_queued_again(world: World) -> None:
    world.reconnect(updated_at=iso(world.clock() - RESUME_REQUEUE_AFTER))

    report = world.reconciler().run()

    assert report.reconnects_requeued == 1
    assert queued(world) == [(RECONCILED_EVENT_TYPE, CID, EMAIL)]


def test_mailivery_saying_not_now_stops_the_run_with_its_cursor_kept(world: World) -> None:
    world.mailbox()
    world.api.fail("list", RateLimited("slow down", request_id="r", retry_after=120))

    report = world.reconciler().run()

    assert report.interrupted is not None
    assert "RateLimited" in report.interrupted
    assert world.queue.sent == []
    assert world.store.cursor.version == 0  # never written


def test_a_run_out_of_time_continues_next_run_from_its_cursor(world: World) -> None:
    world.api.contract = VendorContract(per_page=1)
    for n in range(3):
        email = f"user{n}@contoso.com"
        world.mailbox(email=email)
        world.api.add(str(n), email)
    seconds_left = iter([60.0, 10.0])  # room for one page of 30 s, then not

    first = world.reconciler(page_seconds=30).run(time_left=lambda: next(seconds_left))
    stopped_at = world.store.cursor.next_page
    second = world.reconciler(page_seconds=30).run()

    assert (first.pages_read, first.pass_completed, stopped_at) == (1, False, 2)
    assert first.interrupted == "10.0 s left, a page may need more"
    assert (second.pages_read, second.pass_completed, second.interrupted) == (2, True, None)
    assert world.store.cursor.next_page == 1
    assert [m.campaign_id for m, _ in world.queue.sent] == ["0", "1", "2"]
