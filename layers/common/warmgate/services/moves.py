"""One move of a mailbox's state machine, recorded: the event's transition (domain.mailboxes
MOVES: each event has one target state; an illegal move raises) written only if the record is
still as it was read."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from warmgate.domain.mailboxes import MOVES, ExpectedMailbox, MailboxEvent
from warmgate.services.ports import MailboxStore


def save_move(
    store: MailboxStore,
    record: ExpectedMailbox,
    event: MailboxEvent,
    *,
    now: datetime,
    reason: str,
    with_token: bool = False,
    **changes: Any,
) -> ExpectedMailbox:
    """The record as stored after `event`; StaleRecord if it changed since it was read.
    `with_token`: the claim takes the vendor call's budget token in the same write."""
    _, target = MOVES[event]
    moved = record.transition(target, event=event, now=now, reason=reason, **changes)
    return store.save(moved, read_version=record.version, with_token=with_token)
