"""Mailivery webhook envelope: tolerant of every documented quirk, strict only about identity.

Mailivery webhooks carry no signature, event id or timestamp (contract §4), so the payload is a
*hint*: the worker re-reads the campaign before acting. This model therefore only insists on what
the receiver needs to enqueue and dedup a hint: a usable `type` and a usable campaign id, or,
without an id, a usable email. Everything else is accepted in whatever shape arrives; an email
that is not a plausible address is kept as sent and flagged (`email_hint_invalid`), never a
reason to refuse a webhook whose campaign id is usable (Mailivery does not retry after a 4xx).

This module is on the webhook Lambda's hot path: stdlib, pydantic, warmgate.domain.emails and
warmgate.domain.campaign_ids only.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Any, Final
from urllib.parse import parse_qsl

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    JsonValue,
    PrivateAttr,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from warmgate.domain.campaign_ids import InvalidCampaignId, parse_campaign_id
from warmgate.domain.emails import InvalidEmail, normalize_email

__all__ = [
    "MAX_EVENT_TYPE_LENGTH",
    "EventType",
    "WebhookAccount",
    "WebhookEnvelope",
    "WebhookInvalid",
    "WebhookNotJson",
    "WebhookRejected",
    "parse_webhook",
]

# Error types of our own validators. `_FIELD_PROBLEM` messages are a bare problem ("must be …")
# that gets the field's dotted path prepended; `_WHOLE_MESSAGE` messages already name the fields.
_FIELD_PROBLEM: Final = "warmgate_field_problem"
_WHOLE_MESSAGE: Final = "warmgate_whole_message"

IDENTITY_REQUIRED: Final = "account.email or account.campaign_id is required"
# Every queued copy of `type` (body, dedup key, attributes) is bounded by this (README "Limits").
MAX_EVENT_TYPE_LENGTH: Final = 128


class EventType(StrEnum):
    """The event types warmgate knows: the `type` values documented in contract §4, and the
    one warmgate queues itself. Others (e.g. the undocumented connection-problem event, whose
    markers are in the vendor contract) are accepted and reported as the raw string."""

    PENDING = "campaign.pending"
    CREATED = "campaign.created"
    UPDATED = "campaign.updated"
    DELETED = "campaign.deleted"
    # The message warmgate queues for POST /mailboxes/{email}/resume: "act on this campaign's
    # open request" (handled like a webhook: the same re-read, claims and idempotency).
    RESUME_REQUESTED = "warmgate.resume_requested"


_KNOWN_TYPES: Final = frozenset(t.value for t in EventType)


class WebhookRejected(ValueError):
    """The body cannot be accepted as a Mailivery webhook.

    `reason` names the field and the problem, never the submitted values: the body holds personal
    data (names, mailbox addresses) and the reason ends up in logs and HTTP responses.
    """

    def __init__(self, reason: str, fields: tuple[str, ...] = ()) -> None:
        super().__init__(reason)
        self.reason = reason
        self.fields = fields


class WebhookNotJson(WebhookRejected):
    """The body is not UTF-8 JSON whose top level is an object (the receiver answers 400)."""


class WebhookInvalid(WebhookRejected):
    """The body is a JSON object but lacks or mangles a required field (receiver answers 422)."""


def _problem(message: str) -> PydanticCustomError:
    return PydanticCustomError(_FIELD_PROBLEM, message)


def _optional_text(value: Any) -> str | None:
    """Descriptive fields (names, provider type, action) are hints the worker never trusts, so an
    odd shape is dropped rather than allowed to reject an otherwise usable webhook."""
    if isinstance(value, str):
        return value.strip() or None
    return None


def _meta_value(value: Any) -> str | None:
    if value is None:
        return None
    if isinstance(value, str):
        return value
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return str(value)
    if isinstance(value, list) and all(isinstance(item, str | int | float) for item in value):
        # Same "a,b" form as the query-string meta, so `meta.tags` reads alike in every shape.
        return ",".join(str(item) for item in value)
    # Nested structures are kept, not dropped, so nothing the vendor sent is silently lost.
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False, default=str)


def _normalize_meta(value: Any) -> dict[str, str] | None:
    """`meta` is null, "", an object, or a URL-encoded query string such as
    "meta=4f2a…&tags=97694201,%20worthcoding" (contract §4 quirk); always hand out a dict."""
    if value is None:
        return None
    if isinstance(value, dict):
        pairs = [(str(k), _meta_value(v)) for k, v in value.items()]
        return {k: v for k, v in pairs if v is not None}
    if isinstance(value, str):
        text = value.strip()
        if not text:
            return None
        if text.startswith("{"):
            # Not seen yet, but a JSON-encoded object is the other obvious way to stringify meta.
            try:
                decoded = json.loads(text)
            except (ValueError, RecursionError):
                decoded = None
            if isinstance(decoded, dict):
                return _normalize_meta(decoded)
        parsed: dict[str, str] = {}
        for key, item in parse_qsl(text, keep_blank_values=True):
            # A repeated key (tags=a&tags=b) keeps every value rather than the last one.
            parsed[key] = f"{parsed[key]},{item}" if key in parsed else item
        return parsed
    # A number or list in `meta` is not a documented shape; meta is a hint, so ignore it.
    return None


def _split_tags(value: str) -> list[str]:
    return [tag.strip() for tag in value.split(",") if tag.strip()]


def _normalize_tags(value: Any) -> list[str]:
    """`tags` is a list whose items can carry leading spaces (contract §4), or, as in meta, a
    comma-separated string; null means none."""
    if value is None:
        return []
    if isinstance(value, str):
        return _split_tags(value)
    if isinstance(value, list | tuple):
        tags: list[str] = []
        for item in value:
            # Numeric tags ("97694201" in the reference's meta example) may arrive as numbers.
            if isinstance(item, int | float) and not isinstance(item, bool):
                item = str(item)
            if isinstance(item, str) and item.strip():
                tags.append(item.strip())
        return tags
    if isinstance(value, int | float) and not isinstance(value, bool):
        return [str(value)]
    return []


class WebhookAccount(BaseModel):
    """The `account` object of a Mailivery webhook, normalized. Unknown fields are kept."""

    model_config = ConfigDict(extra="allow")

    campaign_id: str | None = None
    # As sent, whatever its shape: only a hint (the worker re-reads the campaign's address).
    email: JsonValue = None
    first_name: str | None = None
    # An older reference example spells it `lalst_name` (contract §4); `last_name` wins if present.
    last_name: str | None = Field(
        default=None, validation_alias=AliasChoices("last_name", "lalst_name")
    )
    provider_type: str | None = None
    # campaign.deleted carries `type: "smtp"` instead of `provider_type` (contract §4).
    type: str | None = None
    tags: list[str] = Field(default_factory=list)
    meta: dict[str, str] | None = None

    _normalized_email: str | None = PrivateAttr(default=None)
    _email_problem: str | None = PrivateAttr(default=None)

    @field_validator("campaign_id", mode="before")
    @classmethod
    def _campaign_id_as_string(cls, value: Any) -> str | None:
        # Integer in the examples, string elsewhere (contract §1): stored as a string key. An id
        # that is present but unusable is refused, not replaced by the email: looking the
        # campaign up by address could act on a campaign the sender did not name.
        if value is None:
            return None
        if isinstance(value, str):
            value = value.strip()
            if not value:
                return None
        try:
            return parse_campaign_id(value)
        except InvalidCampaignId as exc:
            raise _problem(exc.problem) from None

    @field_validator("email", mode="before")
    @classmethod
    def _blank_email_is_absent(cls, value: Any) -> Any:
        return None if isinstance(value, str) and not value.strip() else value

    @field_validator("first_name", "last_name", "provider_type", "type", mode="before")
    @classmethod
    def _descriptive_text(cls, value: Any) -> str | None:
        return _optional_text(value)

    @field_validator("tags", mode="before")
    @classmethod
    def _tags_list(cls, value: Any) -> list[str]:
        return _normalize_tags(value)

    @field_validator("meta", mode="before")
    @classmethod
    def _meta_dict(cls, value: Any) -> dict[str, str] | None:
        return _normalize_meta(value)

    @model_validator(mode="after")
    def _identity_and_meta_tags(self) -> WebhookAccount:
        if self.email is not None:
            try:
                self._normalized_email = normalize_email(self.email)
            except InvalidEmail as exc:  # a non-string too: "email must be a string"
                self._email_problem = str(exc)
        if self.campaign_id is None and self._normalized_email is None:
            if self._email_problem is None:
                raise PydanticCustomError(_WHOLE_MESSAGE, IDENTITY_REQUIRED)
            raise PydanticCustomError(
                _WHOLE_MESSAGE,
                "account.campaign_id is required when account.email is not usable: "
                + self._email_problem,
            )
        # The ms-graph create may carry tags only as `meta.tags` "a,b" (contract §2, [unknown]);
        # campaign.updated has no `tags` at all. Fall back to meta so the tags are not lost.
        if not self.tags and self.meta and self.meta.get("tags"):
            self.tags = _split_tags(self.meta["tags"])
        return self

    @property
    def normalized_email(self) -> str | None:
        """The address in the form every comparison in warmgate uses (warmgate.domain.emails); None
        when none was sent or it is not a plausible address (see `email_hint_invalid`)."""
        return self._normalized_email

    @property
    def email_hint_invalid(self) -> bool:
        """An email was sent but is no usable address: it is dropped from the hint, not
        refused (the raw value stays in the payload)."""
        return self._email_problem is not None


class WebhookEnvelope(BaseModel):
    """`{"type": "campaign.<x>", "action": "<x>", "account": {...}}` (contract §4)."""

    model_config = ConfigDict(extra="allow")

    type: str
    action: str | None = None
    account: WebhookAccount

    @field_validator("type", mode="before")
    @classmethod
    def _type_non_empty(cls, value: Any) -> str:
        if not isinstance(value, str):
            raise _problem("must be a string")
        text = value.strip()
        if not text:
            raise _problem("must not be empty")
        if len(text) > MAX_EVENT_TYPE_LENGTH:
            raise _problem(f"is longer than {MAX_EVENT_TYPE_LENGTH} characters")
        return text

    @field_validator("action", mode="before")
    @classmethod
    def _action_text(cls, value: Any) -> str | None:
        return _optional_text(value)

    @property
    def event_type(self) -> EventType | str:
        """The documented type as an enum member, an unknown type as sent (never rejected)."""
        return EventType(self.type) if self.type in _KNOWN_TYPES else self.type

    @property
    def campaign_id(self) -> str | None:
        return self.account.campaign_id

    @property
    def normalized_email(self) -> str | None:
        return self.account.normalized_email

    @property
    def email_hint_invalid(self) -> bool:
        return self.account.email_hint_invalid

    @property
    def dedup_key(self) -> str:
        """The event's name, (type, campaign_id), else (type, mailbox): copies of one delivery
        share it. There is no event id (contract §4); the worker logs this key with its
        decision, so copies can be grouped, and dedups on its records, not on the key."""
        return f"{self.type}:{self.campaign_id or self.normalized_email}"


def _describe(error: Any) -> tuple[str, str]:
    """One pydantic error as (field path, message), without the offending input value."""
    field = ".".join(str(part) for part in error["loc"])
    kind = error["type"]
    if kind == _WHOLE_MESSAGE:
        message = str(error["msg"])
    elif kind == _FIELD_PROBLEM:
        message = f"{field} {error['msg']}"
    elif kind == "missing":
        message = f"{field} is required"
    elif kind in ("model_type", "model_attributes_type", "dict_type"):
        message = f"{field} must be an object"
    else:
        # pydantic's own `msg` describes the expectation, not the input; `input` is never used.
        message = f"{field}: {error['msg']}"
    return field or "body", message


def parse_webhook(body: bytes | str) -> WebhookEnvelope:
    """Parse a raw webhook body, or raise WebhookNotJson / WebhookInvalid (both WebhookRejected).

    Nothing else escapes: no json or pydantic errors, and no reason that echoes the body.
    """
    if isinstance(body, bytes | bytearray | memoryview):
        try:
            # utf-8-sig: a stray BOM is a transport quirk, not a reason to drop a webhook.
            text = bytes(body).decode("utf-8-sig")
        except UnicodeDecodeError:
            raise WebhookNotJson("body is not valid UTF-8") from None
    elif isinstance(body, str):
        text = body
    else:
        raise WebhookNotJson("body must be bytes or text")

    try:
        document = json.loads(text)
    except RecursionError:
        raise WebhookNotJson("body is nested too deeply") from None
    except ValueError:  # JSONDecodeError, and the int-digits limit (also a ValueError)
        raise WebhookNotJson("body is not valid JSON") from None
    if not isinstance(document, dict):
        raise WebhookNotJson("body must be a JSON object")

    try:
        return WebhookEnvelope.model_validate(document)
    except ValidationError as exc:
        described = [_describe(error) for error in exc.errors(include_input=False)]
    except RecursionError:
        raise WebhookInvalid("body is nested too deeply") from None
    fields = tuple(dict.fromkeys(field for field, _ in described))
    reason = "; ".join(dict.fromkeys(message for _, message in described))
    raise WebhookInvalid(reason, fields)
