"""Mailivery API client on one module-level httpx.Client.

- Bearer auth and a fresh X-Request-ID on every HTTP request, logged with the outcome.
- Typed errors (errors.py) for every failure, each carrying the request id.
- Only idempotent reads are retried, with jittered exponential backoff or Retry-After.
  The ms-graph create is never retried: a repeated create can mint a second consent link and
  so a second campaign (contract §1, Idempotency).
- A campaign id becomes a path segment only after warmgate.domain.campaign_ids accepted it;
  otherwise InvalidCampaignId (a ValueError) before any request or budget token: httpx
  resolves `.` and `..` segments, so `delete_campaign("..")` would otherwise send `DELETE /api/v1`.
- Every call has a deadline, `call_deadline_seconds`: a retry that could end past it is not
  made, so one call never outlasts what the functions' timeouts are sized for (warmgate.wiring).
- Everything the vendor reference leaves open comes from `VendorContract` (contract.py).
"""

from __future__ import annotations

import math
import random
import time
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx

from warmgate.adapters.mailivery.answers import read_answer
from warmgate.adapters.mailivery.contract import BodyEncoding, TagsPlacement, VendorContract
from warmgate.adapters.mailivery.errors import (
    TRANSIENT_ERRORS,
    ConnectionLost,
    MailiveryError,
    NotFound,
    RateLimited,
    Timeout,
    UnexpectedResponse,
    Unreachable,
)
from warmgate.domain.campaign_ids import parse_campaign_id
from warmgate.domain.campaigns import (
    Campaign,
    CampaignPage,
    ConsentLink,
    InvalidConsentUrl,
    validate_consent_url,
)
from warmgate.observability import logger

# One connection pool per process, reused across warm invocations.
HTTP = httpx.Client(
    follow_redirects=False,
    headers={"Accept": "application/json", "User-Agent": "warmgate/0.1"},
    limits=httpx.Limits(max_connections=10, max_keepalive_connections=5),
)

# Transport failures that happen before a request can reach Mailivery; any other one (a read
# or write error, a connection closed without an answer) may follow a request it received.
NOT_SENT = (
    httpx.ConnectError,
    httpx.ProxyError,
    httpx.UnsupportedProtocol,
    httpx.LocalProtocolError,
)


@dataclass(frozen=True, slots=True)
class ConsentRequest:
    """The fields of POST /campaigns/ms-graph (contract §2)."""

    email: str
    first_name: str
    last_name: str | None = None
    email_per_day: int | None = None
    response_rate: int | None = None
    tags: Sequence[str] = ()


@dataclass(frozen=True, slots=True)
class RetryPolicy:
    """For idempotent reads only."""

    attempts: int = 3  # first try included
    base_delay: float = 0.2
    max_delay: float = 2.0
    # A Retry-After longer than this is not slept through inside a Lambda invocation: the
    # caller gets RateLimited(retry_after) and returns the work to its queue instead.
    max_retry_after: float = 5.0

    @property
    def longest_pause(self) -> float:
        """The longest wait between two attempts: a backoff, or a Retry-After slept through."""
        return max(self.max_delay, self.max_retry_after)


def call_deadline_seconds(
    retry: RetryPolicy, timeout: httpx.Timeout, throttle_wait: float, *, retried: bool
) -> float:
    """The most one logical call may take: every attempt at its worst, and the pauses between.

    An attempt at its worst waits `throttle_wait` for the request budget, then the connect and
    read timeouts. Write and pool timeouts are left out: a request of a few hundred bytes does
    not block on write, and a process sends one request at a time, so its pool never waits.
    Without a connect or read timeout an attempt, and so the call, is unbounded (`inf`).
    """
    if timeout.connect is None or timeout.read is None:
        return math.inf
    attempts = retry.attempts if retried else 1
    attempt = throttle_wait + timeout.connect + timeout.read
    return attempts * attempt + (attempts - 1) * retry.longest_pause


class MailiveryClient:
    def __init__(
        self,
        *,
        base_url: str,
        api_key: Callable[[], str],
        contract: VendorContract | None = None,
        consent_hosts: tuple[str, ...] = ("login.microsoftonline.com",),
        timeout: httpx.Timeout | None = None,
        retry: RetryPolicy | None = None,
        http: httpx.Client = HTTP,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        throttle: Callable[[], None] | None = None,
        throttle_max_wait: float = 0.0,
    ) -> None:
        self._base_url = base_url.rstrip("/")
        self._api_key = api_key  # a callable: the secret is fetched (and cached) when needed
        self.contract = contract or VendorContract()
        self._consent_hosts = consent_hosts
        self._timeout = timeout or httpx.Timeout(10.0, connect=3.05)
        self._retry = retry or RetryPolicy()
        self._http = http
        self._sleep = sleep
        self._clock = clock
        # Called before every HTTP request, retries included: takes a token from the request
        # budget shared by all instances (warmgate.adapters.budget), waiting at most
        # `throttle_max_wait`, or raises to defer the work.
        self._throttle = throttle
        self._attempt_seconds = call_deadline_seconds(
            self._retry, self._timeout, throttle_max_wait, retried=False
        )
        self._read_deadline = call_deadline_seconds(
            self._retry, self._timeout, throttle_max_wait, retried=True
        )

    # --- endpoints -----------------------------------------------------------------------

    def request_ms_graph_consent(self, request: ConsentRequest) -> ConsentLink:
        """POST /campaigns/ms-graph once (never retried) and validate the returned URL."""
        data, request_id = self._call(
            "POST", self.contract.request_consent_path, body=self._consent_body(request)
        )
        url = data.get("url") if isinstance(data, dict) else None
        try:
            return validate_consent_url(url, self._consent_hosts)
        except InvalidConsentUrl as exc:
            raise UnexpectedResponse(str(exc), request_id=request_id, status=200) from None

    def get_campaign(self, campaign_id: str | int) -> Campaign:
        data, request_id = self._call("GET", self.contract.campaign_path, campaign_id=campaign_id)
        return self._campaign(data, request_id)

    def find_campaign_by_email(self, email: str) -> Campaign | None:
        try:
            data, request_id = self._call("GET", self.contract.campaign_by_email_path, email=email)
        except NotFound:
            return None
        return self._campaign(data, request_id)

    def list_campaigns(self, page: int = 1, status: str | None = None) -> CampaignPage:
        params: dict[str, str | int] = {
            self.contract.page_param: page,
            self.contract.per_page_param: self.contract.per_page,
        }
        if status:
            params["status"] = status
        body, request_id = self._call(
            "GET", self.contract.list_campaigns_path, params=params, unwrap=False
        )
        items = body.get("data") if isinstance(body, dict) else None
        if not isinstance(items, list):
            raise UnexpectedResponse(
                "campaign list has no data array", request_id=request_id, status=200
            )
        meta = body.get("meta") if isinstance(body.get("meta"), dict) else {}
        current = _int(meta.get("current_page"), default=page)
        # Without pagination metadata the list is taken to be complete [unknown].
        last = _int(meta.get("last_page"), default=current)
        return CampaignPage([self._campaign(i, request_id) for i in items], current, last)

    def iter_campaigns(
        self, status: str | None = None, max_pages: int = 1000
    ) -> Iterator[Campaign]:
        page = 1
        for _ in range(max_pages):
            result = self.list_campaigns(page=page, status=status)
            yield from result.campaigns
            if not result.has_more:
                return
            page = result.page + 1

    # `prepaid`: the caller already took this call's request-budget token (the worker takes it
    # with its claim, warmgate.adapters.budget.acquire_with), so the throttle is not called.

    def start_warmup(self, campaign_id: str | int, *, prepaid: bool = False) -> Any:
        return self._action("PATCH", self.contract.start_warmup_path, campaign_id, prepaid)

    def resume_warmup(self, campaign_id: str | int, *, prepaid: bool = False) -> Any:
        return self._action("PATCH", self.contract.resume_warmup_path, campaign_id, prepaid)

    def delete_campaign(self, campaign_id: str | int, *, prepaid: bool = False) -> Any:
        return self._action("DELETE", self.contract.delete_campaign_path, campaign_id, prepaid)

    # --- plumbing --------------------------------------------------------------------------

    def _consent_body(self, request: ConsentRequest) -> dict[str, Any]:
        body: dict[str, Any] = {"email": request.email, "first_name": request.first_name}
        optional = {
            "last_name": request.last_name,
            "email_per_day": request.email_per_day,
            "response_rate": request.response_rate,
        }
        body.update({k: v for k, v in optional.items() if v is not None})
        if request.tags:
            placement = self.contract.tags_placement
            if placement in (TagsPlacement.TAGS, TagsPlacement.BOTH):
                body["tags"] = list(request.tags)
            if placement in (TagsPlacement.META, TagsPlacement.BOTH):
                body["meta"] = {"tags": ",".join(request.tags)}
        return body

    def _action(self, method: str, path: str, campaign_id: str | int, prepaid: bool = False) -> Any:
        # Never retried (one attempt), so a prepaid token covers the whole call.
        data, _ = self._call(
            method, path, campaign_id=campaign_id, allow_empty=True, throttled=not prepaid
        )
        return data

    def _campaign(self, data: Any, request_id: str) -> Campaign:
        if not isinstance(data, dict):
            raise UnexpectedResponse("campaign is not an object", request_id=request_id, status=200)
        try:
            return Campaign.from_payload(data, self.contract.status_fields)
        except (KeyError, ValueError) as exc:
            raise UnexpectedResponse(str(exc), request_id=request_id, status=200) from None

    def _call(
        self,
        method: str,
        path_template: str,
        *,
        campaign_id: str | int | None = None,
        email: str | None = None,
        params: Mapping[str, str | int] | None = None,
        body: dict[str, Any] | None = None,
        unwrap: bool = True,
        allow_empty: bool = False,
        throttled: bool = True,
    ) -> tuple[Any, str]:
        """One logical call: returns (payload, request id) or raises a MailiveryError, or
        InvalidCampaignId for an unusable id before anything is sent."""
        path = path_template.format(
            # Letters, digits, '_' and '-' only: nothing to quote, nothing that moves the path.
            campaign_id=parse_campaign_id(campaign_id) if campaign_id is not None else "",
            email=quote(email, safe="@") if email is not None else "",
        )
        retryable = method == "GET"
        attempts = self._retry.attempts if retryable else 1
        started = self._clock()
        for attempt in range(1, attempts + 1):
            request_id = str(uuid.uuid4())
            try:
                response = self._send(
                    method, path, path_template, request_id, params, body, throttled
                )
                return read_answer(response, request_id, unwrap, allow_empty), request_id
            except TRANSIENT_ERRORS as error:
                delay = self._retry_delay(error, attempt)
                if attempt == attempts or delay is None:
                    raise
                elapsed = self._clock() - started
                if elapsed + delay + self._attempt_seconds > self._read_deadline:
                    # Slower than the timeouts promise (a slow budget table, a response
                    # trickling in): the deadline, not the attempt count, ends the call.
                    logger.warning(
                        "mailivery read not retried: it could end past its deadline",
                        extra={
                            "request_id": request_id,
                            "attempt": attempt,
                            "elapsed_s": round(elapsed, 3),
                            "deadline_s": self._read_deadline,
                        },
                    )
                    raise
                logger.info(
                    "retrying mailivery read",
                    extra={"request_id": request_id, "attempt": attempt, "delay_s": delay},
                )
                self._sleep(delay)
        raise AssertionError("unreachable: the loop returns or raises")  # pragma: no cover

    def _send(
        self,
        method: str,
        path: str,
        path_template: str,
        request_id: str,
        params: Mapping[str, str | int] | None,
        body: dict[str, Any] | None,
        throttled: bool,
    ) -> httpx.Response:
        headers = {
            "Authorization": f"Bearer {self._api_key()}",
            self.contract.request_id_header: request_id,
        }
        content: dict[str, Any] = {}
        if body is not None:
            if self.contract.body_encoding is BodyEncoding.FORM:
                content["data"] = _form_fields(body)
            else:
                content["json"] = body
        if throttled and self._throttle is not None:
            self._throttle()
        started = time.perf_counter()
        log = {"method": method, "path": path_template, "request_id": request_id}
        try:
            response = self._http.request(
                method,
                self._base_url + path,
                params=params,
                headers=headers,
                timeout=self._timeout,
                **content,
            )
        except httpx.TimeoutException as exc:
            logger.warning("mailivery call timed out", extra=log)
            raise Timeout(
                f"{method} {path_template} timed out ({type(exc).__name__})",
                request_id=request_id,
            ) from None
        except NOT_SENT as exc:
            logger.warning("mailivery unreachable", extra=log)
            raise Unreachable(
                f"{method} {path_template} could not connect ({type(exc).__name__})",
                request_id=request_id,
            ) from None
        except httpx.TransportError as exc:  # read/write/protocol: the request may have arrived
            logger.warning("mailivery connection lost", extra=log)
            raise ConnectionLost(
                f"{method} {path_template} lost its connection ({type(exc).__name__})",
                request_id=request_id,
            ) from None
        logger.info(
            "mailivery call",
            extra={
                **log,
                "status": response.status_code,
                "duration_ms": round((time.perf_counter() - started) * 1000, 1),
            },
        )
        return response

    def _retry_delay(self, error: MailiveryError, attempt: int) -> float | None:
        if isinstance(error, RateLimited) and error.retry_after is not None:
            if error.retry_after > self._retry.max_retry_after:
                return None
            return error.retry_after
        # "Full jitter": spreads concurrent workers' retries apart.
        cap = min(self._retry.max_delay, self._retry.base_delay * 2 ** (attempt - 1))
        return random.uniform(0, cap)  # noqa: S311 - jitter, not cryptography


def _form_fields(body: dict[str, Any]) -> dict[str, str | list[str]]:
    """Flatten for form encoding: nested objects as `meta[tags]`, lists as `tags[]`."""
    fields: dict[str, str | list[str]] = {}
    for key, value in body.items():
        if isinstance(value, dict):
            fields.update({f"{key}[{k}]": str(v) for k, v in value.items()})
        elif isinstance(value, list):
            fields[f"{key}[]"] = [str(v) for v in value]
        else:
            fields[key] = str(value)
    return fields


def _int(value: Any, *, default: int) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return default
