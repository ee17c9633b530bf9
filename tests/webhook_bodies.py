"""Webhook bodies shared by the unit and integration tests of the receiver: emails that are no
usable address, and the largest webhook the receiver accepts."""

from __future__ import annotations

import json
from typing import Any, Final

from warmgate.api.webhook_intake import MAX_WEBHOOK_BODY_BYTES
from warmgate.domain.campaign_ids import MAX_CAMPAIGN_ID_LENGTH
from warmgate.domain.webhooks import MAX_EVENT_TYPE_LENGTH

# account.email values a webhook with a usable campaign id must be accepted with (issue 13 §1):
# each is dropped from the hint and flagged, never a reason to refuse.
UNUSABLE_EMAILS: Final[dict[str, Any]] = {
    "idn-unicode": "иван@пример.рф",
    "long-local-part": "a" * 5000 + "@contoso.com",
    "nul-byte": "ada\x00@contoso.com",
    "full-width-at": "ada\uff20contoso.com",
    "quoted": '"ada lovelace"@contoso.com',
    "sql": "x'; DROP TABLE mailboxes; --@contoso.com",
    "kelvin-sign": "\u212aate@contoso.com",
    "two-ats": "ada@@contoso.com",
    "number": 4711,
    "list": ["ada@contoso.com"],
    "object": {"address": "ada@contoso.com"},
    "boolean": True,
}

SQS_MAX_MESSAGE_BYTES: Final = 256 * 1024  # WorkQueue's MaximumMessageSize (template.yaml)

# Ways to fill a webhook's free bytes, as (opening, repeated unit, separator, closing), and the
# growth of one unit in the queued message: json re-serializes numbers (`9e15` becomes
# `9000000000000000.0`, 3.8x with its comma), U+FFFF is escaped (3 bytes become 6), the rest
# keeps its size.
FILLERS: Final[dict[str, tuple[str, str, str, str]]] = {
    "float-9e15": ("[", "9e15", ",", "]"),
    "float-1e9": ("[", "1e9", ",", "]"),
    "u+ffff": ('"', "\uffff", "", '"'),
    "del": ('"', "\x7f", "", '"'),
    "two-byte-utf8": ('"', "é", "", '"'),
    "astral": ('"', "\U0001f600", "", '"'),
    "escaped-quote": ('"', '\\"', "", '"'),
    "integers": ("[", "9", ",", "]"),
}
WORST_FILLER: Final = "float-9e15"


def largest_accepted_webhook(filler: str = WORST_FILLER) -> str:
    """A webhook of exactly MAX_WEBHOOK_BODY_BYTES whose queued message is as large as one can be.

    Every field the message copies is at its limit, in the characters that grow most when
    queued: `type` (copied into the body three times and the attributes twice) is 128 x U+FFFF
    (3 bytes sent, 6 escaped in the body), the campaign id 64 characters; no email (its copies
    grow less than the filler). Every remaining byte is `filler`; the default grows most.
    """
    opening, unit, separator, closing = FILLERS[filler]
    head = {
        "type": "\uffff" * MAX_EVENT_TYPE_LENGTH,
        "account": {"campaign_id": "x" * MAX_CAMPAIGN_ID_LENGTH},
    }
    prefix = json.dumps(head, ensure_ascii=False, separators=(",", ":"))[:-1] + ',"fill":'
    free = MAX_WEBHOOK_BODY_BYTES - len((prefix + opening + closing + "}").encode())
    step = len((unit + separator).encode())
    count = (free + len(separator)) // step
    body = prefix + opening + separator.join([unit] * count) + closing + "}"
    body += " " * (MAX_WEBHOOK_BODY_BYTES - len(body.encode()))  # JSON allows trailing spaces
    assert len(body.encode()) == MAX_WEBHOOK_BODY_BYTES
    return body


def sqs_message_size(request: dict[str, Any]) -> int:
    """The size SQS counts for a SendMessage request: the body's UTF-8 bytes plus, for every
    message attribute, its name, its DataType and its value (String attributes only: the queue
    carries no others)."""
    size = len(request["MessageBody"].encode("utf-8"))
    for name, attribute in request.get("MessageAttributes", {}).items():
        parts = (name, attribute["DataType"], attribute["StringValue"])
        size += sum(len(part.encode("utf-8")) for part in parts)
    return size
