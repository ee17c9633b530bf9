"""The API's answers as typed values, mirroring the schemas of openapi.yaml.

Parsing is tolerant of fields the API adds later (ignored) and strict about the ones it
documents: a missing or mistyped field raises UnexpectedAnswer naming it.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Literal, TypeVar, cast, get_args

from warmgate_client.errors import UnexpectedAnswer

# openapi.yaml `MailboxState`; a state added later still parses (as its string).
MailboxState = Literal[
    "consent_requested",
    "resume_requested",
    "verifying",
    "warming",
    "paused",
    "connection_problem",
    "start_failed",
    "rejected",
    "request_failed",
    "expired",
    "withdrawn",
    "deleted",
]
MAILBOX_STATES: tuple[str, ...] = get_args(MailboxState)

T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class ConsentLink:
    """`POST /mailboxes`: the consent link to send the mailbox owner to."""

    email: str
    state: MailboxState
    consent_url: str
    expires_at: datetime
    created: bool  # True: a new link (201); False: the replay of the same request (200)

    @classmethod
    def from_json(cls, data: object, *, created: bool) -> ConsentLink:
        fields = _Fields(data, "ConsentLink")
        return cls(
            email=fields.text("email"),
            state=fields.state("state"),
            consent_url=fields.text("consent_url"),
            expires_at=fields.timestamp("expires_at"),
            created=created,
        )


@dataclass(frozen=True, slots=True)
class LastError:
    """Why the last call to Mailivery for this mailbox failed."""

    code: str
    message: str
    at: datetime
    request_id: str | None

    @classmethod
    def from_json(cls, data: object) -> LastError:
        fields = _Fields(data, "LastError")
        return cls(
            code=fields.text("code"),
            message=fields.text("message"),
            at=fields.timestamp("at"),
            request_id=fields.optional("request_id", fields.text),
        )


@dataclass(frozen=True, slots=True)
class Transition:
    """One step of the mailbox's history (`from`/`to` in the JSON)."""

    at: datetime
    from_state: MailboxState | None
    to_state: MailboxState
    reason: str

    @classmethod
    def from_json(cls, data: object) -> Transition:
        fields = _Fields(data, "Transition")
        return cls(
            at=fields.timestamp("at"),
            from_state=fields.optional("from", fields.state),
            to_state=fields.state("to"),
            reason=fields.text("reason"),
        )


@dataclass(frozen=True, slots=True)
class MailboxRecord:
    """`GET /mailboxes/{email}` (and the answers of withdraw and resume)."""

    email: str
    state: MailboxState
    state_description: str
    next_states: tuple[MailboxState, ...]
    expired: bool
    parked: bool
    request_kind: str | None  # onboard, reconnect, resume: the latest request
    open_request: bool
    campaign_id: str | None
    consent_url: str | None
    requested_by: str
    requested_by_principal: str | None
    requested_at: datetime
    expires_at: datetime
    updated_at: datetime
    last_error: LastError | None
    history: tuple[Transition, ...]

    @classmethod
    def from_json(cls, data: object) -> MailboxRecord:
        fields = _Fields(data, "MailboxRecord")
        return cls(
            **_summary_fields(fields),
            state_description=fields.text("state_description"),
            next_states=tuple(cast(MailboxState, s) for s in fields.array("next_states")),
            consent_url=fields.optional("consent_url", fields.text),
            last_error=fields.optional("last_error", fields.nested(LastError.from_json)),
            history=tuple(Transition.from_json(item) for item in fields.array("history")),
        )


@dataclass(frozen=True, slots=True)
class MailboxSummary:
    """One mailbox of `GET /mailboxes`; `get(email)` has the whole record."""

    email: str
    state: MailboxState
    expired: bool
    parked: bool
    request_kind: str | None
    open_request: bool
    campaign_id: str | None
    requested_by: str
    requested_by_principal: str | None
    requested_at: datetime
    expires_at: datetime
    updated_at: datetime

    @classmethod
    def from_json(cls, data: object) -> MailboxSummary:
        return cls(**_summary_fields(_Fields(data, "MailboxSummary")))


@dataclass(frozen=True, slots=True)
class MailboxListing:
    """One page of `GET /mailboxes`; pass `next_cursor` to `list` for the next (None: last)."""

    mailboxes: tuple[MailboxSummary, ...]
    next_cursor: str | None

    @classmethod
    def from_json(cls, data: object) -> MailboxListing:
        fields = _Fields(data, "MailboxListing")
        return cls(
            mailboxes=tuple(MailboxSummary.from_json(item) for item in fields.array("mailboxes")),
            next_cursor=fields.optional("next_cursor", fields.text),
        )


def _summary_fields(fields: _Fields) -> dict[str, Any]:
    """The fields a MailboxSummary has, and a MailboxRecord too."""
    return {
        "email": fields.text("email"),
        "state": fields.state("state"),
        "expired": fields.boolean("expired"),
        "parked": fields.boolean("parked"),
        "request_kind": fields.optional("request_kind", fields.text),
        "open_request": fields.boolean("open_request"),
        "campaign_id": fields.optional("campaign_id", fields.text),
        "requested_by": fields.text("requested_by"),
        "requested_by_principal": fields.optional("requested_by_principal", fields.text),
        "requested_at": fields.timestamp("requested_at"),
        "expires_at": fields.timestamp("expires_at"),
        "updated_at": fields.timestamp("updated_at"),
    }


class _Fields:
    """Typed access to one JSON object of an answer; each failure names schema and field."""

    def __init__(self, data: object, schema: str) -> None:
        if not isinstance(data, Mapping):
            raise UnexpectedAnswer(f"{schema}: expected a JSON object, got {type(data).__name__}")
        self._data = cast(Mapping[str, Any], data)
        self._schema = schema

    def _get(self, name: str) -> Any:
        if name not in self._data:
            raise UnexpectedAnswer(f"{self._schema}.{name}: missing")
        return self._data[name]

    def _typed(self, name: str, kind: type[T]) -> T:
        value = self._get(name)
        if not isinstance(value, kind):
            raise UnexpectedAnswer(
                f"{self._schema}.{name}: expected {kind.__name__}, got {type(value).__name__}"
            )
        return value

    def text(self, name: str) -> str:
        return self._typed(name, str)

    def boolean(self, name: str) -> bool:
        return self._typed(name, bool)

    def array(self, name: str) -> list[Any]:
        return self._typed(name, list)

    def state(self, name: str) -> MailboxState:
        return cast(MailboxState, self.text(name))

    def timestamp(self, name: str) -> datetime:
        value = self.text(name)
        try:
            # fromisoformat accepts "Z" from Python 3.11 on; the API always writes UTC as "Z".
            return datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise UnexpectedAnswer(f"{self._schema}.{name}: not a timestamp: {value!r}") from None

    def nested(self, parse: Callable[[object], T]) -> Callable[[str], T]:
        return lambda name: parse(self._get(name))

    def optional(self, name: str, read: Callable[[str], T]) -> T | None:
        return None if self._get(name) is None else read(name)
