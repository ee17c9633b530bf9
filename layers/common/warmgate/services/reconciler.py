"""Reconciler: what a lost webhook would strand, found from Mailivery's side and re-queued.

Mailivery documents no webhook retries, and its reference says campaigns that "never start
warming up" are almost always a missed start call. So, on a schedule, one sweep after another:
1. expectations past their expiry become `expired` (a late webhook is then unexpected);
2. pending ms-graph campaigns whose email has a live expectation not yet handled are queued
   for the worker with the webhook's own message shape: the worker stays the one place that
   decides, with the same re-read, claims and idempotency;
3. requests bound to a campaign still waiting after RESUME_REQUEUE_AFTER are queued again:
   a resume request (its message was lost, or the API could not send it) and a reconnect
   (Mailivery's webhook about the reconnected campaign was lost; the campaign is paused or
   disconnected, not pending, so sweep 2 cannot find it). The worker re-reads the campaign:
   one still disconnected keeps waiting.

Sweep 2 reads Mailivery's campaign list page by page and keeps its place in a cursor item
(`reconciler#cursor`, conditional writes), saved after each page. When Mailivery or the shared
request budget says "not now" (a 429 or a Retry-After too long to sleep through, 5xx or
timeouts after the client's retries, the budget used up), or too little of the invocation is
left for another page, the run stops cleanly and reports why; the next run continues at the
saved page. Anything else (a bug, an answer we cannot read, AWS failing) is raised: the
function's Errors alarm. A crash between queueing a page and saving the cursor queues that
page again next run, which the worker absorbs as duplicates.

The list is filtered on `pending`, so a campaign leaving that state between two runs shifts
the later ones one place forward and a resumed pass may miss one; it is found by the next
pass, which starts at page 1 once the last page has been read.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from warmgate.adapters.budget import BudgetExhausted
from warmgate.adapters.dynamodb import ReconcilerCursor, StaleRecord
from warmgate.adapters.mailivery import TRANSIENT_ERRORS, Campaign, CampaignStatus
from warmgate.adapters.sqs import QueuedWebhook
from warmgate.domain.mailboxes import (
    ExpectedMailbox,
    MailboxEvent,
    MailboxState,
    iso,
    parse_iso,
    utc_now,
)
from warmgate.domain.webhooks import EventType
from warmgate.observability import logger
from warmgate.services.moves import save_move
from warmgate.services.ports import CampaignApi, Clock, MailboxStore, MessageQueue

RECONCILED_EVENT_TYPE = EventType.PENDING  # what the missed webhook would have said
# Mailivery or our budget asking us to come back later: stop here, continue next run.
NOT_NOW: tuple[type[Exception], ...] = (BudgetExhausted, *TRANSIENT_ERRORS)
MAX_PAGES_PER_RUN = 1000  # a list whose metadata always says "more" still ends
RESUME_REQUEUE_AFTER = timedelta(minutes=5)  # far above a queued resume's normal latency


@dataclass(slots=True)
class ReconcileReport:
    """What one run did; each sweep adds its own counts."""

    expired: int = 0
    pending_seen: int = 0
    enqueued: int = 0
    unexpected_pending: int = 0
    pages_read: int = 0
    resumes_requeued: int = 0
    reconnects_requeued: int = 0
    pass_completed: bool = False  # this run read the last page: the next starts at page 1
    interrupted: str | None = None  # why this run stopped early, its cursor saved


def _unbounded() -> float:
    return math.inf


class Reconciler:
    def __init__(
        self,
        repository: MailboxStore,
        mailivery: CampaignApi,
        queue: MessageQueue,
        *,
        page_seconds: float = 0.0,
        clock: Clock = utc_now,
    ) -> None:
        self._repository = repository
        self._mailivery = mailivery
        self._queue = queue
        self._page_seconds = page_seconds  # the worst case of one page (wiring)
        self._clock = clock

    def run(self, time_left: Callable[[], float] = _unbounded) -> ReconcileReport:
        """One run; `time_left` is the invocation's remaining time in seconds."""
        report = ReconcileReport()
        now = self._clock()
        awaiting = self._sweep_requests(now, report)
        self._requeue_stranded(awaiting, now, time_left, report)
        return report

    # --- sweeps 1 and 3: open requests, from the table alone -------------------------------

    def _sweep_requests(self, now: datetime, report: ReconcileReport) -> dict[str, ExpectedMailbox]:
        """Expire what is past its expiry, re-queue stale resume requests; return the live
        onboarding requests still awaiting a start, by email.

        A reconnect (a request bound to its campaign) is not awaited here: it waits for the
        owner's consent, which Mailivery reports with a webhook, not for a pending campaign.
        """
        awaiting: dict[str, ExpectedMailbox] = {}
        states = (
            MailboxState.CONSENT_REQUESTED,
            MailboxState.VERIFYING,
            MailboxState.RESUME_REQUESTED,
        )
        for mailbox in self._repository.scan_mailboxes(states):
            if mailbox.state is MailboxState.RESUME_REQUESTED:
                self._requeue_resume_request(mailbox, now, report)
                continue
            if mailbox.state is MailboxState.CONSENT_REQUESTED and mailbox.is_expired(now):
                try:
                    save_move(
                        self._repository,
                        mailbox,
                        MailboxEvent.EXPIRED,
                        now=now,
                        reason="no consent before expiry",
                    )
                    report.expired += 1
                except StaleRecord:
                    pass  # changed meanwhile (a webhook was handled): the next run sees it
                continue
            if mailbox.state is MailboxState.CONSENT_REQUESTED and mailbox.is_bound_request():
                self._requeue_reconnect(mailbox, now, report)
                continue
            awaiting[mailbox.email] = mailbox
        return awaiting

    def _requeue_resume_request(
        self, mailbox: ExpectedMailbox, now: datetime, report: ReconcileReport
    ) -> None:
        """A resume request whose message went missing (or was never sent) is queued again."""
        if parse_iso(mailbox.updated_at) + RESUME_REQUEUE_AFTER > now:
            return
        self._queue.send(
            QueuedWebhook.for_campaign(
                EventType.RESUME_REQUESTED, mailbox.campaign_id, mailbox.email, now=now
            )
        )
        report.resumes_requeued += 1

    def _requeue_reconnect(
        self, mailbox: ExpectedMailbox, now: datetime, report: ReconcileReport
    ) -> None:
        """A reconnect whose webhook went missing: after the owner's consent Mailivery reports
        the campaign once, and it is paused or disconnected, never pending, so sweep 2 cannot
        find it. The worker re-reads: one still disconnected keeps waiting, a paused one is
        resumed. A mailbox that never warmed is left to the owner's consent: its campaign is
        pending, and starting it before the reconnect took could spend the request's attempts."""
        if not mailbox.ever_warmed() or parse_iso(mailbox.updated_at) + RESUME_REQUEUE_AFTER > now:
            return
        self._queue.send(
            QueuedWebhook.for_campaign(
                RECONCILED_EVENT_TYPE,
                mailbox.campaign_id,
                mailbox.email,
                now=now,
                details={"reconciled": True, "request": "reconnect"},
            )
        )
        report.reconnects_requeued += 1

    # --- sweep 2: pending campaigns no webhook announced -----------------------------------

    def _requeue_stranded(
        self,
        awaiting: dict[str, ExpectedMailbox],
        now: datetime,
        time_left: Callable[[], float],
        report: ReconcileReport,
    ) -> None:
        cursor = self._repository.get_reconciler_cursor()
        if cursor.next_page == 1:
            cursor = replace(cursor, pass_started_at=iso(now))
        for _ in range(MAX_PAGES_PER_RUN):
            left = time_left()
            if left < self._page_seconds:
                self._stop(report, cursor, f"{left:.1f} s left, a page may need more")
                return
            try:
                page = self._mailivery.list_campaigns(
                    page=cursor.next_page, status=CampaignStatus.PENDING.value
                )
            except NOT_NOW as exc:
                self._stop(report, cursor, f"{type(exc).__name__}: {exc}")
                return
            report.pages_read += 1
            for campaign in page.campaigns:
                self._requeue_if_stranded(campaign, awaiting, now, report)
            advanced = replace(
                cursor, next_page=page.page + 1 if page.has_more else 1, updated_at=iso(now)
            )
            try:
                cursor = self._repository.save_reconciler_cursor(advanced)
            except StaleRecord:
                self._stop(report, cursor, "another run moved the cursor meanwhile")
                return
            if not page.has_more:
                report.pass_completed = True
                logger.info("reconciled every page", extra={"since": cursor.pass_started_at})
                return
        self._stop(report, cursor, f"read {MAX_PAGES_PER_RUN} pages in one run")

    def _requeue_if_stranded(
        self,
        campaign: Campaign,
        awaiting: dict[str, ExpectedMailbox],
        now: datetime,
        report: ReconcileReport,
    ) -> None:
        # The status filter is [unknown] to Mailivery's API: filter again on our side.
        if campaign.status is not CampaignStatus.PENDING or not campaign.is_ms_graph:
            return
        report.pending_seen += 1
        if (campaign.email or "") not in awaiting:
            report.unexpected_pending += 1
            return
        # Only what identifies the campaign: the worker re-reads the rest, and vendor data of
        # unbounded size must not decide whether the message fits in SQS.
        self._queue.send(
            QueuedWebhook.for_campaign(
                RECONCILED_EVENT_TYPE,
                campaign.campaign_id,
                campaign.email,
                now=now,
                details={"reconciled": True, "status": (campaign.raw_status or "")[:64]},
            )
        )
        report.enqueued += 1
        logger.info(
            "queued a pending campaign no webhook delivered",
            extra={"campaign_id": campaign.campaign_id},
        )

    @staticmethod
    def _stop(report: ReconcileReport, cursor: ReconcilerCursor, reason: str) -> None:
        report.interrupted = reason
        logger.warning(
            "reconciler stopped early: the next run continues from its cursor",
            extra={"reason": reason, "next_page": cursor.next_page},
        )
