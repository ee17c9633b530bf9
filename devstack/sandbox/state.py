"""What the vendor API and the control surface share: the vendor's state, its rate limit,
faults and webhooks, the options in force and the call log.

Each part guards its own state; the options and the call log share the lock here.
"""

from __future__ import annotations

import threading
import time
from dataclasses import asdict, replace
from typing import Any

from devstack.sandbox.faults import FaultConfig, FaultInjector
from devstack.sandbox.options import OptionsUpdate, SandboxOptions
from devstack.sandbox.rate_limit import RateLimiter
from devstack.sandbox.store import CampaignStore
from devstack.sandbox.webhooks import WebhookDispatcher


class SandboxState:
    def __init__(
        self,
        *,
        webhook_url: str | None,
        rate_limit_per_minute: int,
        time_scale: float,
        stopping: threading.Event,
    ) -> None:
        if rate_limit_per_minute < 1:
            raise ValueError("rate_limit_per_minute must be at least 1")
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self._initial_rate_limit = rate_limit_per_minute
        self.stopping = stopping
        self.store = CampaignStore()
        self.rate_limiter = RateLimiter(
            rate_limit_per_minute,
            clock=lambda: time.monotonic() * time_scale,
            time_scale=time_scale,
        )
        self.faults = FaultInjector()
        self.webhooks = WebhookDispatcher(webhook_url, stopping)
        self._lock = threading.Lock()
        self._options = SandboxOptions()
        self._calls: list[dict[str, Any]] = []

    @property
    def options(self) -> SandboxOptions:
        with self._lock:
            return self._options

    def apply(self, update: OptionsUpdate) -> None:
        with self._lock:
            self._options = replace(self._options, **update.changes)
        if update.rate_limit_per_minute is not None:
            self.rate_limiter.set_limit(update.rate_limit_per_minute)
        if update.sets_webhook_url:
            self.webhooks.url = update.webhook_url

    def options_view(self) -> dict[str, Any]:
        return {
            **asdict(self.options),
            "webhook_url": self.webhooks.url,
            "rate_limit_per_minute": self.rate_limiter.per_minute,
        }

    def record_call(self, entry: dict[str, Any]) -> None:
        with self._lock:
            self._calls.append(entry)

    def calls(self) -> list[dict[str, Any]]:
        with self._lock:
            return list(self._calls)

    def reset(self) -> None:
        """Clears campaigns, consents, logs, faults and switches; keeps keys and webhook URL."""
        self.store.clear()
        self.faults.configure(FaultConfig())
        self.webhooks.reset()
        self.rate_limiter.set_limit(self._initial_rate_limit)
        with self._lock:
            self._options = SandboxOptions()
            self._calls.clear()
