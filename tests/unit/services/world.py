"""One world of in-memory fakes (tests/fakes.py) and the records the service tests start from."""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any

from tests.fakes import FakeBudget, FakeCampaignApi, FakeClock, FakeMailboxStore, FakeQueue
from warmgate.adapters.sqs import QueuedWebhook
from warmgate.domain.ledger import CampaignLedgerEntry, LedgerState
from warmgate.domain.mailboxes import (
    ExpectedMailbox,
    MailboxState,
    RequestKind,
    Transition,
    iso,
)
from warmgate.domain.policies import UnexpectedCampaignPolicy
from warmgate.services.onboarding import OnboardingService
from warmgate.services.reconciler import Reconciler
from warmgate.services.worker import CampaignWorker

EMAIL = "ada@contoso.com"
CID = "4711"
LEASE = timedelta(seconds=90)
TTL = timedelta(hours=24)
MAX_START_ATTEMPTS = 5
OWNER = "arn:aws:iam::123456789012:role/integrator"
LINK = "https://login.microsoftonline.com/x?client_id=a&state=b"


@dataclass
class World:
    clock: FakeClock = field(default_factory=FakeClock)
    budget: FakeBudget = field(default_factory=FakeBudget)
    policy: UnexpectedCampaignPolicy = UnexpectedCampaignPolicy.LEAVE
    store: FakeMailboxStore = field(init=False)
    api: FakeCampaignApi = field(init=False)
    queue: FakeQueue = field(default_factory=FakeQueue)

    def __post_init__(self) -> None:
        # One budget behind the store's claims and the client's throttle, as in production.
        self.store = FakeMailboxStore(self.budget)
        self.api = FakeCampaignApi(self.budget)

    def worker(self) -> CampaignWorker:
        return CampaignWorker(
            self.store,
            self.api,
            policy=self.policy,
            claim_lease=LEASE,
            max_start_attempts=MAX_START_ATTEMPTS,
            clock=self.clock,
            claims_take_tokens=True,
        )

    def onboarding(self) -> OnboardingService:
        return OnboardingService(
            self.store,
            self.api,
            self.queue,
            expectation_ttl=TTL,
            claim_lease=LEASE,
            admin_principals=frozenset({"admin"}),
            clock=self.clock,
            sleep=lambda _: None,
        )

    def reconciler(self, page_seconds: float = 0.0) -> Reconciler:
        return Reconciler(
            self.store, self.api, self.queue, page_seconds=page_seconds, clock=self.clock
        )

    # --- records ---

    def mailbox(
        self, state: MailboxState = MailboxState.CONSENT_REQUESTED, **changes: Any
    ) -> ExpectedMailbox:
        """A stored record of EMAIL in `state`, requested an hour ago; a state past consent
        tracks CID and has warmed once."""
        now = self.clock()
        history = [Transition(iso(now - timedelta(hours=2)), None, state, "requested")]
        if state is not MailboxState.CONSENT_REQUESTED:
            history.insert(
                0,
                Transition(iso(now - timedelta(hours=3)), None, MailboxState.WARMING, "warmed"),
            )
        record = ExpectedMailbox(
            email=EMAIL,
            state=state,
            first_name="Ada",
            requested_by="user-1",
            requested_by_principal=OWNER,
            requested_at=iso(now - timedelta(hours=1)),
            expires_at=iso(now + timedelta(hours=23)),
            updated_at=iso(now - timedelta(minutes=30)),
            consent_url=LINK if state is MailboxState.CONSENT_REQUESTED else None,
            campaign_id=None if state is MailboxState.CONSENT_REQUESTED else CID,
            request_kind=RequestKind.ONBOARD,
            history=tuple(history),
        )
        return self.store.put(replace(record, **changes))

    def reconnect(self, **changes: Any) -> ExpectedMailbox:
        """An open reconnect of a mailbox that warmed with CID."""
        return self.mailbox(
            MailboxState.CONSENT_REQUESTED,
            request_kind=RequestKind.RECONNECT,
            campaign_id=CID,
            history=(
                Transition(iso(self.clock() - timedelta(days=3)), None, MailboxState.WARMING, "x"),
            ),
            **changes,
        )

    def ledger_entry(
        self, state: LedgerState, *, age: timedelta = timedelta(hours=2), email: str | None = EMAIL
    ) -> CampaignLedgerEntry:
        at = iso(self.clock() - age)
        entry = CampaignLedgerEntry(CID, state, email, "seen before", at, at, version=1)
        self.store.ledger[CID] = entry
        return entry

    def message(
        self,
        event_type: str = "campaign.pending",
        campaign_id: str | None = CID,
        email: str | None = EMAIL,
        *,
        attempt: int = 0,
    ) -> QueuedWebhook:
        message = QueuedWebhook.for_campaign(event_type, campaign_id, email, now=self.clock())
        return replace(message, attempt=attempt)
