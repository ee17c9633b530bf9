"""What the services need from the world, as typing Protocols: the mailbox store, the campaign
API, the work queue (MessageQueue) and the clock.

The services are typed with these, never with the adapters that implement them in production
(`MailboxRepository`, `MailiveryClient`, `WorkQueue`; `warmgate.wiring` passes those, so mypy
checks they satisfy the ports), which lets the unit tests run the services on in-memory fakes
(`tests/fakes.py`). Each port holds what the services call and nothing more; the errors it may
raise are the adapters' (StaleRecord, BudgetExhausted, the MailiveryError family), named in the
docstrings because a Protocol cannot declare them.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import TYPE_CHECKING, Any, Protocol

if TYPE_CHECKING:
    from warmgate.adapters.dynamodb import MailboxPage, ReconcilerCursor
    from warmgate.adapters.mailivery import ConsentRequest, VendorContract
    from warmgate.adapters.sqs import QueuedWebhook
    from warmgate.domain.campaigns import Campaign, CampaignPage, ConsentLink
    from warmgate.domain.ledger import CampaignLedgerEntry
    from warmgate.domain.mailboxes import ExpectedMailbox, MailboxState

# The time now, timezone-aware UTC (warmgate.domain.mailboxes.utc_now in production).
Clock = Callable[[], datetime]


class MailboxStore(Protocol):
    """Mailbox records, campaign ledger entries and the reconciler's cursor, each written only
    if it is still the version that was read: a write on a changed (or, for `read_version`
    None, an existing) record raises StaleRecord and writes nothing."""

    def get(self, email: str) -> ExpectedMailbox | None: ...

    def get_with_ledger(
        self, email: str | None, campaign_id: str
    ) -> tuple[ExpectedMailbox | None, CampaignLedgerEntry | None]:
        """The mailbox of `email` (None: no email to look for) and the campaign's ledger entry,
        read together and consistently."""
        ...

    def save(
        self, record: ExpectedMailbox, *, read_version: int | None, with_token: bool = False
    ) -> ExpectedMailbox:
        """The record as stored (version + 1). `with_token`: take one token of the vendor
        request budget in the same transaction, both or neither (BudgetExhausted: neither)."""
        ...

    def save_ledger_entry(
        self, entry: CampaignLedgerEntry, *, read_version: int | None, with_token: bool = False
    ) -> CampaignLedgerEntry:
        """As `save`, for a campaign's ledger entry."""
        ...

    def scan_mailboxes(self, states: Iterable[MailboxState]) -> Iterator[ExpectedMailbox]: ...

    def list_mailboxes(
        self,
        *,
        limit: int,
        owner: str | None,
        start_key: Mapping[str, str] | None = None,
        states: Iterable[MailboxState] = (),
        requested_by: str | None = None,
    ) -> MailboxPage:
        """Newest change first: `owner`'s mailboxes (None: every one), in one of `states` (any
        if empty), of `requested_by` (any if None), from a `start_key` a page returned."""
        ...

    def get_reconciler_cursor(self) -> ReconcilerCursor: ...

    def save_reconciler_cursor(self, cursor: ReconcilerCursor) -> ReconcilerCursor: ...


class CampaignApi(Protocol):
    """Mailivery's campaigns. Failures are MailiveryError subclasses (NotFound, Conflict,
    ValidationFailed, RateLimited, the ambiguous Timeout/ServerError/ConnectionLost/
    UnexpectedResponse); a throttle with no token left raises BudgetExhausted, nothing sent.
    `prepaid`: the caller's claim already took this call's budget token."""

    @property
    def contract(self) -> VendorContract: ...

    def request_ms_graph_consent(self, request: ConsentRequest) -> ConsentLink: ...

    def get_campaign(self, campaign_id: str) -> Campaign: ...

    def find_campaign_by_email(self, email: str) -> Campaign | None: ...

    def list_campaigns(self, page: int = 1, status: str | None = None) -> CampaignPage: ...

    def start_warmup(self, campaign_id: str, *, prepaid: bool = False) -> Any: ...

    def resume_warmup(self, campaign_id: str, *, prepaid: bool = False) -> Any: ...

    def delete_campaign(self, campaign_id: str, *, prepaid: bool = False) -> Any: ...


class MessageQueue(Protocol):
    """The work queue: one QueuedWebhook per message, kept invisible `delay_seconds`."""

    def send(self, message: QueuedWebhook, *, delay_seconds: int = 0) -> str:
        """The message id."""
        ...
