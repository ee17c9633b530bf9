"""The opaque page cursor of GET /mailboxes: what it encodes, and what it refuses to decode."""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from warmgate.adapters.mailbox_items import LIST_INDEX_KEYS, is_list_key, owner_prefix
from warmgate.services.page_cursor import (
    MAX_CURSOR_CHARS,
    InvalidCursor,
    decode_cursor,
    encode_cursor,
)

ALICE = "arn:aws:iam::123456789012:user/alice"
KEY = {
    "pk": "mailbox#ada@contoso.com",
    "item_kind": "mailbox",
    "owner_updated_at": f"{ALICE}|2026-11-26T09:00:00Z",
}


def raw(document: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(document).encode()).rstrip(b"=").decode()


def test_cursor_round_trip_is_url_safe_without_padding() -> None:
    cursor = encode_cursor(KEY)

    assert decode_cursor(cursor, LIST_INDEX_KEYS) == KEY
    assert cursor.isascii()
    assert not set(cursor) & set("+/=")


# Keys as long as real ones get: an email (254), a principal ARN, a timestamp.
KEY_TEXT = st.text(st.characters(min_codepoint=32, max_codepoint=126), min_size=1, max_size=250)


@given(st.fixed_dictionaries(dict.fromkeys(LIST_INDEX_KEYS, KEY_TEXT)))
def test_cursor_round_trip_any_key_of_the_index(key: dict[str, str]) -> None:
    assert decode_cursor(encode_cursor(key), LIST_INDEX_KEYS) == key


@pytest.mark.parametrize(
    ("cursor", "problem"),
    [
        ("not a cursor!", "base64url expected"),
        ("", "base64url expected"),
        ("A", "not a cursor of this API"),  # no whole byte
        (raw(["pk"]), "not a cursor of this API"),
        (raw({"pk": "mailbox#a@b.co"}), "not a cursor of this API"),  # keys missing
        (raw({**KEY, "extra": "x"}), "not a cursor of this API"),
        (raw({**KEY, "pk": 7}), "not a cursor of this API"),
        (raw({**KEY, "pk": ""}), "not a cursor of this API"),
        (base64.urlsafe_b64encode(b"\xff\xfe").decode().rstrip("="), "not a cursor of this API"),
        ("A" * (MAX_CURSOR_CHARS + 1), "longer than"),
    ],
)
def test_decode_cursor_refuses_what_this_api_did_not_issue(cursor: str, problem: str) -> None:
    with pytest.raises(InvalidCursor, match=problem):
        decode_cursor(cursor, LIST_INDEX_KEYS)


def test_is_list_key_holds_a_cursor_to_its_owner_listing() -> None:
    assert is_list_key(KEY, ALICE)
    assert is_list_key(KEY, None)  # an admin's listing holds every mailbox
    assert not is_list_key(KEY, "arn:aws:iam::123456789012:user/ali")  # a prefix is no owner
    assert not is_list_key({**KEY, "pk": "campaign#4711"}, None)
    assert not is_list_key({**KEY, "item_kind": "campaign"}, None)
    assert owner_prefix(None) == "anonymous|"
