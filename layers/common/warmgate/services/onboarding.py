"""Onboarding: the integrator's requests. Each one backs at most one start or resume.

- `request_consent` (POST /mailboxes): record the expected mailbox, then ask Mailivery for the
  consent URL, exactly once. The record is written (conditionally) *before* the vendor call, so
  a consent link can never exist without the expectation that later allows the mailbox to warm
  up; every failure after that write leaves the record in a state that allows a retry. For a
  mailbox that warmed before (warming, paused, connection problem, parked) it is a reconnect:
  the campaign is re-read first, and the new request is bound to it (resume, never start).
- `request_resume` (POST /mailboxes/{email}/resume): resume a paused campaign without a new
  consent; recorded as `resume_requested` and queued for the worker, which makes the call.
- `withdraw` (DELETE /mailboxes/{email}): end an open request; waits while a claim is held.
- `list_mailboxes` (GET /mailboxes): the caller's mailboxes (an admin's: all), page by page.
"""

from __future__ import annotations

import random
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from warmgate.adapters.budget import BudgetExhausted
from warmgate.adapters.dynamodb import StaleRecord
from warmgate.adapters.mailbox_items import LIST_INDEX_KEYS, NO_PRINCIPAL, is_list_key
from warmgate.adapters.mailivery import (
    Campaign,
    CampaignStatus,
    ConsentRequest,
    MailiveryError,
    NotFound,
)
from warmgate.adapters.sqs import QueuedWebhook
from warmgate.domain.emails import normalize_email
from warmgate.domain.mailboxes import (
    ExpectedMailbox,
    LastError,
    MailboxEvent,
    MailboxState,
    RequestKind,
    iso,
    utc_now,
)
from warmgate.domain.webhooks import EventType
from warmgate.observability import logger
from warmgate.services.mailbox_requests import (
    FRESH_REQUEST,
    MailboxListing,
    MailboxListQuery,
    MailboxNotFound,
    MailboxRequest,
    NotOwner,
    OnboardingConflict,
    claim_held,
    concurrent_update,
    describe_state,
    new_expectation,
    require_resumable,
)
from warmgate.services.moves import save_move
from warmgate.services.page_cursor import InvalidCursor, decode_cursor, encode_cursor
from warmgate.services.ports import CampaignApi, Clock, MailboxStore, MessageQueue

# A record written before the vendor call but never completed (the function crashed or timed
# out mid-call) stops blocking new requests after this long: above the function's 30 s timeout.
IN_FLIGHT_ABANDONED_AFTER = timedelta(seconds=60)
CLAIM_ATTEMPTS = 3  # optimistic-lock retries when two writers race on one email
SAVE_LINK_ATTEMPTS = 4  # storing a minted consent link: a few jittered tries, ~3 s at most
SAVE_LINK_BACKOFF_SECONDS = 0.5


@dataclass(frozen=True, slots=True)
class ConsentOutcome:
    mailbox: ExpectedMailbox
    created: bool  # False: a replay answered from the stored record, no vendor call
    saved: bool = True  # False: the link could not be stored (answered anyway)


class OnboardingService:
    def __init__(
        self,
        repository: MailboxStore,
        mailivery: CampaignApi,
        queue: MessageQueue,
        *,
        expectation_ttl: timedelta,
        claim_lease: timedelta,
        admin_principals: frozenset[str] = frozenset(),
        clock: Clock = utc_now,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._repository = repository
        self._mailivery = mailivery
        self._queue = queue
        self._ttl = expectation_ttl
        self._lease = claim_lease
        self._admins = admin_principals
        self._clock = clock
        self._sleep = sleep

    def request_consent(self, request: MailboxRequest, principal: str | None) -> ConsentOutcome:
        claimed = self._claim(request, principal)
        if isinstance(claimed, ConsentOutcome):
            return claimed
        try:
            link = self._mailivery.request_ms_graph_consent(
                ConsentRequest(
                    email=request.email,
                    first_name=request.first_name,
                    last_name=request.last_name,
                    email_per_day=request.email_per_day,
                    response_rate=request.response_rate,
                    tags=request.tags,
                )
            )
        except MailiveryError as exc:
            self._record_failure(
                claimed, exc.code or type(exc).__name__, exc.message, exc.request_id
            )
            raise
        except BudgetExhausted as exc:  # no request was sent: our shared budget is used up
            self._record_failure(claimed, "BUDGET_EXHAUSTED", str(exc), None)
            raise
        except Exception as exc:
            # Ours, not Mailivery's (the API key secret or the budget table unavailable, a bug):
            # no link reached anyone, so a retry may ask at once. Only a process that died
            # mid-call leaves the record in flight (IN_FLIGHT_ABANDONED_AFTER).
            self._record_failure(claimed, type(exc).__name__, "warmgate failed: see its logs", None)
            raise
        return self._keep_link(claimed, link.url)

    def _keep_link(self, claimed: ExpectedMailbox, url: str) -> ConsentOutcome:
        """Store the new link with its record; the caller gets the link even if that fails.

        Mailivery has minted the link: it must reach the integrator, and a retry must not mint a
        second one. The save is retried (jittered) on anything but a conflict; if it still
        fails, the answer carries the URL anyway (saved=False: logged, counted, alarmed). The
        record then looks in flight, so a replay within IN_FLIGHT_ABANDONED_AFTER gets 409 with
        Retry-After, not a second ms-graph call.
        """
        with_link = replace(claimed, consent_url=url)
        for attempt in range(1, SAVE_LINK_ATTEMPTS + 1):
            try:
                stored = self._repository.save(with_link, read_version=claimed.version)
            except StaleRecord:
                current = self._repository.get(claimed.email)
                if (
                    current is not None
                    and current.consent_url == url  # an earlier try was saved, its answer lost
                    and current.has_live_link(self._clock())
                ):
                    return ConsentOutcome(current, created=True)
                # Withdrawn (DELETE) while Mailivery was minting the link: the withdrawal wins,
                # and a consent through this link will find no live expectation.
                raise OnboardingConflict(
                    "WITHDRAWN_DURING_REQUEST",
                    "the expectation was changed while the consent link was being requested",
                ) from None
            except Exception:
                logger.warning("saving the consent link failed", extra={"attempt": attempt})
                if attempt < SAVE_LINK_ATTEMPTS:
                    self._sleep(random.uniform(0.5, 1.5) * SAVE_LINK_BACKOFF_SECONDS * attempt)  # noqa: S311 - jitter
                continue
            logger.info("consent link issued", extra={"mailbox": stored.email})
            return ConsentOutcome(stored, created=True)
        logger.exception("consent link answered but not saved", extra={"mailbox": claimed.email})
        return ConsentOutcome(with_link, created=True, saved=False)

    def get(self, email: str) -> ExpectedMailbox:
        record = self._repository.get(normalize_email(email))
        if record is None:
            raise MailboxNotFound(email)
        return record

    def withdraw(self, email: str, principal: str | None) -> ExpectedMailbox:
        for _ in range(CLAIM_ATTEMPTS):
            record = self.get(email)
            self._require_owner(record, principal, "withdraw")
            now = self._clock()
            if record.state is MailboxState.WITHDRAWN:
                return record  # a retry after a lost answer: answered as the first withdraw was
            if record.state is MailboxState.VERIFYING:
                raise claim_held(record, now, self._lease)
            withdrawable = record.state in (
                MailboxState.RESUME_REQUESTED,
                MailboxState.START_FAILED,
            ) or (record.state is MailboxState.CONSENT_REQUESTED and not record.is_expired(now))
            if not withdrawable:
                raise OnboardingConflict(
                    "NOT_WITHDRAWABLE",
                    f"mailbox is {describe_state(record, now)}: "
                    "only an open request can be withdrawn",
                )
            try:
                return save_move(
                    self._repository,
                    record,
                    MailboxEvent.WITHDRAWN,
                    now=now,
                    reason="withdrawn by API",
                )
            except StaleRecord:
                continue
        raise concurrent_update()

    def request_resume(self, email: str, principal: str | None) -> ExpectedMailbox:
        """Record a resume request for a paused campaign and queue it for the worker."""
        for _ in range(CLAIM_ATTEMPTS):
            record = self.get(email)
            self._require_owner(record, principal, "resume")
            if record.state is MailboxState.RESUME_REQUESTED:
                return record  # the same request again: already queued
            if not record.can_reconnect() or record.campaign_id is None:
                raise OnboardingConflict(
                    "NOT_PAUSED",
                    f"mailbox is {describe_state(record, self._clock())}: nothing to resume",
                )
            require_resumable(self._reread(record.campaign_id))
            now = self._clock()
            try:
                stored = save_move(
                    self._repository,
                    record,
                    MailboxEvent.RESUME_REQUESTED,
                    now=now,
                    reason="resume requested by API",
                    request_kind=RequestKind.RESUME,
                    requested_by_principal=principal,
                    requested_at=iso(now),
                    **FRESH_REQUEST,
                )
            except StaleRecord:
                continue
            # If this send fails the record still says resume_requested: the reconciler
            # re-queues every such mailbox on its next run, so the request is not lost.
            self._queue.send(
                QueuedWebhook.for_campaign(
                    EventType.RESUME_REQUESTED, stored.campaign_id, stored.email, now=now
                )
            )
            logger.info("resume requested", extra={"mailbox": stored.email})
            return stored
        raise concurrent_update()

    def list_mailboxes(self, query: MailboxListQuery, principal: str | None) -> MailboxListing:
        """The caller's own mailboxes (by IAM principal), or every one for an admin principal,
        newest change first. A cursor from another caller's listing is refused."""
        owner: str | None = principal or NO_PRINCIPAL
        if principal is not None and principal in self._admins:
            owner = None
        start = None
        if query.cursor is not None:
            start = decode_cursor(query.cursor, LIST_INDEX_KEYS)
            if not is_list_key(start, owner):
                raise InvalidCursor("issued for another listing")
        page = self._repository.list_mailboxes(
            owner=owner,
            states=query.state,
            requested_by=query.requested_by,
            limit=query.limit,
            start_key=start,
        )
        return MailboxListing(
            page.mailboxes, encode_cursor(page.next_key) if page.next_key else None
        )

    # --- steps -------------------------------------------------------------------------------

    def _claim(
        self, request: MailboxRequest, principal: str | None
    ) -> ExpectedMailbox | ConsentOutcome:
        """Write the expectation (state consent_requested, no URL yet), or answer a replay."""
        fingerprint = request.fingerprint()
        for _ in range(CLAIM_ATTEMPTS):
            now = self._clock()
            existing = self._repository.get(request.email)
            if existing is not None:
                replay = self._replay_or_refuse(existing, request, principal, fingerprint, now)
                if replay is not None:
                    return replay
            bound_to = None
            if existing is not None and existing.reconnects_on_request():
                bound_to = self._reconnect_target(existing)
            claim = new_expectation(
                existing, request, principal, fingerprint, now, bound_to, self._ttl
            )
            try:
                return self._repository.save(
                    claim, read_version=existing.version if existing else None
                )
            except StaleRecord:
                continue  # a concurrent request wrote first: decide again on its record
        raise concurrent_update()

    def _replay_or_refuse(
        self,
        existing: ExpectedMailbox,
        request: MailboxRequest,
        principal: str | None,
        fingerprint: str,
        now: datetime,
    ) -> ConsentOutcome | None:
        live = existing.has_live_link(now) or existing.is_in_flight(now, IN_FLIGHT_ABANDONED_AFTER)
        if (live or existing.reconnects_on_request()) and not self._is_owner(existing, principal):
            raise OnboardingConflict(
                "REQUESTED_BY_ANOTHER",
                "another IAM principal made this mailbox's request"
                + (" and holds a live consent link" if live else " and owns its campaign"),
            )
        if live:
            if existing.request_fingerprint != fingerprint:
                raise OnboardingConflict(
                    "REQUEST_MISMATCH",
                    "a live consent link exists for this mailbox with other details; "
                    "withdraw it (DELETE) before requesting again",
                )
            if existing.consent_url is None:
                raise OnboardingConflict(
                    "CONSENT_REQUEST_IN_PROGRESS",
                    "the same request is being processed; retry shortly for the same link",
                    retry_after=2,
                )
            return ConsentOutcome(existing, created=False)
        if existing.state is MailboxState.VERIFYING:
            raise claim_held(existing, now, self._lease)
        reconnect = existing.can_reconnect()
        if not (reconnect or existing.can_be_requested_again(now, IN_FLIGHT_ABANDONED_AFTER)):
            raise OnboardingConflict(
                "ALREADY_ONBOARDED", f"mailbox is {describe_state(existing, now)}"
            )
        return None

    def _reconnect_target(self, existing: ExpectedMailbox) -> str | None:
        """The campaign a reconnect is bound to (None: it is gone, onboard afresh).

        Raises ALREADY_WARMING when Mailivery has it active: nothing to reconnect.
        """
        if existing.campaign_id is None:
            return None
        campaign = self._reread(existing.campaign_id)
        if campaign is None:
            return None
        if campaign.status is CampaignStatus.ACTIVE:
            raise OnboardingConflict(
                "ALREADY_WARMING",
                f"campaign {campaign.campaign_id} is warming at Mailivery: nothing to reconnect",
            )
        return campaign.campaign_id

    def _reread(self, campaign_id: str) -> Campaign | None:
        try:
            return self._mailivery.get_campaign(campaign_id)
        except NotFound:
            return None

    def _is_owner(self, record: ExpectedMailbox, principal: str | None) -> bool:
        """The principal that made the record's request (or an admin) may act on it. A record
        without a principal (made where no IAM identity was seen) belongs to everyone."""
        owner = record.requested_by_principal
        return owner is None or principal == owner or principal in self._admins

    def _require_owner(self, record: ExpectedMailbox, principal: str | None, what: str) -> None:
        if not self._is_owner(record, principal):
            raise NotOwner(
                f"only the IAM principal that requested this mailbox, or an admin principal, "
                f"may {what} it"
            )

    def _record_failure(
        self, claimed: ExpectedMailbox, code: str, message: str, request_id: str | None
    ) -> None:
        """Leave the record in a state that says what happened and allows a new request."""
        now = self._clock()
        failed = claimed.transition(
            MailboxState.REQUEST_FAILED,
            event=MailboxEvent.REQUEST_FAILED,
            now=now,
            reason=f"consent request failed: {code}",
            last_error=LastError(code=code, message=message, at=iso(now), request_id=request_id),
        )
        try:
            self._repository.save(failed, read_version=claimed.version)
        except StaleRecord:
            logger.warning("record changed during failed consent request", extra={"code": code})
