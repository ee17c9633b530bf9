"""Mailbox addresses: the one normalization every comparison in warmgate goes through.

Onboarding (the request body and the `{email}` path), the webhook (a hint), the worker (the
re-read campaign's address, via warmgate.domain.campaigns) and the operations CLI all call
`normalize_email`; nothing else lower-cases or compares addresses.

The rules (README "Limits"):
- surrounding whitespace is trimmed; the address itself must be ASCII, checked *before* any case
  folding: Unicode lower-casing maps look-alikes onto ASCII (KELVIN SIGN U+212A becomes `k`), so
  folding first would merge a different mailbox into someone else's expectation;
- an internationalized domain is accepted only in its ASCII (punycode, `xn--`) form, e.g.
  `ivan@xn--e1afmkfd.xn--p1ai` for `ivan@пример.рф`; its labels are checked like any other
  (letters, digits, hyphens), not decoded. Non-ASCII local parts (RFC 6531) are not accepted;
- at most 254 characters in all and 64 in the local part (RFC 5321), one `@`, a dot-atom local
  part and a domain of at least two labels; then ASCII letters are lower-cased (Mailivery
  compares case-insensitively and trimmed, contract §1, [guess]).
"""

from __future__ import annotations

import re
from typing import Final

# Plausible, not RFC 5322-complete. Applied after lower-casing, so only lower-case letters.
_LOCAL = r"[a-z0-9!#$%&'*+/=?^_`{|}~-]+(?:\.[a-z0-9!#$%&'*+/=?^_`{|}~-]+)*"
_LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"
# A top-level domain is letters, or the punycode form of an internationalized one (`xn--p1ai`).
_TLD = r"(?:[a-z]{2,63}|xn--[a-z0-9-]{1,59})"
_MAILBOX = re.compile(rf"{_LOCAL}@{_LABEL}(?:\.{_LABEL})*\.{_TLD}")
MAX_LENGTH: Final = 254  # RFC 5321 path limit
MAX_LOCAL_PART_LENGTH: Final = 64  # RFC 5321 local-part limit


class InvalidEmail(ValueError):
    """The value is not a plausible mailbox address. The message never repeats the value."""


def normalize_email(value: object) -> str:
    """Trim, check and lower-case a mailbox address, or raise InvalidEmail naming the problem.

    Two addresses normalize alike only if they differ by ASCII case and surrounding whitespace.
    """
    if not isinstance(value, str):
        raise InvalidEmail("email must be a string")
    email = value.strip()
    if not email:
        raise InvalidEmail("email is empty")
    if not email.isascii():
        raise InvalidEmail(
            "email contains a character that is not ASCII "
            "(write an internationalized domain in its punycode xn-- form)"
        )
    if len(email) > MAX_LENGTH:
        raise InvalidEmail(f"email is longer than {MAX_LENGTH} characters")
    if len(email.rpartition("@")[0]) > MAX_LOCAL_PART_LENGTH:
        raise InvalidEmail(f"email local part is longer than {MAX_LOCAL_PART_LENGTH} characters")
    email = email.lower()  # ASCII only by now: maps A-Z and nothing else
    if not _MAILBOX.fullmatch(email):
        raise InvalidEmail("email is not a plausible mailbox address")
    return email
