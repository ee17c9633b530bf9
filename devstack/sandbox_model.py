"""The Mailivery sandbox's vendor-side model: state, rules and webhook delivery, no HTTP surface.

`devstack.sandbox` serves this over HTTP. Kept apart so the vendor's behaviour (what a campaign
may do, what a webhook looks like, how faults and the rate limit decide) reads on its own.
Every class here guards its own state with its own lock; none holds a lock while waiting.
Like the rest of the sandbox it never imports `warmgate`.
"""

from __future__ import annotations

import copy
import math
import queue
import random
import re
import secrets
import ssl
import threading
import time
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import asdict, dataclass, replace
from datetime import UTC, datetime
from typing import Any, Final, Literal, cast, get_args
from urllib.parse import parse_qsl, quote

import httpx

FIRST_CAMPAIGN_ID: Final = 4711
DAILY_EMAIL_TOTAL: Final = 1000
# [guess] The vendor's defaults when the create call omits them are not documented.
DEFAULT_EMAIL_PER_DAY: Final = 20
DEFAULT_RESPONSE_RATE: Final = 30
EMAIL_PER_DAY_RANGE: Final = (1, 200)
RATE_WINDOW_S: Final = 60.0
WEBHOOK_TIMEOUT_S: Final = 5.0
DEFAULT_HANG_MS: Final = 10_000
# Long-poll cap for GET /_sandbox/webhooks?min_count=..., so a forgotten waiter cannot pin a thread.
MAX_WAIT_S: Final = 30.0

CampaignStatus = Literal["pending", "active", "paused", "connection_problem"]
WebhookMode = Literal["deliver", "drop", "duplicate", "reorder", "delay"]
# lost: the call runs, then its answer never comes (hang_ms, then 504): an unknown outcome.
# reset: the call runs, then the connection is closed without an answer.
FaultKind = Literal["timeout", "error", "html", "empty", "garbage", "lost", "reset"]
# What the call log's `fault` says: an injected kind, or a 429 of a storm (RateLimiter.storm).
CallFault = FaultKind | Literal["storm"]
StatusField = Literal["status", "status_code"]
ValidationShape = Literal["errors", "code"]
ExistingMailbox = Literal["allow", "reject", "reuse"]
ReconnectEvent = Literal["campaign.updated", "campaign.pending"]
ConsentOutcome = Literal["created", "repeated", "reconnected"]

# One draw decides the fault; the order also decides which kind a `count` fault uses.
FAULT_PRECEDENCE: Final[tuple[FaultKind, ...]] = (
    "timeout",
    "error",
    "html",
    "empty",
    "garbage",
    "lost",
    "reset",
)
ERROR_BODIES: Final[Mapping[int, tuple[str, str]]] = {
    409: ("CONFLICT", "The campaign is not in a state that allows this."),
    500: ("SERVER_ERROR", "Internal server error."),
    502: ("BAD_GATEWAY", "Bad gateway."),
    503: ("SERVICE_UNAVAILABLE", "Service temporarily unavailable."),
    504: ("GATEWAY_TIMEOUT", "Gateway timeout."),
}
EMAIL_RE: Final = re.compile(r"^[^@\s]+@[^@\s]+\.[A-Za-z]{2,}$")
# Free consumer Microsoft domains get smtp_type "outlook" [doc]; the national variants
# (outlook.de, hotmail.co.uk, live.fr, ...) are the same service.
FREE_MICROSOFT_DOMAIN_RE: Final = re.compile(
    r"^(?:msn\.com|(?:outlook|hotmail|live)\.(?:com|[a-z]{2}|co\.[a-z]{2}|com\.[a-z]{2}))$"
)


# --------------------------------------------------------------------------- helpers


def utc_now_iso() -> str:
    """Timestamps the way a Laravel API serialises them: `2024-05-01T12:00:00.000000Z`."""
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def normalize_email(email: str) -> str:
    return email.strip().lower()


def smtp_type_for(email: str) -> str:
    domain = normalize_email(email).rpartition("@")[2]
    return "outlook" if FREE_MICROSOFT_DOMAIN_RE.match(domain) else "office 365"


def split_tags(raw: str) -> list[str]:
    return [tag.strip() for tag in raw.split(",") if tag.strip()]


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


def non_negative_int(body: Mapping[str, Any], name: str) -> int:
    value = body[name]
    if not isinstance(value, int) or isinstance(value, bool) or value < 0:
        raise bad_request(f"{name} must be a non-negative integer.")
    return value


class FieldValidator:
    """Laravel-style field rules and messages, enough for the fields the contract names."""

    def __init__(self, data: Mapping[str, Any]) -> None:
        self.data = data
        self.errors: dict[str, list[str]] = {}

    def fail(self, name: str, message: str) -> None:
        self.errors.setdefault(name, []).append(message)

    def check(self) -> None:
        if self.errors:
            raise ValidationFailed(self.errors)

    def string(self, name: str, *, required: bool = False, max_len: int = 255) -> str | None:
        label = name.replace("_", " ")
        value = self.data.get(name)
        if isinstance(value, str):
            # Laravel's TrimStrings + ConvertEmptyStringsToNull middleware.
            value = value.strip() or None
        if value is None:
            if required:
                self.fail(name, f"The {label} field is required.")
            return None
        if not isinstance(value, str):
            self.fail(name, f"The {label} must be a string.")
            return None
        if len(value) > max_len:
            self.fail(name, f"The {label} must not be greater than {max_len} characters.")
        return value

    def email(self, name: str) -> str | None:
        value = self.string(name, required=True)
        if value is not None and not EMAIL_RE.match(value):
            self.fail(name, f"The {name} must be a valid email address.")
        return value

    def integer(self, name: str, low: int, high: int) -> int | None:
        label = name.replace("_", " ")
        value = self.data.get(name)
        if value is None or value == "":
            return None
        number: int | None = None
        if isinstance(value, int) and not isinstance(value, bool):
            number = value
        elif (isinstance(value, float) and value.is_integer()) or (
            isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip())
        ):
            number = int(value)
        if number is None:
            self.fail(name, f"The {label} must be an integer.")
        elif not low <= number <= high:
            self.fail(name, f"The {label} must be between {low} and {high}.")
        return number

    def choice(self, name: str, allowed: Sequence[str], default: str) -> str:
        value = self.data.get(name, default)
        if value not in allowed:
            self.fail(name, f"The selected {name.replace('_', ' ')} is invalid.")
            return default
        return cast(str, value)

    def tags_and_meta(self) -> tuple[list[str], str | None]:
        """Tags from `tags` (list or "a,b") or `meta.tags`; meta as the webhook's query string."""
        raw_meta = self.data.get("meta")
        meta_pairs: list[tuple[str, str]] = []
        if isinstance(raw_meta, Mapping):
            meta_pairs = [(str(k), str(v)) for k, v in raw_meta.items() if v is not None]
        elif isinstance(raw_meta, str):
            meta_pairs = parse_qsl(raw_meta.strip(), keep_blank_values=True)
        elif raw_meta is not None:
            self.fail("meta", "The meta must be an array.")
        raw_tags = self.data.get("tags")
        tags: list[str] = []
        if raw_tags is None:
            tags = split_tags(dict(meta_pairs).get("tags", ""))
        elif isinstance(raw_tags, str):
            tags = split_tags(raw_tags)
        elif isinstance(raw_tags, list) and all(isinstance(t, str | int) for t in raw_tags):
            tags = [str(t).strip() for t in raw_tags if str(t).strip()]
        else:
            self.fail("tags", "The tags must be an array.")
        if tags and "tags" not in dict(meta_pairs):
            meta_pairs.append(("tags", ", ".join(tags)))
        # The reference's own example: "tags=tenant-42,%20sales" (commas kept, spaces encoded).
        meta = "&".join(f"{quote(k)}={quote(v, safe=',')}" for k, v in meta_pairs)
        return tags, meta or None


# --------------------------------------------------------------------------- campaigns


@dataclass
class Campaign:
    id: int
    email: str  # as typed (trimmed), never normalised: webhooks must show what the vendor shows
    first_name: str
    last_name: str | None
    status: CampaignStatus
    tags: list[str]
    meta: str | None
    email_per_day: int
    response_rate: int
    warmup_audience_type: str | None
    created_at: str

    def to_api(self, status_field: StatusField = "status") -> dict[str, Any]:
        return {
            "id": self.id,
            "email": self.email,
            "first_name": self.first_name,
            "last_name": self.last_name,
            status_field: self.status,
            "imap_type": "ms-graph",
            "smtp_type": smtp_type_for(self.email),
            "tags": list(self.tags),
            "email_per_day": self.email_per_day,
            "response_rate": self.response_rate,
            "warmup_audience_type": self.warmup_audience_type,
            "emails_sent_today": 0,
            "created_at": self.created_at,
        }


@dataclass(frozen=True)
class ConsentRequest:
    """The validated body of `POST /campaigns/ms-graph`."""

    email: str
    first_name: str
    last_name: str | None
    tags: list[str]
    meta: str | None
    email_per_day: int
    response_rate: int
    warmup_audience_type: str | None


@dataclass
class PendingConsent:
    state: str
    request: ConsentRequest
    url: str
    requested_at: float  # monotonic, for the optional consent lifetime
    campaign_id: int | None = None


class CampaignStore:
    """Campaigns, pending consents and per-mailbox connection switches, behind one lock.

    Methods return copies so callers can serialise them without holding the lock.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._campaigns: dict[int, Campaign] = {}
        self._consents: dict[str, PendingConsent] = {}
        self._connection_ok: dict[str, bool] = {}
        self._refusals_left: dict[str, int] = {}  # refused this many more times, then ok
        self._next_id = FIRST_CAMPAIGN_ID

    def clear(self) -> None:
        with self._lock:
            self._campaigns.clear()
            self._consents.clear()
            self._connection_ok.clear()
            self._refusals_left.clear()
            self._next_id = FIRST_CAMPAIGN_ID

    def has_mailbox(self, email: str) -> bool:
        wanted = normalize_email(email)
        with self._lock:
            return any(normalize_email(c.email) == wanted for c in self._campaigns.values())

    def add_consent(self, request: ConsentRequest, url_for_state: Callable[[str], str]) -> str:
        state = secrets.token_urlsafe(24)
        url = url_for_state(state)
        with self._lock:
            self._consents[state] = PendingConsent(state, request, url, time.monotonic())
        return url

    def consents(self) -> list[dict[str, Any]]:
        with self._lock:
            return [
                {"state": c.state, "url": c.url, "campaign_id": c.campaign_id, **asdict(c.request)}
                for c in self._consents.values()
            ]

    def complete_consent(
        self,
        state: str,
        signed_in_email: str | None,
        ttl_s: float | None,
        existing_mailbox: ExistingMailbox = "allow",
    ) -> tuple[Campaign, ConsentOutcome]:
        """Returns (campaign, outcome). A repeated consent returns the campaign it made.

        With `existing_mailbox="reuse"`, a consent for a mailbox that already has a campaign is
        a reconnect: the campaign is reused, its connection restored, and a connection_problem
        status becomes paused (warm-up waits for a resume) [guess].
        """
        with self._lock:
            consent = self._consents.get(state)
            if consent is None:
                raise ApiError(404, "CONSENT_NOT_FOUND", "No pending consent for this state.")
            if consent.campaign_id is not None:
                existing = self._campaigns.get(consent.campaign_id)
                if existing is None:
                    raise ApiError(
                        409, "CONSENT_ALREADY_USED", "The campaign this consent made was deleted."
                    )
                return replace(existing), "repeated"
            if ttl_s is not None and time.monotonic() - consent.requested_at > ttl_s:
                raise ApiError(410, "CONSENT_EXPIRED", "The consent link has expired.")
            req = consent.request
            email = (signed_in_email or req.email).strip()
            reused = self._newest_for(email) if existing_mailbox == "reuse" else None
            if reused is not None:
                self._connection_ok[normalize_email(email)] = True
                if reused.status == "connection_problem":
                    reused.status = "paused"
                consent.campaign_id = reused.id
                return replace(reused), "reconnected"
            campaign = Campaign(
                id=self._take_id(),
                email=email,
                first_name=req.first_name,
                last_name=req.last_name,
                status="pending",
                tags=list(req.tags),
                meta=req.meta,
                email_per_day=req.email_per_day,
                response_rate=req.response_rate,
                warmup_audience_type=req.warmup_audience_type,
                created_at=utc_now_iso(),
            )
            self._campaigns[campaign.id] = campaign
            consent.campaign_id = campaign.id
            return replace(campaign), "created"

    def seed(self, campaign: Campaign, explicit_id: bool) -> Campaign:
        with self._lock:
            if explicit_id:
                if campaign.id in self._campaigns:
                    raise ApiError(409, "CONFLICT", f"Campaign {campaign.id} already exists.")
                self._next_id = max(self._next_id, campaign.id + 1)
            else:
                campaign = replace(campaign, id=self._take_id())
            self._campaigns[campaign.id] = campaign
            return replace(campaign)

    def get(self, campaign_id: int) -> Campaign:
        with self._lock:
            return replace(self._get(campaign_id))

    def find_by_email(self, email: str) -> Campaign:
        with self._lock:
            campaign = self._newest_for(email)
        if campaign is None:
            raise ApiError(404, "NOT_FOUND", "Campaign not found.")
        return replace(campaign)

    def _newest_for(self, email: str) -> Campaign | None:
        # Sandbox choice: with duplicates (option existing_mailbox=allow) the newest wins.
        wanted = normalize_email(email)
        for campaign in sorted(self._campaigns.values(), key=lambda c: -c.id):
            if normalize_email(campaign.email) == wanted:
                return campaign
        return None

    def all(self, status: str | None = None) -> list[Campaign]:
        with self._lock:
            return [
                replace(c)
                for c in sorted(self._campaigns.values(), key=lambda c: c.id)
                if status is None or c.status == status
            ]

    def start(self, campaign_id: int) -> Campaign:
        with self._lock:
            campaign = self._get(campaign_id)
            if campaign.status == "active":
                raise ApiError(409, "WARMUP_ALREADY_STARTED", "Warm-up is already running.")
            if campaign.status != "pending":
                raise ApiError(
                    409, "CAMPAIGN_NOT_PENDING", "Only a pending campaign can be started."
                )
            self._require_connection(campaign)
            campaign.status = "active"
            return replace(campaign)

    def resume(self, campaign_id: int) -> Campaign:
        with self._lock:
            campaign = self._get(campaign_id)
            if campaign.status not in ("paused", "connection_problem"):
                raise ApiError(409, "CAMPAIGN_NOT_PAUSED", "Only a paused campaign can be resumed.")
            self._require_connection(campaign)
            campaign.status = "active"
            return replace(campaign)

    def pause(self, campaign_id: int) -> Campaign:
        with self._lock:
            campaign = self._get(campaign_id)
            if campaign.status != "active":
                raise ApiError(409, "CAMPAIGN_NOT_ACTIVE", "Only an active campaign can be paused.")
            campaign.status = "paused"
            return replace(campaign)

    def set_status(self, campaign_id: int, status: CampaignStatus) -> Campaign:
        """Vendor-side transitions (no rules): what Mailivery does on its own."""
        with self._lock:
            campaign = self._get(campaign_id)
            campaign.status = status
            return replace(campaign)

    def delete(self, campaign_id: int) -> Campaign:
        with self._lock:
            campaign = self._get(campaign_id)
            del self._campaigns[campaign_id]
            return campaign

    def set_connection(self, email: str, ok: bool, refusals: int | None = None) -> None:
        """`refusals`: with ok=False, refuse only that many start/resume calls, then connect."""
        with self._lock:
            mailbox = normalize_email(email)
            self._connection_ok[mailbox] = ok
            self._refusals_left.pop(mailbox, None)
            if not ok and refusals is not None:
                self._refusals_left[mailbox] = refusals

    def connection_switches(self) -> dict[str, bool]:
        with self._lock:
            return dict(self._connection_ok)

    def limits(self, total: int) -> dict[str, Any]:
        with self._lock:
            campaigns = list(self._campaigns.values())
        used = sum(c.email_per_day for c in campaigns if c.status == "active")
        return {
            "email_per_day": {"total": total, "used": used, "available": max(total - used, 0)},
            "email_accounts": len(campaigns),
            "email_accounts_need_attention": sum(
                c.status == "connection_problem" for c in campaigns
            ),
            "emails_sent_today": 0,
        }

    def _take_id(self) -> int:
        campaign_id = self._next_id
        self._next_id += 1
        return campaign_id

    def _get(self, campaign_id: int) -> Campaign:
        campaign = self._campaigns.get(campaign_id)
        if campaign is None:
            raise ApiError(404, "NOT_FOUND", "Campaign not found.")
        return campaign

    def _require_connection(self, campaign: Campaign) -> None:
        # [doc] Mailivery tests the mailbox connection before warming; the failure shape is
        # [unknown], so this one (422 CONNECTION_FAILED) is the sandbox's.
        mailbox = normalize_email(campaign.email)
        if self._refusals_left.get(mailbox) == 0:  # refused as often as asked: connected now
            del self._refusals_left[mailbox]
            self._connection_ok[mailbox] = True
        if not self._connection_ok.get(mailbox, True):
            if mailbox in self._refusals_left:
                self._refusals_left[mailbox] -= 1
            raise ApiError(
                422,
                "CONNECTION_FAILED",
                "Could not connect to the mailbox. Warm-up was not started.",
            )


# --------------------------------------------------------------------------- rate limit


@dataclass(frozen=True)
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    retry_after_s: int
    storm: bool = False  # refused by a storm, not by the window


class RateLimiter:
    """Rolling 60 s window per API key, like the vendor's 240/min per key [doc].

    `clock` may run `time_scale` times faster than real time (a load test's short "minute");
    Retry-After is always in real seconds: what a client must really wait.
    """

    def __init__(
        self,
        per_minute: int,
        clock: Callable[[], float] = time.monotonic,
        *,
        time_scale: float = 1.0,
    ) -> None:
        self._lock = threading.Lock()
        self._clock = clock
        self._time_scale = time_scale
        self._per_minute = per_minute
        self._windows: dict[str, deque[float]] = {}
        self._storm_until: float | None = None

    @property
    def per_minute(self) -> int:
        return self._per_minute

    def set_limit(self, per_minute: int) -> None:
        # A new limit starts a fresh window, so a test that lowers the limit sees exactly it.
        with self._lock:
            self._per_minute = per_minute
            self._windows.clear()
            self._storm_until = None

    def storm(self, seconds: float) -> None:
        """Nothing but 429 for the next `seconds` (on this clock), whatever the window holds:
        the bursts of refusals the vendor has been seen to answer with."""
        with self._lock:
            self._storm_until = self._clock() + seconds

    def acquire(self, key: str) -> RateDecision:
        # Rejected calls do not take a slot (Laravel's throttle behaves the same way), so a
        # client that backs off as told always gets through.
        now = self._clock()
        with self._lock:
            limit = self._per_minute
            if self._storm_until is not None and now < self._storm_until:
                return RateDecision(False, limit, 0, self._real(self._storm_until - now), True)
            window = self._windows.setdefault(key, deque())
            while window and window[0] <= now - RATE_WINDOW_S:
                window.popleft()
            if len(window) >= limit:
                return RateDecision(False, limit, 0, self._real(window[0] + RATE_WINDOW_S - now))
            window.append(now)
            return RateDecision(True, limit, limit - len(window), 0)

    def _real(self, clock_seconds: float) -> int:
        return max(1, math.ceil(clock_seconds / self._time_scale))


# --------------------------------------------------------------------------- faults


@dataclass(frozen=True)
class FaultConfig:
    latency_ms: int = 0
    timeout_rate: float = 0.0
    error_rate: float = 0.0
    html_rate: float = 0.0
    empty_rate: float = 0.0
    garbage_rate: float = 0.0
    lost_rate: float = 0.0
    reset_rate: float = 0.0
    hang_ms: int = DEFAULT_HANG_MS
    error_statuses: tuple[int, ...] = (500, 502, 503)
    paths: tuple[str, ...] = ()
    methods: tuple[str, ...] = ()
    count: int | None = None
    seed: int | None = None

    def rate(self, kind: FaultKind) -> float:
        return cast(float, getattr(self, f"{kind}_rate"))

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> FaultConfig:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(body) - known)
        if unknown:
            raise bad_request(f"Unknown fault settings: {', '.join(unknown)}.")
        values: dict[str, Any] = {}
        for name in ("latency_ms", "hang_ms"):
            if name in body:
                values[name] = non_negative_int(body, name)
        for kind in FAULT_PRECEDENCE:
            name = f"{kind}_rate"
            if name in body:
                rate = body[name]
                if (
                    not isinstance(rate, int | float)
                    or isinstance(rate, bool)
                    or not 0 <= rate <= 1
                ):
                    raise bad_request(f"{name} must be a number between 0 and 1.")
                values[name] = float(rate)
        if sum(values.get(f"{kind}_rate", 0.0) for kind in FAULT_PRECEDENCE) > 1.0:
            raise bad_request("The fault rates must add up to at most 1.")
        if "error_statuses" in body:
            statuses = body["error_statuses"]
            if (
                not isinstance(statuses, list)
                or not statuses
                or not all(s in ERROR_BODIES for s in statuses)
            ):
                raise bad_request(f"error_statuses must be a list drawn from {list(ERROR_BODIES)}.")
            values["error_statuses"] = tuple(statuses)
        for name in ("paths", "methods"):
            items = body.get(name)
            if items is None:
                continue
            if not isinstance(items, list) or not all(isinstance(i, str) for i in items):
                raise bad_request(f"{name} must be a list of strings.")
            values[name] = tuple(i.upper() for i in items) if name == "methods" else tuple(items)
        for pattern in values.get("paths", ()):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise bad_request(f"Bad path regex {pattern!r}: {exc}.") from exc
        for name in ("count", "seed"):
            if body.get(name) is not None:
                values[name] = non_negative_int(body, name)
        return cls(**values)


@dataclass(frozen=True)
class FaultDecision:
    kind: FaultKind | None = None
    latency_s: float = 0.0
    hang_s: float = 0.0
    error_status: int = 500


NO_FAULT: Final = FaultDecision()


def fault_configs_from_json(body: Mapping[str, Any]) -> tuple[FaultConfig, ...]:
    """One rule (a FaultConfig's fields) or several: `{"rules": [{...}, {...}]}`."""
    if "rules" not in body:
        return (FaultConfig.from_json(body),)
    rules = body["rules"]
    if set(body) != {"rules"} or not isinstance(rules, list) or not rules:
        raise bad_request('Give one rule\'s fields, or {"rules": [<rule>, ...]} alone.')
    if not all(isinstance(rule, dict) for rule in rules):
        raise bad_request("Every rule is a JSON object.")
    return tuple(FaultConfig.from_json(rule) for rule in rules)


class _FaultRule:
    """One FaultConfig with its own countdown and its own seeded draws."""

    def __init__(self, config: FaultConfig) -> None:
        self.config = config
        self.remaining = config.count
        self.rng = random.Random(config.seed)

    def decide(self, method: str, path: str) -> FaultDecision:
        cfg = self.config
        if cfg.methods and method.upper() not in cfg.methods:
            return NO_FAULT
        if cfg.paths and not any(re.search(p, path) for p in cfg.paths):
            return NO_FAULT
        kind: FaultKind | None = None
        if self.remaining is not None:
            if self.remaining <= 0:
                return NO_FAULT
            self.remaining -= 1
            # With a count the fault is certain; rates only say which kinds are enabled.
            kind = next((k for k in FAULT_PRECEDENCE if cfg.rate(k) > 0), None)
        else:
            # One draw per call against the cumulative rates keeps a seeded run repeatable.
            draw, threshold = self.rng.random(), 0.0
            for candidate in FAULT_PRECEDENCE:
                threshold += cfg.rate(candidate)
                if draw < threshold:
                    kind = candidate
                    break
        status = self.rng.choice(cfg.error_statuses) if kind == "error" else 500
        if kind is None and cfg.latency_ms == 0:
            return NO_FAULT
        return FaultDecision(kind, cfg.latency_ms / 1000, cfg.hang_ms / 1000, status)

    def status(self) -> dict[str, Any]:
        return {**asdict(self.config), "remaining": self.remaining}


class FaultInjector:
    """Decides per /api/v1 call whether and how to misbehave; seeded, so runs repeat.

    Several rules may be in force (e.g. a steady rate of 5xx and, on one path, the next call
    answered slowly); the first rule whose path and method match and that decides on a fault
    or a latency wins the call.
    """

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules = [_FaultRule(FaultConfig())]

    def configure(self, *configs: FaultConfig) -> None:
        with self._lock:
            self._rules = [_FaultRule(config) for config in configs or (FaultConfig(),)]

    def status(self) -> dict[str, Any]:
        """The first rule's settings (and `remaining`), and every rule under `rules`."""
        with self._lock:
            rules = [rule.status() for rule in self._rules]
        return {**rules[0], "rules": rules}

    def decide(self, method: str, path: str) -> FaultDecision:
        with self._lock:
            for rule in self._rules:
                decision = rule.decide(method, path)
                if decision is not NO_FAULT:
                    return decision
        return NO_FAULT


# --------------------------------------------------------------------------- webhooks


@dataclass(frozen=True)
class WebhookEvent:
    type: str
    campaign_id: int
    payload: dict[str, Any]


@dataclass(frozen=True)
class WebhookSettings:
    mode: WebhookMode = "deliver"
    delay_ms: int = 0
    quirks: bool = False
    # [unknown] The vendor's retry policy is undocumented; 0 = one attempt, which is also the
    # harshest assumption for the integration (a 5xx answer loses the event).
    retries: int = 0
    retry_delay_ms: int = 200

    @classmethod
    def from_json(cls, body: Mapping[str, Any]) -> WebhookSettings:
        known = set(cls.__dataclass_fields__)
        unknown = sorted(set(body) - known)
        if unknown:
            raise bad_request(f"Unknown webhook settings: {', '.join(unknown)}.")
        mode = body.get("mode", "deliver")
        if mode not in get_args(WebhookMode):
            raise bad_request(f"mode must be one of {list(get_args(WebhookMode))}.")
        quirks = body.get("quirks", False)
        if not isinstance(quirks, bool):
            raise bad_request("quirks must be a boolean.")
        delay_ms = non_negative_int(body, "delay_ms") if "delay_ms" in body else 0
        if mode == "delay" and delay_ms == 0:
            delay_ms = 1000
        retries = non_negative_int(body, "retries") if "retries" in body else 0
        retry_delay_ms = (
            non_negative_int(body, "retry_delay_ms") if "retry_delay_ms" in body else 200
        )
        return cls(cast(WebhookMode, mode), delay_ms, quirks, min(retries, 10), retry_delay_ms)


@dataclass(frozen=True)
class _DeliveryJob:
    event: WebhookEvent
    settings: WebhookSettings
    generation: int
    copy: int = 1


def pending_event(campaign: Campaign) -> WebhookEvent:
    account = {
        "campaign_id": campaign.id,
        "first_name": campaign.first_name,
        "last_name": campaign.last_name,
        "email": campaign.email,
        "provider_type": "office",
        "tags": list(campaign.tags),
        "meta": campaign.meta,
    }
    return WebhookEvent(
        "campaign.pending",
        campaign.id,
        {"type": "campaign.pending", "action": "pending", "account": account},
    )


def deleted_event(campaign: Campaign) -> WebhookEvent:
    # The reference's own example: `type: "smtp"` instead of provider_type, meta null, no tags.
    account = {
        "campaign_id": campaign.id,
        "first_name": campaign.first_name,
        "last_name": campaign.last_name,
        "email": campaign.email,
        "type": "smtp",
        "meta": None,
    }
    return WebhookEvent(
        "campaign.deleted",
        campaign.id,
        {"type": "campaign.deleted", "action": "deleted", "account": account},
    )


def reconnect_event(campaign: Campaign, event_type: ReconnectEvent) -> WebhookEvent:
    if event_type == "campaign.pending":
        return pending_event(campaign)
    # The reference's campaign.updated example: no provider_type, no tags, meta "".
    account = {
        "campaign_id": campaign.id,
        "first_name": campaign.first_name,
        "last_name": campaign.last_name,
        "email": campaign.email,
        "meta": "",
    }
    return WebhookEvent(
        "campaign.updated",
        campaign.id,
        {"type": "campaign.updated", "action": "updated", "account": account},
    )


def connection_problem_event(campaign: Campaign) -> WebhookEvent:
    # INVENTED: the reference documents that a connection-problem webhook exists but not its
    # `type` string or fields [unknown]. The integration must treat this as "some unknown event".
    event = pending_event(campaign)
    payload = {**event.payload, "type": "campaign.connection_problem"}
    payload["action"] = "connection_problem"
    return WebhookEvent("campaign.connection_problem", campaign.id, payload)


def apply_quirks(event: WebhookEvent) -> dict[str, Any]:
    """The shapes seen in the reference's own examples, which a tolerant parser must accept."""
    payload = copy.deepcopy(event.payload)
    account = payload["account"]
    if "last_name" in account:
        account["lalst_name"] = account.pop("last_name")
    account["campaign_id"] = str(account["campaign_id"])
    if event.type != "campaign.deleted":  # deleted already carries its own null meta
        account["meta"] = ""
    if account.get("tags"):
        account["tags"] = [account["tags"][0], *(" " + tag for tag in account["tags"][1:])]
    return payload


class WebhookDispatcher:
    """Delivers webhooks from one background thread, recording every attempt.

    One thread keeps deliveries in publish order (unless a mode says otherwise), which is what
    makes the reorder and duplicate modes meaningful.
    """

    def __init__(self, url: str | None, stopping: threading.Event) -> None:
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._queue: queue.Queue[_DeliveryJob | None] = queue.Queue()
        self._stopping = stopping
        self._url = url
        self._settings = WebhookSettings()
        self._held: list[_DeliveryJob] = []
        self._log: list[dict[str, Any]] = []
        # Bumped by reset(): jobs queued before a reset are skipped instead of leaking into the
        # next test.
        self._generation = 0
        self._thread: threading.Thread | None = None
        self._client: httpx.Client | None = None

    @property
    def url(self) -> str | None:
        with self._lock:
            return self._url

    @url.setter
    def url(self, value: str | None) -> None:
        with self._lock:
            self._url = value

    @property
    def settings(self) -> WebhookSettings:
        with self._lock:
            return self._settings

    @settings.setter
    def settings(self, value: WebhookSettings) -> None:
        with self._lock:
            self._settings = value

    def start(self) -> None:
        self._thread = threading.Thread(
            target=self._run, name="mailivery-sandbox-webhooks", daemon=True
        )
        self._thread.start()

    def stop(self, timeout_s: float = 1.0) -> None:
        self._queue.put(None)
        if self._thread is not None:
            # Bounded: an in-flight POST can take up to WEBHOOK_TIMEOUT_S; the thread is a daemon.
            self._thread.join(timeout_s)
        if self._client is not None and (self._thread is None or not self._thread.is_alive()):
            self._client.close()

    def publish(self, event: WebhookEvent) -> None:
        with self._lock:
            settings, generation = self._settings, self._generation
            job = _DeliveryJob(event, settings, generation)
            if settings.mode == "drop":
                self._record(job, attempt=1, outcome="dropped", url=self._url)
            elif settings.mode == "reorder":
                self._held.append(job)
            else:
                self._queue.put(job)
                if settings.mode == "duplicate":
                    self._queue.put(replace(job, copy=2))

    def flush(self) -> int:
        """Releases held webhooks newest-first: the out-of-order delivery the contract warns of."""
        with self._lock:
            held, self._held = self._held, []
        for job in reversed(held):
            self._queue.put(job)
        return len(held)

    def status(self) -> dict[str, Any]:
        with self._lock:
            return {
                "webhook_url": self._url,
                "settings": asdict(self._settings),
                "held": len(self._held),
                "queued": self._queue.qsize(),
            }

    def deliveries(self, event_type: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            return self._matching(event_type)

    def wait_for(
        self, count: int, timeout_s: float, event_type: str | None
    ) -> list[dict[str, Any]]:
        """Waits (bounded) until `count` attempts are recorded; returns what is there either way."""
        with self._changed:
            self._changed.wait_for(
                lambda: len(self._matching(event_type)) >= count, min(timeout_s, MAX_WAIT_S)
            )
            return self._matching(event_type)

    def reset(self) -> None:
        with self._lock:
            self._generation += 1
            self._held.clear()
            self._log.clear()
            self._settings = WebhookSettings()
            self._changed.notify_all()

    def _matching(self, event_type: str | None) -> list[dict[str, Any]]:
        return [dict(d) for d in self._log if event_type is None or d["type"] == event_type]

    def _run(self) -> None:
        while True:
            job = self._queue.get()
            if job is None or self._stopping.is_set():
                return
            delay_s = job.settings.delay_ms / 1000
            if delay_s and self._is_current(job) and self._stopping.wait(delay_s):
                return
            # Checked after the delay too: a reset() during it must not leak into the next test.
            if self._is_current(job):
                self._deliver(job)

    def _is_current(self, job: _DeliveryJob) -> bool:
        with self._lock:
            return job.generation == self._generation

    def _http(self) -> httpx.Client:
        # Made on first use, in the delivery thread: httpx's default TLS set-up (certifi) costs
        # ~50 ms, which every sandbox start (one per test) would otherwise pay.
        if self._client is None:
            self._client = httpx.Client(
                timeout=WEBHOOK_TIMEOUT_S,
                headers={"User-Agent": "Mailivery-Sandbox/1.0"},
                verify=ssl.create_default_context(),
            )
        return self._client

    def _deliver(self, job: _DeliveryJob) -> None:
        url = self.url
        if url is None:
            with self._lock:
                self._record(job, attempt=1, outcome="no_webhook_url", url=None)
            return
        payload = apply_quirks(job.event) if job.settings.quirks else job.event.payload
        for attempt in range(1, job.settings.retries + 2):
            status_code: int | None = None
            error: str | None = None
            try:
                status_code = self._http().post(url, json=payload).status_code
            except Exception as exc:  # any failure is a result to record, not a crash
                error = f"{type(exc).__name__}: {exc}"
            ok = status_code is not None and 200 <= status_code < 300
            outcome = "delivered" if ok else ("error" if error else "rejected")
            with self._lock:
                self._record(job, attempt, outcome, url, payload, status_code, error)
            if ok or attempt > job.settings.retries:
                return
            if self._stopping.wait(job.settings.retry_delay_ms / 1000):
                return

    def _record(
        self,
        job: _DeliveryJob,
        attempt: int,
        outcome: str,
        url: str | None,
        payload: dict[str, Any] | None = None,
        status_code: int | None = None,
        error: str | None = None,
    ) -> None:
        """Caller holds the lock."""
        if job.generation != self._generation:
            return  # finished after a reset(): belongs to the previous test, not this one
        self._log.append(
            {
                "seq": len(self._log) + 1,
                "type": job.event.type,
                "campaign_id": job.event.campaign_id,
                "payload": payload if payload is not None else job.event.payload,
                "url": url,
                "mode": job.settings.mode,
                "copy": job.copy,
                "attempt": attempt,
                "outcome": outcome,
                "status_code": status_code,
                "error": error,
                "time": utc_now_iso(),
            }
        )
        self._changed.notify_all()


# --------------------------------------------------------------------------- options


@dataclass(frozen=True)
class SandboxOptions:
    """Switches for the contract's open questions; applied to /api/v1 only."""

    status_field: StatusField = "status"
    validation_error_shape: ValidationShape = "errors"
    # [unknown] consent-link lifetime: None = never expires.
    consent_ttl_seconds: float | None = None
    # [unknown] "mailbox already exists": allow = a second campaign, reject = 422 on create,
    # reuse = the consent reconnects the existing campaign [guess, the default].
    existing_mailbox: ExistingMailbox = "reuse"
    # [unknown] the webhook a reconnect sends: the reference says campaign.updated is sent
    # "also after a Microsoft reconnect"; warmgate must work with either.
    reconnect_event: ReconnectEvent = "campaign.updated"
    # [unknown] whether 429 carries Retry-After / X-RateLimit-*; off tests the jitter fallback.
    rate_limit_headers: bool = True
    daily_email_total: int = DAILY_EMAIL_TOTAL
