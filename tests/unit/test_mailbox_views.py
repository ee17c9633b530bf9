"""One mailbox serializer (warmgate.domain.mailbox_views) for the API's answers, the mailbox
events and the operator CLI: each view extends the one before it, and the API's conform to
openapi.yaml in every state (the events' detail is checked against its schema in
test_mailbox_events.py)."""

from __future__ import annotations

import json
from dataclasses import replace
from datetime import timedelta
from typing import Any

import httpx
import pytest

from tests.openapi_contract import answer_problems, find_operation
from tests.stream_records import T0, new_mailbox
from warmgate.domain.mailbox_views import mailbox_fields, mailbox_record, mailbox_summary
from warmgate.domain.mailboxes import ExpectedMailbox, LastError, MailboxState

JSON = httpx.Headers({"content-type": "application/json"})
LINK = "https://app.mailivery.io/consent/abc"


def linked(**changes: Any) -> ExpectedMailbox:
    """A new mailbox with its consent link stored, then `changes`."""
    return replace(new_mailbox(), consent_url=LINK, **changes)


def problems(method: str, path: str, status: int, body: object) -> list[str]:
    operation = find_operation(method, path)
    assert operation is not None, f"{method} {path} is not in openapi.yaml"
    return answer_problems(operation, status, JSON, json.dumps(body).encode())


@pytest.mark.parametrize("state", list(MailboxState))
def test_record_and_summary_conform_to_openapi_in_every_state(state: MailboxState) -> None:
    error = LastError("START_REFUSED", "Mailivery said no", "2026-11-26T09:05:00Z", "req-1")
    mailbox = linked(state=state, campaign_id="4711", last_error=error)

    record = mailbox_record(mailbox, T0)
    listing = {"mailboxes": [mailbox_summary(mailbox, T0)], "next_cursor": None}

    assert problems("GET", "/mailboxes/ada%40contoso.com", 200, record) == []
    assert problems("GET", "/mailboxes", 200, listing) == []


def test_each_view_extends_the_one_before_it_with_the_same_values() -> None:
    mailbox = linked(campaign_id="4711")

    fields = mailbox_fields(mailbox)
    summary = mailbox_summary(mailbox, T0)
    record = mailbox_record(mailbox, T0)

    assert summary.items() >= fields.items()
    assert record.items() >= summary.items()
    assert set(record) - set(summary) == {
        "state_description",
        "next_states",
        "consent_url",
        "last_error",
        "history",
    }


def test_record_shows_the_consent_url_only_while_it_may_be_used() -> None:
    mailbox = linked()
    expired = T0 + timedelta(hours=25)

    assert mailbox_record(mailbox, T0)["consent_url"] == LINK
    assert mailbox_record(mailbox, expired)["consent_url"] is None
    assert mailbox_summary(mailbox, expired)["expired"] is True
    assert mailbox_record(replace(mailbox, state=MailboxState.WARMING), T0)["consent_url"] is None
    assert "consent_url" not in mailbox_summary(mailbox, T0)
