"""Mailbox events: what happened to a mailbox, told to the integrator on EventBridge.

No dual write: the state transition itself is the record. MailboxTable's stream
(NEW_AND_OLD_IMAGES) carries every write; `event_for` turns the ones that matter into one
event each, and `MailboxEventPublisher` puts them on the bus in order.

- A mailbox item (`mailbox#…`) whose `state` changed → `Mailbox <State>` (e.g. `Mailbox
  Warming`), derived from MailboxState in one place (MAILBOX_DETAIL_TYPES). Writes that keep
  the state (a consent link stored, a retry counted, a request made again while one is open)
  are not events.
- A ledger item (`campaign#…`) that settles as unexpected (left pending, found active, deleted
  by policy) → `Unexpected Campaign`.
- Anything else (the request budget, the reconciler's cursor, removals by TTL or an
  operator) → nothing.

`verifying` is not published: it is a worker's claim held for the length of one vendor call,
always followed by the outcome that is published (`warming`, `start_failed`, `deleted`), and
nothing the integrator can do while it lasts (a withdrawal gets 409 CLAIM_HELD). It still
shows as a `previous_state`.

Each event carries the item's `version` as `sequence`: it grows by one with every write of
that item, so a consumer can order a mailbox's events and drop duplicates (delivery is at
least once) by `(email, sequence)`; gaps are writes that were no event. An unexpected
campaign's sequence counts its ledger entry's writes: `(campaign_id, sequence)`.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from warmgate.adapters.mailbox_items import ledger_from_item, mailbox_from_item
from warmgate.domain.ledger import LedgerState
from warmgate.domain.mailbox_views import mailbox_fields
from warmgate.domain.mailboxes import MailboxState, parse_iso
from warmgate.observability import logger

if TYPE_CHECKING:
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_events.type_defs import PutEventsRequestEntryTypeDef

SOURCE = "warmgate"
UNEXPECTED_CAMPAIGN = "Unexpected Campaign"
UNPUBLISHED_STATES = frozenset({MailboxState.VERIFYING})  # see the module's docstring


def mailbox_detail_type(state: MailboxState) -> str:
    """`consent_requested` → `Mailbox Consent Requested`."""
    return "Mailbox " + state.value.replace("_", " ").title()


MAILBOX_DETAIL_TYPES: dict[MailboxState, str] = {
    state: mailbox_detail_type(state) for state in MailboxState if state not in UNPUBLISHED_STATES
}
DETAIL_TYPES: tuple[str, ...] = (*MAILBOX_DETAIL_TYPES.values(), UNEXPECTED_CAMPAIGN)

# Ledger states that settle a campaign as unexpected. `deleted` only when warmgate deleted it
# (from its `deleting` claim): a campaign.deleted report for a campaign a mailbox tracked is
# that mailbox's `Mailbox Deleted`. `deleting` is a claim (like `verifying`), `adopted` a
# request's mailbox events.
_UNEXPECTED_OUTCOMES = frozenset({LedgerState.LEFT_PENDING, LedgerState.UNEXPECTED_ACTIVE})

# PutEvents limits: 10 entries, and 256 KiB for the whole request as EventBridge counts it.
MAX_ENTRIES_PER_PUT = 10
MAX_BYTES_PER_PUT = 256 * 1024
_TIME_BYTES = 14  # what a Time field counts for


class MalformedStreamRecord(ValueError):
    """A stream record warmgate cannot read: a bug or a foreign write, never skipped."""


@dataclass(frozen=True, slots=True)
class WarmgateEvent:
    """One event for the bus, and the table item it is about (its order key)."""

    detail_type: str
    detail: dict[str, Any]
    occurred_at: str  # the write's updated_at: EventBridge's `time`
    item_key: str  # `mailbox#…` or `campaign#…`: events of one item are put in order

    def entry(self, bus: str) -> PutEventsRequestEntryTypeDef:
        return {
            "Source": SOURCE,
            "DetailType": self.detail_type,
            "Detail": json.dumps(self.detail, separators=(",", ":")),
            "EventBusName": bus,
            "Time": parse_iso(self.occurred_at),
        }


def event_for(record: Mapping[str, Any]) -> WarmgateEvent | None:
    """The event one DynamoDB stream record (Lambda's shape) announces, or None."""
    change = record.get("dynamodb")
    if not isinstance(change, Mapping):
        raise MalformedStreamRecord("stream record without its `dynamodb` change")
    new, old = change.get("NewImage"), change.get("OldImage") or {}
    key = str(((change.get("Keys") or {}).get("pk") or {}).get("S", ""))
    if new is None:  # a removal: TTL housekeeping or `ops campaign forget`
        return None
    try:
        if key.startswith("mailbox#"):
            return _mailbox_event(key, new, old)
        if key.startswith("campaign#"):
            return _ledger_event(key, new, old)
    except (KeyError, TypeError, ValueError) as exc:
        raise MalformedStreamRecord(f"{key}: {type(exc).__name__}: {exc}") from exc
    return None  # budget#…, reconciler#cursor


def _state_of(image: Mapping[str, Any]) -> str | None:
    state = image.get("state")
    return str(state["S"]) if state else None


def _mailbox_event(key: str, new: dict[str, Any], old: Mapping[str, Any]) -> WarmgateEvent | None:
    previous = _state_of(old)
    mailbox = mailbox_from_item(new)
    if mailbox.state.value == previous or mailbox.state in UNPUBLISHED_STATES:
        return None
    return WarmgateEvent(
        MAILBOX_DETAIL_TYPES[mailbox.state],
        {
            **mailbox_fields(mailbox),
            "previous_state": previous,
            "reason": mailbox.history[-1].reason if mailbox.history else "",
            "sequence": mailbox.version,
            "occurred_at": mailbox.updated_at,
        },
        mailbox.updated_at,
        key,
    )


def _ledger_event(key: str, new: dict[str, Any], old: Mapping[str, Any]) -> WarmgateEvent | None:
    previous = _state_of(old)
    entry = ledger_from_item(new)
    if entry.state.value == previous:
        return None
    deleted_by_policy = entry.state is LedgerState.DELETED and previous == LedgerState.DELETING
    if entry.state not in _UNEXPECTED_OUTCOMES and not deleted_by_policy:
        return None
    return WarmgateEvent(
        UNEXPECTED_CAMPAIGN,
        {
            "campaign_id": entry.campaign_id,
            "email": entry.email,
            "state": entry.state.value,
            "previous_state": previous,
            "reason": entry.reason,
            "first_seen_at": entry.first_seen_at,
            "sequence": entry.version,
            "occurred_at": entry.updated_at,
        },
        entry.updated_at,
        key,
    )


# --- publishing -------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class PublishOutcome:
    """What became of a batch of stream records, in stream order."""

    published: int  # events accepted before `retry_from` (later ones are put again)
    skipped: int  # records that announce nothing
    retry_from: str | None = None  # SequenceNumber of the first record not done, if any
    problem: str | None = None  # why it is not done

    @property
    def batch_item_failures(self) -> list[dict[str, str]]:
        """Lambda's partial-batch answer: the stream is retried from this record on."""
        return [] if self.retry_from is None else [{"itemIdentifier": self.retry_from}]


@dataclass(frozen=True, slots=True)
class _Pending:
    sequence_number: str
    event: WarmgateEvent


class MailboxEventPublisher:
    """Puts a batch's events on the bus, keeping each item's events in order.

    An event is put only once every earlier event of the same item was accepted: a PutEvents
    request holds at most one event per item, and after a request with a failed entry nothing
    later is put. The outcome names the first record not done; Lambda retries the stream
    from there (records after it that were put already are put again: at least once).

    A record that cannot be read is never passed by. Further into the batch it is reported
    like a failed entry, so the records before it count as done. First in the batch it raises
    instead: on a function error Lambda bisects the batch until the record is alone, so in the
    end only that record is given up to the on-failure destination. Reported, it would take
    every record after it in the batch along.
    """

    def __init__(self, events: EventBridgeClient, bus: str) -> None:
        self._events = events
        self._bus = bus

    def publish(self, records: Sequence[Mapping[str, Any]]) -> PublishOutcome:
        pending: list[_Pending] = []
        skipped = 0
        unreadable: tuple[str, str] | None = None  # (sequence number, problem)
        for position, record in enumerate(records):
            try:
                sequence_number = _sequence_number(record)
                event = event_for(record)
            except MalformedStreamRecord as exc:
                if position == 0:
                    raise
                unreadable = (_sequence_number(record), str(exc))
                break
            if event is None:
                skipped += 1
            else:
                pending.append(_Pending(sequence_number, event))
        published = 0
        for chunk in _chunks(pending, self._bus):
            failed = self._put(chunk)
            if failed is not None:
                first, problem = failed
                return PublishOutcome(
                    published + first, skipped, chunk[first].sequence_number, problem
                )
            published += len(chunk)
        if unreadable is not None:
            return PublishOutcome(published, skipped, *unreadable)
        return PublishOutcome(published, skipped)

    def _put(self, chunk: list[_Pending]) -> tuple[int, str] | None:
        """None if every entry was accepted; else (index of the first failed entry, why)."""
        try:
            response = self._events.put_events(Entries=[p.event.entry(self._bus) for p in chunk])
        except Exception as exc:  # throttled, unreachable, refused: the whole request failed
            logger.warning("PutEvents failed", extra={"error": f"{type(exc).__name__}: {exc}"})
            return 0, f"PutEvents: {type(exc).__name__}: {exc}"
        if not response.get("FailedEntryCount"):
            return None
        entries = response.get("Entries", [])
        for index, result in enumerate(entries):
            if result.get("ErrorCode") or not result.get("EventId"):
                problem = f"{result.get('ErrorCode')}: {result.get('ErrorMessage')}"
                logger.warning(
                    "PutEvents refused an entry",
                    extra={
                        "failed_entries": response.get("FailedEntryCount"),
                        "item": chunk[index].event.item_key,
                        "error": problem,
                    },
                )
                return index, problem
        # A FailedEntryCount without a failed entry: trust nothing of this request.
        return 0, f"PutEvents reported {response.get('FailedEntryCount')} failed entries"


def _sequence_number(record: Mapping[str, Any]) -> str:
    try:
        return str(record["dynamodb"]["SequenceNumber"])
    except (KeyError, TypeError):
        raise MalformedStreamRecord("stream record without a SequenceNumber") from None


def _chunks(pending: list[_Pending], bus: str) -> Iterator[list[_Pending]]:
    """PutEvents requests in stream order: at most 10 entries and 256 KiB, one event per item."""
    chunk: list[_Pending] = []
    size, items = 0, set[str]()
    for item in pending:
        entry_size = _entry_size(item.event, bus)
        if chunk and (
            len(chunk) == MAX_ENTRIES_PER_PUT
            or size + entry_size > MAX_BYTES_PER_PUT
            or item.event.item_key in items
        ):
            yield chunk
            chunk, size, items = [], 0, set()
        chunk.append(item)
        size += entry_size
        items.add(item.event.item_key)
    if chunk:
        yield chunk


def _entry_size(event: WarmgateEvent, bus: str) -> int:
    """An entry's size as EventBridge counts it (Time, Source, DetailType, Detail)."""
    entry = event.entry(bus)
    return _TIME_BYTES + sum(
        len(str(entry[field]).encode()) for field in ("Source", "DetailType", "Detail")
    )
