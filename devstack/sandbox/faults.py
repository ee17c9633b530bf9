"""Injected misbehaviour of the vendor API: which call fails, how, and how often (seeded)."""

from __future__ import annotations

import random
import re
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, Final, Literal, cast

from devstack.sandbox.errors import bad_request
from devstack.sandbox.validation import non_negative_int, reject_unknown

DEFAULT_HANG_MS: Final = 10_000

# lost: the call runs, then its answer never comes (hang_ms, then 504): an unknown outcome.
# reset: the call runs, then the connection is closed without an answer.
FaultKind = Literal["timeout", "error", "html", "empty", "garbage", "lost", "reset"]
# What the call log's `fault` says: an injected kind, or a 429 of a storm (RateLimiter.storm).
CallFault = FaultKind | Literal["storm"]

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
        reject_unknown(body, cls.__dataclass_fields__, "fault settings")
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
