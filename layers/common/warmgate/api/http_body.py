"""Request-body decoding shared by every HTTP handler, kept apart from `warmgate.api.http`.

`warmgate.api.http` maps onboarding and Mailivery errors to statuses, so importing it loads the
onboarding service and the Mailivery client. The webhook function is the hot path and needs only
this part: stdlib only, nothing else may be imported here.
"""

from __future__ import annotations

import base64
import binascii

__all__ = ["BadRequestBody", "BodyTooLarge", "decode_body"]


class BadRequestBody(Exception):
    """Not decodable or not a JSON object (400)."""


class BodyTooLarge(Exception):
    """Over the route's byte limit (413)."""


def decode_body(body: str | None, is_base64: bool, max_bytes: int) -> bytes:
    """The raw request bytes, size-checked before anything parses them."""
    raw = body or ""
    # base64 inflates by 4/3: reject obviously oversized input before decoding it.
    if len(raw) > (max_bytes * 4) // 3 + 4:
        raise BodyTooLarge(f"body is larger than {max_bytes} bytes")
    if is_base64:
        try:
            data = base64.b64decode(raw, validate=True)
        except (binascii.Error, ValueError):
            raise BadRequestBody("body is not valid base64") from None
    else:
        data = raw.encode()
    if len(data) > max_bytes:
        raise BodyTooLarge(f"body is larger than {max_bytes} bytes")
    return data
