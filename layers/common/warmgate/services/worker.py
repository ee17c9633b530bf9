"""The worker's service: verify one campaign event and start, resume, delete or leave it.

Reads the inputs of `decisions.decide`: the mailbox record of the webhook's email and the
campaign's ledger entry in one read, then the campaign from Mailivery (the webhook is only a
hint; when the campaign's email is another, that mailbox is read too). A replay of an event the
record already reflects ends at the first read (`decisions.replayed`). The decision is applied
with conditional writes: a claim (mailbox `verifying` / ledger `deleting`) is written *before*
the one vendor call, and the final state after it, so duplicates and re-ordered deliveries on
other workers find the claim or the result and make no second call; a write on a record that
changed since it was read fails, and the message is decided again. The claim also takes that
call's request-budget token (one transaction), so a message that starts a campaign costs four
DynamoDB calls: the read, the re-read's token, the claim, the result; a replay costs one.
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from datetime import datetime, timedelta

from warmgate.adapters.budget import BudgetExhausted
from warmgate.adapters.dynamodb import StaleRecord
from warmgate.adapters.mailivery import (
    Campaign,
    CampaignStatus,
    Conflict,
    MailiveryError,
    NotFound,
    RateLimited,
    ValidationFailed,
)
from warmgate.adapters.sqs import QueuedWebhook
from warmgate.domain.decisions import (
    Action,
    CampaignDecision,
    EventKind,
    Outcome,
    classify_event,
    decide,
    replayed,
)
from warmgate.domain.ledger import CampaignLedgerEntry, LedgerState
from warmgate.domain.mailboxes import (
    ExpectedMailbox,
    MailboxEvent,
    MailboxState,
    iso,
    utc_now,
)
from warmgate.domain.policies import UnexpectedCampaignPolicy
from warmgate.observability import logger
from warmgate.services.moves import save_move
from warmgate.services.ports import CampaignApi, Clock, MailboxStore
from warmgate.services.start_attempts import (
    AMBIGUOUS_ERRORS,
    RACE_RETRY_SECONDS,
    RetryLater,
    failed_attempt,
)

# The handler and the operator CLI import RetryLater from here.
__all__ = ["CampaignWorker", "RetryLater"]


@dataclass(frozen=True, slots=True)
class _Records:
    """The mailbox record of `email` and the ledger entry of `campaign_id`, as read together."""

    email: str | None
    campaign_id: str
    mailbox: ExpectedMailbox | None
    ledger: CampaignLedgerEntry | None


@dataclass(frozen=True, slots=True)
class _Situation:
    campaign_id: str
    email: str | None
    mailbox: ExpectedMailbox | None
    ledger: CampaignLedgerEntry | None
    now: datetime
    decision: CampaignDecision


class CampaignWorker:
    def __init__(
        self,
        repository: MailboxStore,
        mailivery: CampaignApi,
        *,
        policy: UnexpectedCampaignPolicy,
        claim_lease: timedelta,
        max_start_attempts: int,
        clock: Clock = utc_now,
        claims_take_tokens: bool = False,
    ) -> None:
        """`claims_take_tokens`: `repository` holds the request budget `mailivery` throttles
        on; each claim takes the token of the vendor action it precedes (one transaction), and
        that action skips the throttle."""
        self._repository = repository
        self._mailivery = mailivery
        self._prepaid = claims_take_tokens
        self._policy = policy
        self._lease = claim_lease
        self._max_start_attempts = max_start_attempts
        self._clock = clock

    def handle(self, message: QueuedWebhook) -> Outcome:
        kind = classify_event(
            message.event_type, self._mailivery.contract.connection_problem_event_markers
        )
        if kind is EventKind.OTHER:
            logger.info("event type not acted upon", extra={"event_type": message.event_type})
            return Outcome.IGNORED
        try:
            return self._handle(kind, message)
        except (RateLimited, BudgetExhausted) as exc:
            raise RetryLater(
                exc.retry_after or 60, "rate_limited", "Mailivery request budget exhausted"
            ) from exc
        except StaleRecord:
            raise RetryLater(
                RACE_RETRY_SECONDS, "conflict", "record changed concurrently"
            ) from None

    def preview(self, message: QueuedWebhook) -> CampaignDecision | None:
        """The decision `handle` would apply now, without applying it (None: no campaign)."""
        kind = classify_event(
            message.event_type, self._mailivery.contract.connection_problem_event_markers
        )
        situation = self._situation(kind, message)
        return None if situation is None else situation.decision

    def _situation(
        self, kind: EventKind, message: QueuedWebhook, hinted: _Records | None = None
    ) -> _Situation | None:
        """Everything the decision reads: the re-read campaign and our records of it (those
        `hinted` read already, if they are the campaign's)."""
        campaign_id, campaign = self._reread(message)
        if campaign_id is None:
            return None
        email = campaign.email if campaign is not None else message.email
        if hinted is not None and (hinted.email, hinted.campaign_id) == (email, campaign_id):
            mailbox, ledger = hinted.mailbox, hinted.ledger
        else:
            mailbox, ledger = self._repository.get_with_ledger(email, campaign_id)
        now = self._clock()
        decision = decide(
            kind, campaign_id, campaign, mailbox, ledger, self._policy, now, self._lease
        )
        return _Situation(campaign_id, email, mailbox, ledger, now, decision)

    def _hinted(self, message: QueuedWebhook) -> _Records | None:
        """Our records of the campaign the message names, read by its hints (None: it names
        none, and the campaign must be found by email at Mailivery first)."""
        if message.campaign_id is None:
            return None
        mailbox, ledger = self._repository.get_with_ledger(message.email, message.campaign_id)
        return _Records(message.email, message.campaign_id, mailbox, ledger)

    def _handle(self, kind: EventKind, message: QueuedWebhook) -> Outcome:
        hinted = self._hinted(message)
        if hinted is not None and replayed(message.event_type, hinted.campaign_id, hinted.mailbox):
            logger.info(
                "campaign decision",
                extra={
                    "outcome": Outcome.DUPLICATE.value,
                    "reason": "replayed event",
                    "dedup_key": message.dedup_key,
                },
            )
            return Outcome.DUPLICATE
        situation = self._situation(kind, message, hinted)
        if situation is None:
            logger.warning("no campaign for this event", extra={"event_type": message.event_type})
            return Outcome.IGNORED
        decision, mailbox = situation.decision, situation.mailbox
        logger.info(
            "campaign decision",
            extra={
                "outcome": decision.outcome.value,
                "action": decision.action.value,
                "reason": decision.reason,
                "dedup_key": message.dedup_key,
            },
        )
        if decision.outcome is Outcome.BUSY:
            raise RetryLater(self._busy_for(situation), "busy", decision.reason)
        if decision.action in (Action.START, Action.RESUME) and mailbox is not None:
            return self._warm_up(decision, situation, mailbox, message.attempt)
        if decision.action is Action.DELETE:
            return self._delete(situation)
        self._record(situation)
        return decision.outcome

    def _busy_for(self, situation: _Situation) -> float:
        """Seconds until the claim that holds this delivery back ends: what is left of an
        unknown outcome's settling time (seconds) or of a live claim's lease, else the lease."""
        mailbox = situation.mailbox
        until = mailbox.claim_held_until(self._lease) if mailbox is not None else None
        if until is None or until <= situation.now:  # a ledger entry's claim (deleting)
            return self._lease.total_seconds()
        return max(1.0, (until - situation.now).total_seconds())

    def _reread(self, message: QueuedWebhook) -> tuple[str | None, Campaign | None]:
        """The campaign as Mailivery has it now (None if gone): the webhook is only a hint."""
        if message.campaign_id is not None:
            try:
                return message.campaign_id, self._mailivery.get_campaign(message.campaign_id)
            except NotFound:
                return message.campaign_id, None
        if message.email:
            found = self._mailivery.find_campaign_by_email(message.email)
            if found is not None:
                return found.campaign_id, found
        return None, None

    def _warm_up(
        self,
        decision: CampaignDecision,
        situation: _Situation,
        mailbox: ExpectedMailbox,
        attempt: int,
    ) -> Outcome:
        """Claim the request, make its one start/resume call, record what came of it."""
        campaign_id = situation.campaign_id
        claimed = save_move(
            self._repository,
            mailbox,
            MailboxEvent.CLAIMED,
            now=self._clock(),
            reason=f"claimed: {decision.reason}",
            campaign_id=campaign_id,
            outcome_unknown=False,
            with_token=self._prepaid,
        )
        call = (
            self._mailivery.start_warmup
            if decision.action is Action.START
            else self._mailivery.resume_warmup
        )
        try:
            call(campaign_id, prepaid=self._prepaid)
        except Conflict as exc:
            if not self._is_active(campaign_id):  # "already warming" after a re-read is success
                return self._attempt_failed(claimed, exc, attempt, outcome_known=True)
        except ValidationFailed as exc:  # refused, e.g. Mailivery could not connect
            return self._attempt_failed(claimed, exc, attempt, outcome_known=True)
        except AMBIGUOUS_ERRORS as exc:  # the call may have run: keep the claim, re-read first
            return self._attempt_failed(claimed, exc, attempt, outcome_known=False)
        except (MailiveryError, BudgetExhausted):  # certainly not applied: free the request
            self._release(claimed, mailbox)
            raise
        self._repository.save(
            self._fulfilled(claimed, MailboxEvent.ACCEPTED, f"{decision.action.value} accepted"),
            read_version=claimed.version,
        )
        if decision.ledger_state is not None:  # a campaign once unexpected, now requested
            self._save_ledger(situation, decision.ledger_state, self._clock())
        return decision.outcome

    def _fulfilled(
        self, mailbox: ExpectedMailbox, event: MailboxEvent, reason: str
    ) -> ExpectedMailbox:
        """`warming`: the request is consumed, its failures forgotten."""
        return mailbox.transition(
            MailboxState.WARMING,
            event=event,
            now=self._clock(),
            reason=reason,
            last_error=None,
            start_attempts=0,
            parked=False,
            outcome_unknown=False,
        )

    def _attempt_failed(
        self, claimed: ExpectedMailbox, error: MailiveryError, attempt: int, *, outcome_known: bool
    ) -> Outcome:
        """Record a start/resume that did not (or not surely) work: retry later, or park."""
        failed = failed_attempt(
            claimed,
            error,
            attempt,
            outcome_known=outcome_known,
            max_attempts=self._max_start_attempts,
            now=self._clock(),
        )
        self._repository.save(failed.record, read_version=claimed.version)
        if failed.retry is not None:
            raise failed.retry
        logger.warning(
            "start/resume failed repeatedly: parked",
            extra={"attempts": failed.record.start_attempts},
        )
        return Outcome.START_PARKED

    def _delete(self, situation: _Situation) -> Outcome:
        claimed = self._save_ledger(
            situation, LedgerState.DELETING, self._clock(), with_token=self._prepaid
        )
        with contextlib.suppress(NotFound):  # already gone: the goal is reached
            self._mailivery.delete_campaign(situation.campaign_id, prepaid=self._prepaid)
        self._record(replace(situation, ledger=claimed, now=self._clock()))
        return situation.decision.outcome

    def _record(self, situation: _Situation) -> None:
        """Write the decision's target states (no vendor call involved, or it succeeded)."""
        decision, mailbox, now = situation.decision, situation.mailbox, situation.now
        if decision.mailbox_state is not None and mailbox is not None:
            event = decision.mailbox_event
            assert event is not None, "a decision that moves a mailbox names its event"
            moved = (
                self._fulfilled(mailbox, event, decision.reason)
                if decision.mailbox_state is MailboxState.WARMING
                else mailbox.transition(
                    decision.mailbox_state, event=event, now=now, reason=decision.reason
                )
            )
            # The campaign this state is about.
            self._repository.save(
                replace(moved, campaign_id=situation.campaign_id), read_version=mailbox.version
            )
        if decision.ledger_state is not None:
            self._save_ledger(situation, decision.ledger_state, now)

    def _save_ledger(
        self,
        situation: _Situation,
        state: LedgerState,
        now: datetime,
        *,
        with_token: bool = False,
    ) -> CampaignLedgerEntry:
        """Move the campaign's ledger entry (created on first sight) to `state`, conditionally,
        for the situation's decision."""
        ledger, reason = situation.ledger, situation.decision.reason
        entry = ledger or CampaignLedgerEntry(
            situation.campaign_id, state, situation.email, reason, iso(now), iso(now)
        )
        return self._repository.save_ledger_entry(
            entry.moved_to(state, now=now, reason=reason),
            read_version=ledger.version if ledger else None,
            with_token=with_token,
        )

    def _is_active(self, campaign_id: str) -> bool:
        try:
            return self._mailivery.get_campaign(campaign_id).status is CampaignStatus.ACTIVE
        except NotFound:
            return False

    def _release(self, claimed: ExpectedMailbox, before: ExpectedMailbox) -> None:
        """Undo our claim after a transient failure, so the retry is not blocked by our lease."""
        try:
            self._repository.save(before, read_version=claimed.version)
        except StaleRecord:
            logger.warning("claim changed before it could be released")
