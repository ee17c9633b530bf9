"""MailboxTable's items: their keys, their layout, and the attribute-value codec they use.

One table, partition key `pk`, several kinds of item:
  `mailbox#<normalized email>`  an ExpectedMailbox (below);
  `campaign#<campaign id>`      a campaign the worker handled without an expectation (ledger);
  `budget#mailivery`            the shared Mailivery request budget (warmgate.adapters.budget);
  `reconciler#cursor`           where the reconciler's walk through Mailivery's pending
                                campaigns continues (warmgate.adapters.dynamodb.ReconcilerCursor).

ExpectedMailbox item layout:
  state, names, requested_by(_principal), tags, consent_url, campaign_id, ISO timestamps,
  `version` (N, the lock), `last_error` (M), `history` (L of M, bounded), and `purge_at`
  (N, epoch seconds, the table's TTL attribute).

TTL is for housekeeping, not for the business rule: DynamoDB deletes expired items up to days
late (and moto never does), so code decides expiry from `expires_at`. `purge_at` is set to
`expires_at` + retention only while a record is waiting for consent or has ended, so an audit
trail survives for a while and a warming mailbox's record is never purged.

Pure data mapping: no client, no I/O (the stream handler reads its images with it too).
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import timedelta
from decimal import Decimal
from typing import Any

from warmgate.domain.ledger import CampaignLedgerEntry, LedgerState
from warmgate.domain.mailboxes import (
    ENDED_STATES,
    ExpectedMailbox,
    LastError,
    MailboxState,
    RequestKind,
    Transition,
    parse_iso,
)

PURGE_AFTER_END = timedelta(days=90)
_PURGEABLE = ENDED_STATES | {MailboxState.CONSENT_REQUESTED}


def mailbox_key(email: str) -> dict[str, Any]:
    return {"pk": {"S": f"mailbox#{email}"}}


RECONCILER_CURSOR_KEY = {"pk": {"S": "reconciler#cursor"}}

# GET /mailboxes reads this global secondary index of MailboxTable, never the table: partition
# `item_kind` ("mailbox", so the index holds mailboxes only), sort key `owner_updated_at`
# ("<requester's IAM principal>|<updated_at>"). One principal's mailboxes are one key range,
# newest change first; every mailbox (an admin's listing) is the whole partition. One index,
# because DynamoDB adds only one per table update. One partition takes ~1,000 writes/s, far
# above what Mailivery's 240 requests/min can cause.
LIST_INDEX = "ByOwner"
MAILBOX_KIND = "mailbox"
NO_PRINCIPAL = "anonymous"  # the owner of a record made where no IAM identity was seen
LIST_INDEX_KEYS = ("pk", "item_kind", "owner_updated_at")


def owner_prefix(principal: str | None) -> str:
    """The start of `owner_updated_at` for a principal's mailboxes ("|" is in no IAM ARN)."""
    return f"{principal or NO_PRINCIPAL}|"


def is_list_key(key: Mapping[str, str], owner: str | None) -> bool:
    """Whether `key` is a LIST_INDEX key of a mailbox in the listing of `owner` (None: all)."""
    return (
        key.get("item_kind") == MAILBOX_KIND
        and key.get("pk", "").startswith("mailbox#")
        and (owner is None or key.get("owner_updated_at", "").startswith(owner_prefix(owner)))
    )


def ledger_key(campaign_id: str) -> dict[str, Any]:
    return {"pk": {"S": f"campaign#{campaign_id}"}}


def ledger_to_item(entry: CampaignLedgerEntry) -> dict[str, Any]:
    data = {
        "campaign_id": entry.campaign_id,
        "state": entry.state.value,
        "email": entry.email,
        "reason": entry.reason,
        "first_seen_at": entry.first_seen_at,
        "updated_at": entry.updated_at,
        "version": entry.version,
    }
    return encode(data) | ledger_key(entry.campaign_id)


def ledger_from_item(item: Mapping[str, Any]) -> CampaignLedgerEntry:
    data = decode(item)
    return CampaignLedgerEntry(
        campaign_id=data["campaign_id"],
        state=LedgerState(data["state"]),
        email=data.get("email"),
        reason=data.get("reason", ""),
        first_seen_at=data["first_seen_at"],
        updated_at=data["updated_at"],
        version=int(data["version"]),
    )


def mailbox_to_item(record: ExpectedMailbox) -> dict[str, Any]:
    data: dict[str, Any] = {
        "email": record.email,
        "state": record.state.value,
        "first_name": record.first_name,
        "last_name": record.last_name,
        "requested_by": record.requested_by,
        "requested_by_principal": record.requested_by_principal,
        "request_fingerprint": record.request_fingerprint,
        "requested_at": record.requested_at,
        "expires_at": record.expires_at,
        "updated_at": record.updated_at,
        "version": record.version,
        "tags": list(record.tags),
        "email_per_day": record.email_per_day,
        "response_rate": record.response_rate,
        "consent_url": record.consent_url,
        "campaign_id": record.campaign_id,
        "request_kind": record.request_kind.value if record.request_kind else None,
        "start_attempts": record.start_attempts,
        "parked": record.parked or None,
        "outcome_unknown": record.outcome_unknown or None,
        "history": [t.to_dict() for t in record.history],
        # The keys of the list API's index (LIST_INDEX), on every put of a mailbox.
        "item_kind": MAILBOX_KIND,
        "owner_updated_at": owner_prefix(record.requested_by_principal) + record.updated_at,
    }
    if record.last_error:
        error = record.last_error
        data["last_error"] = {
            "code": error.code,
            "message": error.message,
            "at": error.at,
            "request_id": error.request_id,
        }
    if record.state in _PURGEABLE:
        data["purge_at"] = int((parse_iso(record.expires_at) + PURGE_AFTER_END).timestamp())
    return encode(data) | mailbox_key(record.email)


def mailbox_from_item(item: Mapping[str, Any]) -> ExpectedMailbox:
    data = decode(item)
    error = data.get("last_error")
    return ExpectedMailbox(
        email=data["email"],
        state=MailboxState(data["state"]),
        first_name=data["first_name"],
        last_name=data.get("last_name"),
        requested_by=data["requested_by"],
        requested_by_principal=data.get("requested_by_principal"),
        request_fingerprint=data.get("request_fingerprint"),
        requested_at=data["requested_at"],
        expires_at=data["expires_at"],
        updated_at=data["updated_at"],
        version=int(data["version"]),
        tags=tuple(data.get("tags", ())),
        email_per_day=_optional_int(data.get("email_per_day")),
        response_rate=_optional_int(data.get("response_rate")),
        consent_url=data.get("consent_url"),
        campaign_id=data.get("campaign_id"),
        last_error=LastError(
            code=error["code"],
            message=error["message"],
            at=error["at"],
            request_id=error.get("request_id"),
        )
        if error
        else None,
        request_kind=RequestKind(data["request_kind"]) if data.get("request_kind") else None,
        start_attempts=int(data.get("start_attempts", 0)),
        parked=bool(data.get("parked", False)),
        outcome_unknown=bool(data.get("outcome_unknown", False)),
        history=tuple(Transition.from_dict(t) for t in data.get("history", ())),
    )


def _optional_int(value: Any) -> int | None:
    return None if value is None else int(value)


# --- the attribute-value codec: what the items above hold, and no more ---------------------
# boto3's TypeSerializer/TypeDeserializer would import boto3 (warmgate.adapters.aws says why not).


def encode(data: Mapping[str, Any]) -> dict[str, Any]:
    """Top-level attributes; None means "not stored"."""
    return {name: _attribute(value) for name, value in data.items() if value is not None}


def _attribute(value: Any) -> dict[str, Any]:
    if isinstance(value, str):
        return {"S": value}
    if isinstance(value, bool):  # before int: a bool is an int
        return {"BOOL": value}
    if isinstance(value, int | Decimal):
        return {"N": str(value)}
    if value is None:  # inside a map or list, e.g. a history entry's "from"
        return {"NULL": True}
    if isinstance(value, list | tuple):
        return {"L": [_attribute(v) for v in value]}
    if isinstance(value, Mapping):
        return {"M": {str(k): _attribute(v) for k, v in value.items()}}
    raise TypeError(f"no DynamoDB attribute for a {type(value).__name__}")


def decode(item: Mapping[str, Any]) -> dict[str, Any]:
    return {name: _value(attribute) for name, attribute in item.items()}


def _value(attribute: Mapping[str, Any]) -> Any:
    (kind, value), *_ = attribute.items()
    match kind:
        case "S" | "BOOL":
            return value
        case "N":  # only integers are stored; a decimal one is returned exactly
            return int(value) if value.lstrip("-").isdigit() else Decimal(value)
        case "NULL":
            return None
        case "L":
            return [_value(v) for v in value]
        case "M":
            return decode(value)
    raise ValueError(f"unexpected DynamoDB attribute type {kind!r}")
