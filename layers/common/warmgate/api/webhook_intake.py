"""Webhook intake: authenticate Mailivery's call, normalize it, and put it on the work queue.

Mailivery's webhooks carry no signature, no event id and no retry policy (contract §4). The only
proof of origin is the unguessable token in the URL path; the only way not to lose an event is to
answer 2xx after SQS accepted it and 5xx otherwise, so that the sender retries.

This module is on the webhook Lambda's hot path. It may import the stdlib, botocore (the
function's SQS client is botocore's), warmgate.domain.webhooks, warmgate.api.http_body and
warmgate.adapters.secrets; never boto3, warmgate.api.http, warmgate.services.onboarding,
warmgate.adapters.mailivery or httpx.
"""

from __future__ import annotations

import hmac
import json
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any, Final

from botocore.config import Config
from botocore.exceptions import BotoCoreError, ClientError

from warmgate.adapters.secrets import fetch_secret, forget_secrets
from warmgate.adapters.sqs import QueuedWebhook, WorkQueue
from warmgate.api.http_body import BadRequestBody, BodyTooLarge, decode_body
from warmgate.domain.mailboxes import utc_now
from warmgate.domain.webhooks import WebhookInvalid, WebhookNotJson, parse_webhook

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

__all__ = [
    "MAX_WEBHOOK_BODY_BYTES",
    "MIN_TOKEN_LENGTH",
    "SQS_CLIENT_CONFIG",
    "QueueUnavailable",
    "UnknownWebhookToken",
    "WebhookAnswer",
    "WebhookIntake",
    "WebhookReceipt",
    "WebhookToken",
    "WebhookTokenMisconfigured",
    "WebhookTokenSource",
    "WebhookTokenUnavailable",
    "answer_for",
]

MAX_WEBHOOK_BODY_BYTES: Final = 64 * 1024  # architecture §3; a real webhook is well under 1 KiB
# A token shorter than this is guessable; the template generates 48 alphanumeric characters.
MIN_TOKEN_LENGTH: Final = 16
# After a wrong token, re-read the secret at most this often, so that a token rotated in
# Mailivery's panel before our cache expired is picked up within a minute, while a caller
# probing wrong tokens costs at most one Secrets Manager call per minute per instance.
REFRESH_AFTER_MISS_SECONDS: Final = 60.0

# SendMessage normally answers in milliseconds. Short timeouts and three attempts in all (the
# first included: total_max_attempts, not max_attempts, which counts retries) bound the worst
# case to about 3 x (2 s + 3 s) + backoff ~ 18 s, so the caller gets our 503 (and retries) well
# before the function's 30 s timeout, instead of botocore's default 60 s read timeout.
SQS_CLIENT_CONFIG: Final = Config(
    connect_timeout=2, read_timeout=3, retries={"total_max_attempts": 3, "mode": "standard"}
)


class UnknownWebhookToken(Exception):
    """The path token matches no accepted value (404, and nothing else said)."""


class WebhookTokenUnavailable(Exception):
    """The token secret could not be read, so no call can be authenticated now (503)."""


class WebhookTokenMisconfigured(WebhookTokenUnavailable):
    """The token secret holds something that is not a usable token (503 until an operator fixes
    it). The message describes the shape, never the value."""


class QueueUnavailable(Exception):
    """SQS did not accept the message; the caller must retry (503)."""


def _token_bytes(text: str) -> bytes:
    # surrogatepass: a lone surrogate (possible after JSON or percent decoding) must compare as
    # "no match", not raise.
    return text.encode("utf-8", "surrogatepass")


@dataclass(frozen=True, slots=True)
class WebhookToken:
    """The accepted path tokens: the current one and, during a rotation, the previous one.

    The secret's value is either the token itself or `{"current": "...", "previous": "..."}`.
    Rotation: store `{"current": new, "previous": old}`, wait SECRET_MAX_AGE_SECONDS, change the
    URL in Mailivery's panel, and later drop `previous`.
    """

    candidates: tuple[bytes, ...] = field(repr=False)

    @classmethod
    def from_secret(cls, value: str) -> WebhookToken:
        text = value.strip()
        previous: object = None
        if text.startswith("{"):
            try:
                document = json.loads(text)
            except ValueError:
                raise WebhookTokenMisconfigured(
                    "webhook token secret starts with '{' but is not valid JSON"
                ) from None
            if not isinstance(document, dict):
                raise WebhookTokenMisconfigured("webhook token secret must be a JSON object")
            current: object = document.get("current")
            previous = document.get("previous")
        else:
            current = text
        candidates = [_checked_token("current", current)]
        if previous is not None and previous != "":
            candidates.append(_checked_token("previous", previous))
        return cls(tuple(_token_bytes(candidate) for candidate in candidates))

    def admits(self, presented: str | None) -> bool:
        """Constant-time check of `presented` against every candidate.

        Every candidate is compared even after a match, so the time taken does not tell which
        one matched; compare_digest itself reveals at most the lengths, never the contents.
        """
        offered = _token_bytes(presented or "")
        admitted = False
        for candidate in self.candidates:
            admitted |= hmac.compare_digest(offered, candidate)
        return admitted


def _checked_token(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise WebhookTokenMisconfigured(f"webhook token secret: {name} must be a string")
    token = value.strip()
    if len(token) < MIN_TOKEN_LENGTH:
        raise WebhookTokenMisconfigured(
            f"webhook token secret: {name} must be at least {MIN_TOKEN_LENGTH} characters"
        )
    return token


class WebhookTokenSource:
    """Reads the token secret through a cached fetch and turns it into a WebhookToken.

    `fetch` returns the secret's value (cached for SECRET_MAX_AGE_SECONDS,
    warmgate.adapters.secrets);
    `forget` drops that cache so the next fetch reads the store. After a wrong token the intake
    asks for `refreshed()`, which re-reads at most once per `refresh_after_miss_seconds`.
    """

    def __init__(
        self,
        fetch: Callable[[], str],
        *,
        forget: Callable[[], None] | None = None,
        refresh_after_miss_seconds: float = REFRESH_AFTER_MISS_SECONDS,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._fetch = fetch
        self._forget = forget
        self.refresh_after_miss_seconds = refresh_after_miss_seconds
        self._monotonic = monotonic
        self._last_read_at: float | None = None
        self._parsed: tuple[str, WebhookToken] | None = None

    @classmethod
    def from_reference(cls, reference: str, *, max_age: int) -> WebhookTokenSource:
        """The deployed wiring: a Secrets Manager id/ARN or an SSM name
        (see warmgate.adapters.secrets)."""
        # fetch_secret has no force-fetch switch, so a refresh clears the secrets cache; in
        # the webhook function the token is the only cached secret.
        return cls(lambda: fetch_secret(reference, max_age=max_age), forget=forget_secrets)

    def current(self) -> WebhookToken:
        try:
            value = self._fetch()
        except Exception as exc:  # GetParameterError, throttling, an empty secret ...
            raise WebhookTokenUnavailable("the webhook token secret could not be read") from exc
        if self._last_read_at is None:
            self._last_read_at = self._monotonic()  # the cold-start read is a fresh one
        if self._parsed is None or self._parsed[0] != value:
            self._parsed = (value, WebhookToken.from_secret(value))
        return self._parsed[1]

    def refreshed(self) -> WebhookToken | None:
        """A freshly read token, or None when the store was read too recently to ask again."""
        if self._forget is None:
            return None
        now = self._monotonic()
        if self._last_read_at is not None and now - self._last_read_at < (
            self.refresh_after_miss_seconds
        ):
            return None
        self._last_read_at = now
        self._forget()
        return self.current()


@dataclass(frozen=True, slots=True)
class WebhookReceipt:
    message: QueuedWebhook
    message_id: str


class WebhookIntake:
    """Authenticate, parse, normalize and enqueue one webhook call.

    Standard queue, not FIFO: FIFO's deduplication window is 5 minutes, far too short for a
    sender whose retry behaviour is unknown, and its ordering and exactly-once throughput buy
    nothing because the worker re-reads the campaign from Mailivery and dedups on its own
    records (a replayed event ends at the first read; claims and conditional writes stop a
    second vendor call). Duplicates on the queue are therefore expected and harmless.
    """

    def __init__(
        self,
        sqs: SQSClient,
        queue_url: str,
        tokens: WebhookTokenSource,
        *,
        clock: Callable[[], datetime] = utc_now,
        max_body_bytes: int = MAX_WEBHOOK_BODY_BYTES,
    ) -> None:
        self._queue = WorkQueue(sqs, queue_url)
        self.tokens = tokens
        self._clock = clock
        self._max_body_bytes = max_body_bytes

    def receive(
        self, *, token: str | None, body: str | None, is_base64: bool, request_id: str
    ) -> WebhookReceipt:
        """Raise UnknownWebhookToken, WebhookTokenUnavailable, BadRequestBody, BodyTooLarge,
        WebhookNotJson, WebhookInvalid or QueueUnavailable; return only once SQS has the message.
        """
        self.authenticate(token)
        raw = decode_body(body, is_base64, self._max_body_bytes)
        envelope = parse_webhook(raw)
        # parse_webhook accepted it, so this is a UTF-8 JSON object; kept exactly as parsed.
        payload: dict[str, Any] = json.loads(raw.decode("utf-8-sig"))
        message = QueuedWebhook.from_envelope(
            envelope, payload, received_at=self._clock(), request_id=request_id
        )
        return WebhookReceipt(message, self.enqueue(message))

    def authenticate(self, presented: str | None) -> None:
        if self.tokens.current().admits(presented):
            return
        # Maybe the token was rotated in Mailivery's panel before our cache expired.
        fresh = self.tokens.refreshed()
        if fresh is None or not fresh.admits(presented):
            raise UnknownWebhookToken

    def enqueue(self, message: QueuedWebhook) -> str:
        try:
            return self._queue.send(message)
        except (BotoCoreError, ClientError) as exc:
            raise QueueUnavailable(f"SendMessage failed: {exc}") from exc


@dataclass(frozen=True, slots=True)
class WebhookAnswer:
    """What the webhook route answers; `body` is the JSON document."""

    status: int
    body: dict[str, str]


ACCEPTED: Final = WebhookAnswer(202, {"status": "accepted"})
NOT_FOUND: Final = WebhookAnswer(404, {"code": "NOT_FOUND", "message": "Not Found"})


def answer_for(exc: Exception) -> WebhookAnswer | None:
    """The one map from intake errors to HTTP answers; None for an unexpected error (a 500)."""
    match exc:
        case UnknownWebhookToken():
            # Indistinguishable from a route that does not exist: no hint that a token is wrong.
            return NOT_FOUND
        case BodyTooLarge():
            return WebhookAnswer(413, {"code": "PAYLOAD_TOO_LARGE", "message": str(exc)})
        case BadRequestBody():
            return WebhookAnswer(400, {"code": "BAD_REQUEST", "message": str(exc)})
        case WebhookNotJson():
            return WebhookAnswer(400, {"code": "BAD_REQUEST", "message": exc.reason})
        case WebhookInvalid():
            return WebhookAnswer(422, {"code": "VALIDATION_FAILED", "message": exc.reason})
        case QueueUnavailable():
            return WebhookAnswer(
                503,
                {"code": "QUEUE_UNAVAILABLE", "message": "the webhook was not queued; retry"},
            )
        case WebhookTokenUnavailable():
            return WebhookAnswer(
                503,
                {"code": "SERVICE_UNAVAILABLE", "message": "the webhook was not queued; retry"},
            )
    return None
