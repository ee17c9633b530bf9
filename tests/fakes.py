"""In-memory implementations of the services' ports (warmgate.services.ports), for unit tests.

Faithful where the services rely on it: every write is conditional on the version read
(StaleRecord otherwise, nothing written), a write `with_token` takes a request-budget token in
the same "transaction" (BudgetExhausted: neither), the campaign API moves campaigns through
Mailivery's statuses and raises its typed errors (a scripted failure may still have applied
the call: an unknown outcome), and the queue records what was sent and with which delay.
No moto, no sockets: a service test runs in milliseconds.
"""

from __future__ import annotations

from collections import defaultdict, deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from datetime import UTC, datetime, timedelta
from typing import Any

from warmgate.adapters.budget import BudgetExhausted
from warmgate.adapters.dynamodb import MailboxPage, ReconcilerCursor, StaleRecord
from warmgate.adapters.mailbox_items import (
    LIST_INDEX_KEYS,
    MAILBOX_KIND,
    NO_PRINCIPAL,
    owner_prefix,
)
from warmgate.adapters.mailivery import (
    Campaign,
    CampaignStatus,
    Conflict,
    ConsentLink,
    ConsentRequest,
    MailiveryError,
    NotFound,
    VendorContract,
)
from warmgate.adapters.sqs import QueuedWebhook
from warmgate.domain.campaigns import CampaignPage
from warmgate.domain.ledger import CampaignLedgerEntry
from warmgate.domain.mailboxes import ExpectedMailbox, MailboxState
from warmgate.services.ports import CampaignApi, MailboxStore, MessageQueue

START = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class FakeClock:
    """A clock that moves only when told."""

    def __init__(self, now: datetime = START) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += timedelta(seconds=seconds)


class FakeBudget:
    """The shared request budget: `tokens` left (None: unlimited); `taken` counts grants."""

    def __init__(self, tokens: int | None = None, retry_after: float = 7.0) -> None:
        self.tokens = tokens
        self.retry_after = retry_after
        self.taken = 0

    def take(self) -> None:
        if self.tokens is not None:
            if self.tokens <= 0:
                raise BudgetExhausted(self.retry_after)
            self.tokens -= 1
        self.taken += 1


class FakeMailboxStore:
    """MailboxTable in a dict: mailboxes, ledger entries and the reconciler's cursor.

    `race(key)`: the next write to that key finds it changed by another writer first (its
    version bumped), as when a concurrent worker or request wins.
    """

    def __init__(self, budget: FakeBudget | None = None) -> None:
        self.budget = budget
        self.mailboxes: dict[str, ExpectedMailbox] = {}
        self.ledger: dict[str, CampaignLedgerEntry] = {}
        self.cursor = ReconcilerCursor()
        self.writes: list[str] = []  # keys written, in order: `mailbox#…`, `campaign#…`
        self._racing: set[str] = set()

    # --- test helpers ---

    def put(self, record: ExpectedMailbox) -> ExpectedMailbox:
        """Store `record` as is (a fixture), version at least 1."""
        stored = replace(record, version=max(record.version, 1))
        self.mailboxes[record.email] = stored
        return stored

    def race(self, key: str) -> None:
        self._racing.add(key)

    # --- MailboxStore ---

    def get(self, email: str) -> ExpectedMailbox | None:
        return self.mailboxes.get(email)

    def get_with_ledger(
        self, email: str | None, campaign_id: str
    ) -> tuple[ExpectedMailbox | None, CampaignLedgerEntry | None]:
        return (self.mailboxes.get(email) if email else None), self.ledger.get(campaign_id)

    def save(
        self, record: ExpectedMailbox, *, read_version: int | None, with_token: bool = False
    ) -> ExpectedMailbox:
        self._check(f"mailbox#{record.email}", self.mailboxes.get(record.email), read_version)
        self._take_token(with_token)
        stored = replace(record, version=(read_version or 0) + 1)
        self.mailboxes[record.email] = stored
        self.writes.append(f"mailbox#{record.email}")
        return stored

    def save_ledger_entry(
        self, entry: CampaignLedgerEntry, *, read_version: int | None, with_token: bool = False
    ) -> CampaignLedgerEntry:
        key = f"campaign#{entry.campaign_id}"
        self._check(key, self.ledger.get(entry.campaign_id), read_version)
        self._take_token(with_token)
        stored = replace(entry, version=(read_version or 0) + 1)
        self.ledger[entry.campaign_id] = stored
        self.writes.append(key)
        return stored

    def scan_mailboxes(self, states: Iterable[MailboxState]) -> Iterator[ExpectedMailbox]:
        wanted = set(states)
        return iter([m for _, m in sorted(self.mailboxes.items()) if m.state in wanted])

    def list_mailboxes(
        self,
        *,
        limit: int,
        owner: str | None,
        start_key: Mapping[str, str] | None = None,
        states: Iterable[MailboxState] = (),
        requested_by: str | None = None,
    ) -> MailboxPage:
        wanted = set(states)
        keyed = sorted(
            ((_list_key(m), m) for m in self.mailboxes.values()),
            key=lambda pair: (pair[0]["owner_updated_at"], pair[0]["pk"]),
            reverse=True,  # newest change first, as the index reads backwards
        )
        if start_key is not None:
            after = (start_key["owner_updated_at"], start_key["pk"])
            keyed = [(k, m) for k, m in keyed if (k["owner_updated_at"], k["pk"]) < after]
        found = [
            (key, mailbox)
            for key, mailbox in keyed
            if (owner is None or key["owner_updated_at"].startswith(owner_prefix(owner)))
            and (not wanted or mailbox.state in wanted)
            and (requested_by is None or mailbox.requested_by == requested_by)
        ]
        page = found[:limit]
        more = len(found) > limit
        return MailboxPage([m for _, m in page], page[-1][0] if more else None)

    def get_reconciler_cursor(self) -> ReconcilerCursor:
        return self.cursor

    def save_reconciler_cursor(self, cursor: ReconcilerCursor) -> ReconcilerCursor:
        stored = self.cursor if self.cursor.version else None
        self._check("reconciler#cursor", stored, cursor.version or None)
        self.cursor = replace(cursor, version=cursor.version + 1)
        self.writes.append("reconciler#cursor")
        return self.cursor

    def _check(self, key: str, stored: Any, read_version: int | None) -> None:
        if key in self._racing:
            self._racing.discard(key)
            raise StaleRecord(key)
        current = None if stored is None else stored.version
        if current != read_version:
            raise StaleRecord(key)

    def _take_token(self, with_token: bool) -> None:
        if not with_token:
            return
        if self.budget is None:
            raise ValueError("a write with_token needs the store built with a budget")
        self.budget.take()


def _list_key(mailbox: ExpectedMailbox) -> dict[str, str]:
    key = {
        "pk": f"mailbox#{mailbox.email}",
        "item_kind": MAILBOX_KIND,
        "owner_updated_at": owner_prefix(mailbox.requested_by_principal or NO_PRINCIPAL)
        + mailbox.updated_at,
    }
    assert tuple(key) == LIST_INDEX_KEYS
    return key


@dataclass(frozen=True, slots=True)
class Fault:
    """A scripted failure of the next call of one kind; `applied`: the call ran anyway (an
    unknown outcome: the answer was lost, not the request)."""

    error: MailiveryError | BudgetExhausted
    applied: bool = False


CONSENT_URL = "https://login.microsoftonline.com/common/oauth2/v2.0/authorize?client_id=c&state={n}"


class FakeCampaignApi:
    """Mailivery's campaigns in a dict. `calls` records every call as (name, argument).

    Starts move pending → active; resumes move pending/paused → active and refuse a connection
    problem (the owner must reconnect); either on an active campaign is a 409 Conflict, as is
    any action on a campaign in an unknown status. `fail(name, error, applied=...)` scripts the
    next call of `name`. With a `budget`, every call not `prepaid` takes a token first.
    """

    def __init__(self, budget: FakeBudget | None = None) -> None:
        self.contract = VendorContract()
        self.budget = budget
        self.campaigns: dict[str, Campaign] = {}
        self.calls: list[tuple[str, str]] = []
        self._faults: dict[str, deque[Fault]] = defaultdict(deque)

    # --- test helpers ---

    def add(
        self,
        campaign_id: str,
        email: str | None,
        status: CampaignStatus | str = CampaignStatus.PENDING,
        *,
        imap_type: str = "ms-graph",
    ) -> Campaign:
        raw = str(status)
        campaign = Campaign(
            campaign_id=campaign_id,
            email=email,
            status=CampaignStatus.parse(raw),
            raw_status=raw,
            imap_type=imap_type,
            smtp_type=imap_type,
            raw={"id": campaign_id, "email": email, "status": raw},
        )
        self.campaigns[campaign_id] = campaign
        return campaign

    def set_status(self, campaign_id: str, status: CampaignStatus) -> None:
        self.campaigns[campaign_id] = replace(
            self.campaigns[campaign_id], status=status, raw_status=status.value
        )

    def fail(
        self, name: str, error: MailiveryError | BudgetExhausted, *, applied: bool = False
    ) -> None:
        self._faults[name].append(Fault(error, applied))

    def actions(self) -> list[tuple[str, str]]:
        """The calls that change something at Mailivery (reads left out)."""
        return [call for call in self.calls if call[0] in ("start", "resume", "delete", "consent")]

    # --- CampaignApi ---

    def request_ms_graph_consent(self, request: ConsentRequest) -> ConsentLink:
        self._enter("consent", request.email, prepaid=False)
        self._raise_fault("consent", lambda: None)
        n = len(self.actions())
        return ConsentLink(CONSENT_URL.format(n=n), "c", str(n))

    def get_campaign(self, campaign_id: str) -> Campaign:
        self._enter("get", campaign_id, prepaid=False)
        self._raise_fault("get", lambda: None)
        return self._campaign(campaign_id)

    def find_campaign_by_email(self, email: str) -> Campaign | None:
        self._enter("find", email, prepaid=False)
        self._raise_fault("find", lambda: None)
        return next((c for c in self.campaigns.values() if c.email == email), None)

    def list_campaigns(self, page: int = 1, status: str | None = None) -> CampaignPage:
        self._enter("list", str(page), prepaid=False)
        self._raise_fault("list", lambda: None)
        matching = [c for c in self.campaigns.values() if status is None or c.raw_status == status]
        size = self.contract.per_page
        last = max(1, -(-len(matching) // size))
        return CampaignPage(matching[(page - 1) * size : page * size], page, last)

    def start_warmup(self, campaign_id: str, *, prepaid: bool = False) -> Any:
        self._enter("start", campaign_id, prepaid=prepaid)
        return self._act("start", campaign_id, (CampaignStatus.PENDING,))

    def resume_warmup(self, campaign_id: str, *, prepaid: bool = False) -> Any:
        self._enter("resume", campaign_id, prepaid=prepaid)
        return self._act("resume", campaign_id, (CampaignStatus.PENDING, CampaignStatus.PAUSED))

    def delete_campaign(self, campaign_id: str, *, prepaid: bool = False) -> Any:
        self._enter("delete", campaign_id, prepaid=prepaid)

        def delete() -> None:
            self._campaign(campaign_id)
            del self.campaigns[campaign_id]

        self._raise_fault("delete", delete)
        delete()
        return {"deleted": campaign_id}

    def _enter(self, name: str, argument: str, *, prepaid: bool) -> None:
        if self.budget is not None and not prepaid:
            self.budget.take()  # the client's throttle: BudgetExhausted, nothing sent
        self.calls.append((name, argument))

    def _act(self, name: str, campaign_id: str, allowed: tuple[CampaignStatus, ...]) -> Any:
        def apply() -> None:
            campaign = self._campaign(campaign_id)
            if campaign.status is CampaignStatus.CONNECTION_PROBLEM:
                raise _error(Conflict, "the mailbox must be reconnected first", 409)
            if campaign.status not in allowed:
                raise _error(Conflict, f"campaign is {campaign.raw_status}", 409)
            self.set_status(campaign_id, CampaignStatus.ACTIVE)

        self._raise_fault(name, apply)
        apply()
        return {"status": "active"}

    def _raise_fault(self, name: str, apply: Callable[[], None]) -> None:
        if not self._faults[name]:
            return
        fault = self._faults[name].popleft()
        if fault.applied:
            apply()
        raise fault.error

    def _campaign(self, campaign_id: str) -> Campaign:
        try:
            return self.campaigns[campaign_id]
        except KeyError:
            raise _error(NotFound, f"campaign {campaign_id} not found", 404) from None


def _error(kind: type[MailiveryError], message: str, status: int) -> MailiveryError:
    return kind(message, request_id="fake-request", status=status)


class FakeQueue:
    """The work queue: `sent` holds each message and its delay; `fail` fails the next send."""

    def __init__(self) -> None:
        self.sent: list[tuple[QueuedWebhook, int]] = []
        self._failures: deque[Exception] = deque()

    def fail(self, error: Exception) -> None:
        self._failures.append(error)

    def send(self, message: QueuedWebhook, *, delay_seconds: int = 0) -> str:
        if self._failures:
            raise self._failures.popleft()
        self.sent.append((message, delay_seconds))
        return f"message-{len(self.sent)}"


def _implements_the_ports(
    store: FakeMailboxStore, api: FakeCampaignApi, queue: FakeQueue
) -> tuple[MailboxStore, CampaignApi, MessageQueue]:
    """Never called: mypy checks the fakes against the ports here."""
    return store, api, queue
