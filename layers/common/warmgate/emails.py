"""Mailbox addresses: the one normalization every comparison in warmgate goes through."""

from __future__ import annotations

import re

# Plausible, not RFC 5322-complete: one @, a dot-atom local part, a domain with a dot and
# LDH labels. Mailivery compares case-insensitively and trimmed (contract §1, [guess]).
_LOCAL = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
_MAILBOX = re.compile(rf"{_LOCAL}@{_LABEL}(?:\.{_LABEL})*\.[a-z]{{2,63}}")
MAX_LENGTH = 254  # RFC 5321 path limit


class InvalidEmail(ValueError):
    """The value is not a plausible mailbox address."""


def normalize_email(value: str) -> str:
    """Trim and lower-case a mailbox address, or raise InvalidEmail naming the problem."""
    if not isinstance(value, str):
        raise InvalidEmail("email must be a string")
    email = value.strip().lower()
    if not email:
        raise InvalidEmail("email is empty")
    if len(email) > MAX_LENGTH:
        raise InvalidEmail(f"email is longer than {MAX_LENGTH} characters")
    if not _MAILBOX.fullmatch(email):
        raise InvalidEmail("email is not a plausible mailbox address")
    return email
