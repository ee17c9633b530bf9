"""The mailbox as its readers see it: one serializer for every place a mailbox leaves warmgate.

Each view is the one before it and what its reader needs besides, so a field is written once:
- `consent_link`: `POST /mailboxes`' answer (openapi.yaml ConsentLink);
- `mailbox_fields`: what a mailbox event's detail says of the mailbox
  (schemas/events/mailbox-event.json; the event adds its previous state, reason and sequence);
- `mailbox_summary`: a mailbox in `GET /mailboxes` (openapi.yaml MailboxSummary);
- `mailbox_record`: the whole record, `GET`/`DELETE /mailboxes/{email}` and `.../resume`
  (openapi.yaml MailboxRecord); the operator CLI shows it too, without the consent URL.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from warmgate.domain.mailboxes import (
    STATE_DESCRIPTIONS,
    ExpectedMailbox,
    LastError,
    MailboxState,
    next_states,
)


def consent_link(mailbox: ExpectedMailbox) -> dict[str, Any]:
    """POST /mailboxes' answer (openapi.yaml ConsentLink): the link to send the owner."""
    return {
        **_identity(mailbox),
        "consent_url": mailbox.consent_url,
        "expires_at": mailbox.expires_at,
    }


def mailbox_fields(mailbox: ExpectedMailbox) -> dict[str, Any]:
    """Who the mailbox is, where it stands and who asked for it."""
    return {
        **_identity(mailbox),
        "campaign_id": mailbox.campaign_id,
        "requested_by": mailbox.requested_by,
        "requested_by_principal": mailbox.requested_by_principal,
        "request_kind": mailbox.request_kind.value if mailbox.request_kind else None,
        "parked": mailbox.parked,
    }


def mailbox_summary(mailbox: ExpectedMailbox, now: datetime) -> dict[str, Any]:
    """The fields, with the request's times and what they mean `now`."""
    return {
        **mailbox_fields(mailbox),
        "expired": mailbox.state is MailboxState.CONSENT_REQUESTED and mailbox.is_expired(now),
        "open_request": mailbox.has_open_request(now),
        "requested_at": mailbox.requested_at,
        "expires_at": mailbox.expires_at,
        "updated_at": mailbox.updated_at,
    }


def mailbox_record(mailbox: ExpectedMailbox, now: datetime) -> dict[str, Any]:
    """The summary, the state's meaning and where it may go, the last error and the history.
    The consent URL only while it may be used: it is the mailbox owner's login link."""
    return {
        **mailbox_summary(mailbox, now),
        "state_description": STATE_DESCRIPTIONS[mailbox.state],
        "next_states": [state.value for state in next_states(mailbox.state)],
        "consent_url": mailbox.consent_url if mailbox.has_live_link(now) else None,
        "last_error": None if mailbox.last_error is None else last_error_view(mailbox.last_error),
        "history": [transition.to_dict() for transition in mailbox.history],
    }


def last_error_view(error: LastError) -> dict[str, Any]:
    return {
        "code": error.code,
        "message": error.message,
        "at": error.at,
        "request_id": error.request_id,
    }


def _identity(mailbox: ExpectedMailbox) -> dict[str, Any]:
    return {"email": mailbox.email, "state": mailbox.state.value}
