"""MailboxTable stream records shaped as Lambda delivers them, made from the repository's own
item layout (so a change there is what the event mapping is tested against)."""

from __future__ import annotations

import itertools
from dataclasses import replace
from datetime import UTC, datetime, timedelta
from typing import Any

from warmgate.adapters.mailbox_items import ledger_to_item, mailbox_to_item
from warmgate.domain.ledger import CampaignLedgerEntry, LedgerState
from warmgate.domain.mailboxes import ExpectedMailbox, MailboxState, RequestKind, Transition, iso

STREAM_ARN = (
    "arn:aws:dynamodb:eu-west-1:123456789012:table/warmgate-mailboxes-test/stream/"
    "2026-11-26T00:00:00.000"
)
T0 = datetime(2026, 11, 26, 9, 0, tzinfo=UTC)
_sequence = itertools.count(1_100_000_000_000_000_000_001)


def stream_record(
    new: dict[str, Any] | None, old: dict[str, Any] | None = None, sequence: str | None = None
) -> dict[str, Any]:
    """One record of a DynamoDB event (NEW_AND_OLD_IMAGES) for a write from `old` to `new`."""
    image = new if new is not None else old
    assert image is not None
    change: dict[str, Any] = {
        "ApproximateCreationDateTime": 1764147600,
        "Keys": {"pk": image["pk"]},
        "SequenceNumber": sequence or str(next(_sequence)),
        "SizeBytes": 512,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if new is not None:
        change["NewImage"] = new
    if old is not None:
        change["OldImage"] = old
    return {
        "eventID": f"e{change['SequenceNumber'][-8:]}",
        "eventName": "MODIFY" if new and old else ("INSERT" if new else "REMOVE"),
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "eu-west-1",
        "dynamodb": change,
        "eventSourceARN": STREAM_ARN,
    }


def new_mailbox(email: str = "ada@contoso.com", at: datetime = T0) -> ExpectedMailbox:
    """A mailbox as POST /mailboxes first writes it (version 1)."""
    return ExpectedMailbox(
        email=email,
        state=MailboxState.CONSENT_REQUESTED,
        first_name="Ada",
        requested_by="user-42",
        requested_by_principal="arn:aws:iam::123456789012:user/integrator",
        requested_at=iso(at),
        expires_at=iso(at + timedelta(hours=24)),
        updated_at=iso(at),
        version=1,
        request_kind=RequestKind.ONBOARD,
        history=(Transition(iso(at), None, MailboxState.CONSENT_REQUESTED, "consent requested"),),
    )


def saved(record: ExpectedMailbox, previous: ExpectedMailbox) -> ExpectedMailbox:
    """`record` as the repository stores it over `previous` (version + 1)."""
    return replace(record, version=previous.version + 1)


def mailbox_write(new: ExpectedMailbox, old: ExpectedMailbox | None = None) -> dict[str, Any]:
    return stream_record(mailbox_to_item(new), mailbox_to_item(old) if old else None)


def ledger_entry(
    state: LedgerState, campaign_id: str = "4712", version: int = 1, at: datetime = T0
) -> CampaignLedgerEntry:
    return CampaignLedgerEntry(
        campaign_id=campaign_id,
        state=state,
        email="mallory@contoso.com",
        reason="no expectation for this mailbox; policy leave (pending)",
        first_seen_at=iso(at),
        updated_at=iso(at),
        version=version,
    )


def ledger_write(
    new: CampaignLedgerEntry, old: CampaignLedgerEntry | None = None
) -> dict[str, Any]:
    return stream_record(ledger_to_item(new), ledger_to_item(old) if old else None)
