"""MailboxTable access on the botocore client API. Every write is conditional (optimistic lock).

The items, their keys and their codec: warmgate.adapters.mailbox_items.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from warmgate.adapters.budget import WriteRefused
from warmgate.adapters.mailbox_items import (
    LIST_INDEX,
    LIST_INDEX_KEYS,
    MAILBOX_KIND,
    RECONCILER_CURSOR_KEY,
    decode,
    encode,
    ledger_from_item,
    ledger_key,
    ledger_to_item,
    mailbox_from_item,
    mailbox_key,
    mailbox_to_item,
    owner_prefix,
)
from warmgate.domain.ledger import CampaignLedgerEntry
from warmgate.domain.mailboxes import ExpectedMailbox, MailboxState

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import PutTypeDef

    from warmgate.adapters.budget import RateBudget

# BatchGetItem returns keys it could not read now (throttling) for the caller to ask again.
BATCH_GET_ROUNDS = 4
BATCH_GET_BACKOFF_SECONDS = 0.05  # doubled each round
MAX_LIST_READS = 5  # index pages read for one list request (filters may drop many items)


@dataclass(frozen=True, slots=True)
class MailboxPage:
    """One page of a listing, and where the next one starts (None: this was the last)."""

    mailboxes: list[ExpectedMailbox]
    next_key: dict[str, str] | None


class StaleRecord(Exception):
    """Someone else wrote the record since it was read: re-read and decide again."""


class TableBusy(Exception):
    """DynamoDB left part of a read unprocessed, round after round: try the work again later."""


@dataclass(frozen=True, slots=True)
class ReconcilerCursor:
    """The page of Mailivery's pending campaigns the reconciler reads next, and since when
    its current pass over the list runs. `version` 0: never stored."""

    next_page: int = 1
    pass_started_at: str | None = None
    updated_at: str | None = None
    version: int = 0


class MailboxRepository:
    def __init__(
        self, client: DynamoDBClient, table_name: str, *, budget: RateBudget | None = None
    ) -> None:
        """`budget`: the request budget a write `with_token` takes its token from."""
        self._client = client
        self._table = table_name
        self._budget = budget

    def get(self, email: str) -> ExpectedMailbox | None:
        response = self._client.get_item(
            TableName=self._table,
            Key=mailbox_key(email),
            ConsistentRead=True,  # decisions are made on this read: never a stale copy
        )
        item = response.get("Item")
        return mailbox_from_item(item) if item else None

    def get_with_ledger(
        self, email: str | None, campaign_id: str
    ) -> tuple[ExpectedMailbox | None, CampaignLedgerEntry | None]:
        """The mailbox record for `email` (None: no email to look for) and the campaign's ledger
        entry, in one consistent BatchGetItem: the worker decides on this read."""
        keys = [ledger_key(campaign_id)] + ([mailbox_key(email)] if email else [])
        items = self._batch_get(keys)
        mailbox = items.get(mailbox_key(email)["pk"]["S"]) if email else None
        ledger = items.get(ledger_key(campaign_id)["pk"]["S"])
        return (
            mailbox_from_item(mailbox) if mailbox else None,
            ledger_from_item(ledger) if ledger else None,
        )

    def save(
        self,
        record: ExpectedMailbox,
        *,
        read_version: int | None,
        with_token: bool = False,
    ) -> ExpectedMailbox:
        """Write `record` if the stored one is still at `read_version` (None: must not exist);
        `with_token`, take one token of the request budget in the same transaction.

        Returns the record as stored (version incremented); raises StaleRecord otherwise, or
        BudgetExhausted (nothing written) when no token came in time.
        """
        stored = replace(record, version=(read_version or 0) + 1)
        self._put(mailbox_to_item(stored), read_version, record.email, with_token)
        return stored

    def scan_mailboxes(self, states: Iterable[MailboxState]) -> Iterator[ExpectedMailbox]:
        """Every mailbox record in one of `states`, page by page.

        A Scan: the table holds one item per onboarded mailbox and this runs every few minutes
        (reconciler, operations). Past ~100k mailboxes a sparse index on `state` would be due.
        """
        wanted = [state.value for state in states]
        names = {"#state": "state"}
        values: dict[str, Any] = {":mailbox": {"S": "mailbox#"}}
        values |= {f":s{n}": {"S": state} for n, state in enumerate(wanted)}
        condition = " OR ".join(f"#state = :s{n}" for n in range(len(wanted)))
        filtered = f"begins_with(pk, :mailbox) AND ({condition})"
        for item in self._scan(filtered, values, ExpressionAttributeNames=names):
            yield mailbox_from_item(item)

    def scan_unlisted(self) -> Iterator[ExpectedMailbox]:
        """Mailboxes stored without LIST_INDEX's keys (written before the index existed)."""
        unlisted = "begins_with(pk, :mailbox) AND attribute_not_exists(item_kind)"
        for item in self._scan(unlisted, {":mailbox": {"S": "mailbox#"}}):
            yield mailbox_from_item(item)

    def list_mailboxes(
        self,
        *,
        owner: str | None,
        states: Iterable[MailboxState] = (),
        requested_by: str | None = None,
        limit: int,
        start_key: Mapping[str, str] | None = None,
    ) -> MailboxPage:
        """Mailboxes from LIST_INDEX, newest change first: `owner`'s (a principal, or None for
        every mailbox), in one of `states` (any if empty), of `requested_by` (any if None).

        Reads at most MAX_LIST_READS index pages: a page can come back short, with a key to
        go on from, when the filters drop many items. `start_key` is a `next_key` given before.
        """
        condition = "item_kind = :kind"
        values: dict[str, Any] = {":kind": {"S": MAILBOX_KIND}}
        if owner is not None:
            condition += " AND begins_with(owner_updated_at, :owner)"
            values[":owner"] = {"S": owner_prefix(owner)}
        filters, names = [], {}
        wanted = [state.value for state in states]
        if wanted:
            names["#state"] = "state"
            values |= {f":s{n}": {"S": state} for n, state in enumerate(wanted)}
            filters.append(f"#state IN ({', '.join(f':s{n}' for n in range(len(wanted)))})")
        if requested_by is not None:
            values[":requested_by"] = {"S": requested_by}
            filters.append("requested_by = :requested_by")
        query: dict[str, Any] = {
            "TableName": self._table,
            "IndexName": LIST_INDEX,
            "KeyConditionExpression": condition,
            "ExpressionAttributeValues": values,
            "ScanIndexForward": False,  # newest change first
            "Limit": limit,
        }
        if filters:
            query["FilterExpression"] = " AND ".join(filters)
        if names:
            query["ExpressionAttributeNames"] = names
        found: list[dict[str, Any]] = []
        key: Any = {name: {"S": value} for name, value in start_key.items()} if start_key else None
        for _ in range(MAX_LIST_READS):
            if key:
                query["ExclusiveStartKey"] = key
            response = self._client.query(**query)
            items, room = response.get("Items", []), limit - len(found)
            if len(items) > room:
                # The next page starts after the last item returned, not after the last read.
                found += items[:room]
                key = {name: found[-1][name] for name in LIST_INDEX_KEYS}
                break
            found += items
            key = response.get("LastEvaluatedKey")
            if key is None or len(found) == limit:
                break
        next_key = {name: str(value["S"]) for name, value in key.items()} if key else None
        return MailboxPage([mailbox_from_item(item) for item in found], next_key)

    def scan_ledger(self) -> Iterator[CampaignLedgerEntry]:
        """Every campaign handled without an expectation (operations: unexpected campaigns)."""
        for item in self._scan("begins_with(pk, :campaign)", {":campaign": {"S": "campaign#"}}):
            yield ledger_from_item(item)

    def _scan(self, condition: str, values: dict[str, Any], **extra: Any) -> Iterator[Any]:
        """Every item of the table that meets `condition`, read consistently (operations and
        the reconciler: never on a request's path)."""
        for page in self._client.get_paginator("scan").paginate(
            TableName=self._table,
            FilterExpression=condition,
            ExpressionAttributeValues=values,
            ConsistentRead=True,
            **extra,
        ):
            yield from page.get("Items", [])

    def get_ledger_entry(self, campaign_id: str) -> CampaignLedgerEntry | None:
        response = self._client.get_item(
            TableName=self._table, Key=ledger_key(campaign_id), ConsistentRead=True
        )
        item = response.get("Item")
        return ledger_from_item(item) if item else None

    def save_ledger_entry(
        self,
        entry: CampaignLedgerEntry,
        *,
        read_version: int | None,
        with_token: bool = False,
    ) -> CampaignLedgerEntry:
        """As `save`, for a campaign's ledger entry."""
        stored = replace(entry, version=(read_version or 0) + 1)
        self._put(ledger_to_item(stored), read_version, entry.campaign_id, with_token)
        return stored

    def delete_ledger_entry(self, entry: CampaignLedgerEntry) -> None:
        """Forget a ledger entry (operations), if it is still the version that was read."""
        try:
            self._client.delete_item(
                TableName=self._table,
                Key=ledger_key(entry.campaign_id),
                ConditionExpression="version = :read_version",
                ExpressionAttributeValues={":read_version": {"N": str(entry.version)}},
            )
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise StaleRecord(entry.campaign_id) from None
            raise

    def get_reconciler_cursor(self) -> ReconcilerCursor:
        item = self._client.get_item(
            TableName=self._table, Key=RECONCILER_CURSOR_KEY, ConsistentRead=True
        ).get("Item")
        if item is None:
            return ReconcilerCursor()
        data = decode(item)
        return ReconcilerCursor(
            next_page=int(data["next_page"]),
            pass_started_at=data.get("pass_started_at"),
            updated_at=data.get("updated_at"),
            version=int(data["version"]),
        )

    def save_reconciler_cursor(self, cursor: ReconcilerCursor) -> ReconcilerCursor:
        """Store `cursor` if the stored one is still at `cursor.version`; else StaleRecord."""
        stored = replace(cursor, version=cursor.version + 1)
        data = {
            "next_page": stored.next_page,
            "pass_started_at": stored.pass_started_at,
            "updated_at": stored.updated_at,
            "version": stored.version,
        }
        self._put(encode(data) | RECONCILER_CURSOR_KEY, cursor.version or None, "reconciler#cursor")
        return stored

    def _put(
        self,
        item: dict[str, Any],
        read_version: int | None,
        name: str,
        with_token: bool = False,
    ) -> None:
        put: PutTypeDef = {"TableName": self._table, "Item": item}
        if read_version is None:
            put["ConditionExpression"] = "attribute_not_exists(pk)"
        else:
            put["ConditionExpression"] = "version = :read_version"
            put["ExpressionAttributeValues"] = {":read_version": {"N": str(read_version)}}
        try:
            if not with_token:
                self._client.put_item(**put)
            elif self._budget is None:
                raise ValueError("a write with_token needs the repository built with a budget")
            else:
                self._budget.acquire_with({"Put": put})
        except WriteRefused:
            raise StaleRecord(name) from None
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                raise StaleRecord(name) from None
            raise

    def _batch_get(self, keys: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
        """The items found for `keys` (at most 100), by `pk`; keys left unprocessed by
        DynamoDB are asked for again, with a growing pause, a bounded number of times."""
        request: Mapping[str, Any] = {self._table: {"Keys": keys, "ConsistentRead": True}}
        found: dict[str, dict[str, Any]] = {}
        for round_ in range(BATCH_GET_ROUNDS):
            if round_:
                time.sleep(BATCH_GET_BACKOFF_SECONDS * 2 ** (round_ - 1))
            response = self._client.batch_get_item(RequestItems=request)
            for item in response.get("Responses", {}).get(self._table, []):
                found[item["pk"]["S"]] = dict(item)
            request = response.get("UnprocessedKeys") or {}
            if not request:
                return found
        raise TableBusy(
            f"BatchGetItem on {self._table} left keys unprocessed after {BATCH_GET_ROUNDS} rounds"
        )
