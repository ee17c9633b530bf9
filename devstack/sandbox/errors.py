"""The vendor's error answers, raised anywhere in the sandbox and rendered by its HTTP surface."""

from __future__ import annotations

from collections.abc import Mapping


class ApiError(Exception):
    """An error answer in the vendor's `{"code", "message"}` envelope."""

    def __init__(
        self, status: int, code: str, message: str, headers: Mapping[str, str] | None = None
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.headers = dict(headers or {})


class ValidationFailed(Exception):
    def __init__(self, errors: Mapping[str, list[str]]) -> None:
        super().__init__("The given data was invalid.")
        self.errors = dict(errors)


def bad_request(message: str) -> ApiError:
    """A refused control call (the control surface has no validation envelope)."""
    return ApiError(400, "BAD_REQUEST", message)
