"""Laravel-style validation of the vendor's and the control surface's bodies: field rules and
their messages, and the campaign fields both the create call and a seed take."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Final, cast, get_args
from urllib.parse import parse_qsl, quote

from devstack.sandbox.errors import ValidationFailed, bad_request
from devstack.sandbox.store import (
    DEFAULT_EMAIL_PER_DAY,
    DEFAULT_RESPONSE_RATE,
    EMAIL_PER_DAY_RANGE,
    Campaign,
    CampaignStatus,
    ConsentRequest,
    utc_now_iso,
)

EMAIL_RE: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")


def split_tags(raw: str) -> list[str]:
    return [tag.strip() for tag in raw.split(",") if tag.strip()]


def non_negative_int(body: Mapping[str, Any], name: str) -> int:
    value = body[name]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise bad_request(f"{name} must be a non-negative integer.")
    return value


def reject_unknown(body: Mapping[str, Any], known: Iterable[str], what: str) -> None:
    """A control body names only settings the sandbox has: a typo is refused, not ignored."""
    unknown = sorted(set(body) - set(known))
    if unknown:
        raise bad_request(f"Unknown {what}: {', '.join(unknown)}.")


def choice(body: Mapping[str, Any], name: str, literal: Any) -> Any:
    allowed = get_args(literal)
    if body[name] not in allowed:
        raise bad_request(f"{name} must be one of {list(allowed)}.")
    return body[name]


class FieldValidator:
    """Laravel-style field rules and messages, enough for the fields the contract names."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.errors: dict[str, list[str]] = {}

    def fail(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def check(self) -> None:
        if self.errors:
            raise ValidationFailed(self.errors)

    def string(self, name: str, *, required: bool = False, max_len: int = 255) -> str | None:
        label = name.replace("_", " ")
        value = self.data.get(name)
        if isinstance(value, str):
            # Laravel's TrimStrings + ConvertEmptyStringsToNull middleware.
            value = value.strip() or None
        if value is None:
            if required:
                self.fail(name, f"The {label} field is required.")
            return None
        if not isinstance(value, str):
            self.fail(name, f"The {label} must be a string.")
            return None
        if len(value) > max_len:
            self.fail(name, f"The {label} must not be greater than {max_len} characters.")
        return value

    def email(self, name: str) -> str | None:
        value = self.string(name, required=True)
        if value is not None and not EMAIL_RE.match(value):
            self.fail(name, f"The {name} must be a valid email address.")
        return value

    def integer(self, name: str, low: int, high: int) -> int | None:
        label = name.replace("_", " ")
        value = self.data.get(name)
        if value is None or value == "":
            return None
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif (isinstance(value, float) and value.is_integer()) or (
            isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip())
        ):
            number = int(value)
        if number is None:
            self.fail(name, f"The {label} must be an integer.")
        elif not low <= number <= high:
            self.fail(name, f"The {label} must be between {low} and {high}.")
        return number

    def choice(self, name: str, allowed: Sequence[str], default: str) -> str:
        value = self.data.get(name, default)
        if value not in allowed:
            self.fail(name, f"The selected {name.replace('_', ' ')} is invalid.")
            return default
        return cast(str, value)

    def tags_and_meta(self) -> tuple[list[str], str | None]:
        """Tags from `tags` (list or "a,b") or `meta.tags`; meta as the webhook's query string."""
        raw_meta = self.data.get("meta")
        meta_pairs: list[tuple[str, str]] = []
        if isinstance(raw_meta, Mapping):
            meta_pairs = [(str(k), str(v)) for k, v in raw_meta.items() if v is not None]
        elif isinstance(raw_meta, str):
            meta_pairs = parse_qsl(raw_meta.strip(), keep_blank_values=True)
        elif raw_meta is not None:
            self.fail("meta", "The meta must be an array.")
        raw_tags = self.data.get("tags")
        tags: list[str] = []
        if raw_tags is None:
            tags = split_tags(dict(meta_pairs).get("tags", ""))
        elif isinstance(raw_tags, str):
            tags = split_tags(raw_tags)
        elif isinstance(raw_tags, list) and all(isinstance(t, str | int) for t in raw_tags):
            tags = [str(t).strip() for t in raw_tags if str(t).strip()]
        else:
            self.fail("tags", "The tags must be an array.")
        if tags and "tags" not in dict(meta_pairs):
            meta_pairs.append(("tags", ", ".join(tags)))
        # The reference's own example: "tags=tenant-42,%20sales" (commas kept, spaces encoded).
        meta = "&".join(f"{quote(k)}={quote(v, safe=',')}" for k, v in meta_pairs)
        return tags, meta or None


def consent_request(
    body: Mapping[str, Any], *, taken: Callable[[str], bool] | None = None
) -> ConsentRequest:
    """The body of `POST /campaigns/ms-graph`; `taken` refuses a mailbox that has a campaign."""
    check = FieldValidator(body)
    fields = _campaign_fields(check)
    if fields["email"] is not None and taken is not None and taken(fields["email"]):
        check.fail("email", "The email has already been taken.")
    check.check()
    return ConsentRequest(**fields)


@dataclass(frozen=True)
class SeedRequest:
    """The body of `POST /_sandbox/campaigns`: a campaign made without a consent."""

    campaign: Campaign
    explicit_id: bool
    notify: bool


def seed_request(body: Mapping[str, Any]) -> SeedRequest:
    check = FieldValidator(body)
    fields = _campaign_fields(check)
    status = check.choice("status", get_args(CampaignStatus), "pending")
    explicit_id = check.integer("id", 1, 2**31 - 1)
    notify = body.get("notify", False)
    if not isinstance(notify, bool):
        check.fail("notify", "The notify field must be true or false.")
    check.check()
    campaign = Campaign(
        id=explicit_id or 0,
        status=cast(CampaignStatus, status),
        created_at=utc_now_iso(),
        **fields,
    )
    return SeedRequest(campaign, explicit_id is not None, notify)


def _campaign_fields(check: FieldValidator) -> dict[str, Any]:
    """The fields a campaign is made with, the vendor's defaults filled in; `check` collects
    what is wrong with them (the caller raises, after its own checks)."""
    email = check.email("email")
    first_name = check.string("first_name", required=True)
    last_name = check.string("last_name")
    email_per_day = check.integer("email_per_day", *EMAIL_PER_DAY_RANGE)
    response_rate = check.integer("response_rate", 0, 100)
    audience = check.string("warmup_audience_type")
    tags, meta = check.tags_and_meta()
    return {
        "email": email,
        "first_name": first_name,
        "last_name": last_name,
        "tags": tags,
        "meta": meta,
        "email_per_day": DEFAULT_EMAIL_PER_DAY if email_per_day is None else email_per_day,
        "response_rate": DEFAULT_RESPONSE_RATE if response_rate is None else response_rate,
        "warmup_audience_type": audience,
    }
