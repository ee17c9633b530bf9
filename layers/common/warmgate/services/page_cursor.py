"""Opaque page cursors (GET /mailboxes `cursor`): the index key a page stopped at, as base64url
JSON without padding.

Opaque to the caller, so the key layout may change without changing the API; checked when it
comes back, because it turns into DynamoDB's ExclusiveStartKey: it must be a flat object of
exactly the expected names with non-empty string values, and not longer than a key can be.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from collections.abc import Collection, Mapping

MAX_CURSOR_CHARS = 2048  # three key attributes: an email, a principal ARN, a timestamp
_BASE64URL = re.compile(r"[A-Za-z0-9_-]+")


class InvalidCursor(ValueError):
    """A cursor this API did not issue, or issued for another listing; the message says why."""


def encode_cursor(key: Mapping[str, str]) -> str:
    raw = json.dumps(dict(key), separators=(",", ":"), sort_keys=True).encode()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def decode_cursor(cursor: str, names: Collection[str]) -> dict[str, str]:
    """The key `cursor` holds; InvalidCursor unless it is exactly `names`, each a string."""
    if len(cursor) > MAX_CURSOR_CHARS:
        raise InvalidCursor(f"longer than {MAX_CURSOR_CHARS} characters")
    if not _BASE64URL.fullmatch(cursor):
        raise InvalidCursor("not a cursor of this API (base64url expected)")
    try:
        data = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
    except (binascii.Error, UnicodeDecodeError, ValueError):
        raise InvalidCursor("not a cursor of this API") from None
    if (
        not isinstance(data, dict)
        or set(data) != set(names)
        or not all(isinstance(value, str) and value for value in data.values())
    ):
        raise InvalidCursor("not a cursor of this API")
    return data
