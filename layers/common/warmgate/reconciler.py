"""Reconciler: what a lost webhook would strand, found from Mailivery's side and re-queued.

Mailivery documents no webhook retries, and its reference says campaigns that "never start
warming up" are almost always a missed start call. So, on a schedule:
1. expectations past their expiry become `expired` (a late webhook is then unexpected);
2. pending ms-graph campaigns whose email has a live expectation not yet handled are queued
   for the worker with the webhook's own message shape: the worker stays the one place that
   decides, with the same re-read, claims and idempotency;
3. resume requests still waiting after RESUME_REQUEUE_AFTER (their message was lost, or the
   API could not send it) are queued again.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta

from warmgate.decisions import RESUME_REQUEST_EVENT_TYPE
from warmgate.mailboxes import ExpectedMailbox, MailboxEvent, MailboxState, iso, parse_iso, utc_now
from warmgate.mailivery import CampaignStatus, MailiveryClient
from warmgate.observability import logger
from warmgate.repository import MailboxRepository, StaleRecord
from warmgate.work_queue import QueuedWebhook, WorkQueue

RECONCILED_EVENT_TYPE = "campaign.pending"  # what the missed webhook would have said
RESUME_REQUEUE_AFTER = timedelta(minutes=5)  # far above a queued resume's normal latency


@dataclass(frozen=True, slots=True)
class ReconcileReport:
    expired: int = 0
    pending_seen: int = 0
    enqueued: int = 0
    unexpected_pending: int = 0
    resumes_requeued: int = 0


class Reconciler:
    def __init__(
        self,
        repository: MailboxRepository,
        mailivery: MailiveryClient,
        queue: WorkQueue,
        *,
        clock: Callable[[], datetime] = utc_now,
    ) -> None:
        self._repository = repository
        self._mailivery = mailivery
        self._queue = queue
        self._clock = clock

    def run(self) -> ReconcileReport:
        now = self._clock()
        awaiting, expired = self._expire_stale(now)
        resumes = self._requeue_resume_requests(now)
        pending_seen = enqueued = unexpected = 0
        # The status filter is [unknown] to Mailivery's API: filter again on our side.
        for campaign in self._mailivery.iter_campaigns(status=CampaignStatus.PENDING.value):
            if campaign.status is not CampaignStatus.PENDING or not campaign.is_ms_graph:
                continue
            pending_seen += 1
            mailbox = awaiting.get(campaign.email or "")
            if mailbox is None:
                unexpected += 1
                continue
            self._queue.send(
                QueuedWebhook(
                    event_type=RECONCILED_EVENT_TYPE,
                    campaign_id=campaign.campaign_id,
                    email=campaign.email,
                    dedup_key=f"{RECONCILED_EVENT_TYPE}:{campaign.campaign_id}",
                    received_at=iso(now),
                    request_id=f"reconciler-{uuid.uuid4()}",
                    payload={"source": "reconciler", "campaign": campaign.raw},
                )
            )
            enqueued += 1
            logger.info(
                "queued a pending campaign no webhook delivered",
                extra={"campaign_id": campaign.campaign_id},
            )
        return ReconcileReport(expired, pending_seen, enqueued, unexpected, resumes)

    def _requeue_resume_requests(self, now: datetime) -> int:
        requeued = 0
        for mailbox in self._repository.scan_mailboxes((MailboxState.RESUME_REQUESTED,)):
            if parse_iso(mailbox.updated_at) + RESUME_REQUEUE_AFTER > now:
                continue
            self._queue.send(
                QueuedWebhook.for_campaign(
                    RESUME_REQUEST_EVENT_TYPE, mailbox.campaign_id, mailbox.email, now=now
                )
            )
            requeued += 1
        return requeued

    def _expire_stale(self, now: datetime) -> tuple[dict[str, ExpectedMailbox], int]:
        """Expire what is past its expiry; return the live expectations still awaiting a start."""
        awaiting: dict[str, ExpectedMailbox] = {}
        expired = 0
        states = (MailboxState.CONSENT_REQUESTED, MailboxState.VERIFYING)
        for mailbox in self._repository.scan_mailboxes(states):
            if mailbox.state is MailboxState.CONSENT_REQUESTED and mailbox.is_expired(now):
                try:
                    self._repository.save(
                        mailbox.transition(
                            MailboxState.EXPIRED,
                            event=MailboxEvent.EXPIRED,
                            now=now,
                            reason="no consent before expiry",
                        ),
                        read_version=mailbox.version,
                    )
                    expired += 1
                except StaleRecord:
                    pass  # changed meanwhile (a webhook was handled): the next run sees it
                continue
            awaiting[mailbox.email] = mailbox
        return awaiting, expired
