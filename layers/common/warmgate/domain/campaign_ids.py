"""Campaign ids: the one check every id passes before warmgate queues it or puts it in a URL.

Mailivery's ids are integers in its examples (contract §1); warmgate keys them as strings. The
pattern below is warmgate's own bound, not a vendor guess: it admits any integer up to 64 digits
and any UUID- or slug-like id, and nothing that can change a URL's path (`.`, `..`, `/`, `%`),
carry whitespace or control characters, or inflate a queue message. The webhook receiver
(422) and the Mailivery client (before it builds a path segment) check ids here; so does any
other code that takes an id from outside (the worker's re-read campaign, an operator).

Pure stdlib: the webhook's hot path imports it.
"""

from __future__ import annotations

import re
from typing import Final

MAX_CAMPAIGN_ID_LENGTH: Final = 64
CAMPAIGN_ID_PATTERN: Final = rf"[A-Za-z0-9_-]{{1,{MAX_CAMPAIGN_ID_LENGTH}}}"
# fullmatch, never `^…$`: `$` also matches before a trailing newline ("4711\n").
_CAMPAIGN_ID: Final = re.compile(CAMPAIGN_ID_PATTERN)


class InvalidCampaignId(ValueError):
    """The value is not a usable campaign id.

    `problem` is the bare problem ("is longer than 64 characters") for callers that prefix their
    own field name; neither it nor the message repeats the value, which may be hostile.
    """

    def __init__(self, problem: str) -> None:
        super().__init__(f"campaign id {problem}")
        self.problem = problem


def parse_campaign_id(value: object) -> str:
    """The id as warmgate stores, queues and sends it, or raise InvalidCampaignId.

    An integer becomes its decimal string; a string must already match CAMPAIGN_ID_PATTERN
    (callers that tolerate surrounding whitespace strip it first).
    """
    if isinstance(value, bool):  # bool is an int subclass; True is not campaign 1
        raise InvalidCampaignId("must be an integer or a string, not a boolean")
    if isinstance(value, int):
        text = str(value)
    elif isinstance(value, str):
        text = value
    elif isinstance(value, float):
        raise InvalidCampaignId("must be an integer or a string, not a decimal number")
    else:
        raise InvalidCampaignId("must be an integer or a string")
    if not text:
        raise InvalidCampaignId("is empty")
    if len(text) > MAX_CAMPAIGN_ID_LENGTH:
        raise InvalidCampaignId(f"is longer than {MAX_CAMPAIGN_ID_LENGTH} characters")
    if not _CAMPAIGN_ID.fullmatch(text):
        raise InvalidCampaignId("may contain only ASCII letters, digits, '_' and '-'")
    return text
