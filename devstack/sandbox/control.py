"""A thin client for the Mailivery sandbox's `/_sandbox` control endpoints.

Tests and dev tools drive the sandbox over HTTP through this class, so a sandbox running in
another process is driven exactly like one started in-process.
It imports nothing else of the sandbox and nothing from `warmgate`.
"""

from __future__ import annotations

import ssl
import time
from collections.abc import Iterable, Sequence
from functools import cache
from types import TracebackType
from typing import Any, Final, Literal

import httpx

__all__ = ["SandboxControl", "SandboxControlError"]

CONTROL_PREFIX: Final = "/_sandbox"
# The sandbox caps one long-poll at 30 s; shorter slices keep each HTTP call well under the
# client timeout.
_LONG_POLL_SLICE_S: Final = 10.0


@cache
def _tls_context() -> ssl.SSLContext:
    # One shared context: httpx builds a fresh one per client (~50 ms), and tests make a
    # control client per test. The sandbox speaks plain HTTP, so it is rarely even used.
    return ssl.create_default_context()


class _Unset:
    """Marks "leave this option alone", since None is a meaningful value (no webhook URL)."""

    def __repr__(self) -> str:
        return "UNSET"


UNSET: Final = _Unset()


class SandboxControlError(RuntimeError):
    """A control call the sandbox refused; carries the status and the sandbox's answer."""

    def __init__(self, status_code: int, body: Any) -> None:
        super().__init__(f"sandbox control call failed with {status_code}: {body}")
        self.status_code = status_code
        self.body = body


class SandboxControl:
    def __init__(
        self, base_url: str, *, timeout: float = 15.0, client: httpx.Client | None = None
    ) -> None:
        self.base_url = base_url.rstrip("/")
        self._owns_client = client is None
        self._client = client or httpx.Client(timeout=timeout, verify=_tls_context())

    def close(self) -> None:
        if self._owns_client:
            self._client.close()

    def __enter__(self) -> SandboxControl:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()

    # ---- consent and vendor-side events

    def consent(
        self, state: str | None = None, url: str | None = None, email: str | None = None
    ) -> dict[str, Any]:
        """Plays the mailbox owner consenting at Microsoft; `email` = who actually signed in.

        Returns `{"created": bool, "campaign": {...}}`.
        """
        if state is None and url is None:
            raise ValueError("give the consent URL or its state")
        body: dict[str, Any] = {"state": state} if state is not None else {"url": url}
        if email is not None:
            body["email"] = email
        return self._post("/consent", body)

    def consents(self) -> list[dict[str, Any]]:
        return list(self._get("/consents")["consents"])

    def campaigns(self) -> list[dict[str, Any]]:
        """Every campaign, always under the key `status` (the status_field option is API-only)."""
        return list(self._get("/campaigns")["campaigns"])

    def seed_campaign(
        self,
        email: str,
        first_name: str = "Seed",
        last_name: str | None = None,
        *,
        status: Literal["pending", "active", "paused", "connection_problem"] = "pending",
        tags: Sequence[str] = (),
        email_per_day: int | None = None,
        response_rate: int | None = None,
        campaign_id: int | None = None,
        notify: bool = False,
    ) -> dict[str, Any]:
        """Creates a campaign directly; `notify=True` also sends campaign.pending."""
        body: dict[str, Any] = {
            "email": email,
            "first_name": first_name,
            "last_name": last_name,
            "status": status,
            "tags": list(tags),
            "notify": notify,
        }
        optional = {"email_per_day": email_per_day, "response_rate": response_rate}
        body.update({k: v for k, v in optional.items() if v is not None})
        if campaign_id is not None:
            body["id"] = campaign_id
        return dict(self._post("/campaigns", body)["campaign"])

    def pause_campaign(self, campaign_id: int | str) -> dict[str, Any]:
        """Vendor-side pause: no webhook, as the vendor sends none for its own actions."""
        return dict(self._post(f"/campaigns/{campaign_id}/pause")["campaign"])

    def break_connection(self, campaign_id: int | str) -> dict[str, Any]:
        """Status → connection_problem and a campaign.connection_problem webhook."""
        return dict(self._post(f"/campaigns/{campaign_id}/connection-problem")["campaign"])

    def send_webhook(self, campaign_id: int | str, event_type: str) -> dict[str, Any]:
        """Mailivery sends one webhook about the campaign now (a late duplicate, an update):
        `campaign.pending`, `campaign.updated` or `campaign.connection_problem`."""
        return dict(self._post(f"/campaigns/{campaign_id}/webhook", {"type": event_type})["sent"])

    def set_connection(self, email: str, ok: bool, refusals: int | None = None) -> dict[str, Any]:
        """The per-mailbox switch start-warmup/resume-warmup check (default: ok); with
        `refusals`, ok=False holds for that many start/resume calls, then the mailbox connects."""
        body: dict[str, Any] = {"email": email, "ok": ok}
        if refusals is not None:
            body["refusals"] = refusals
        return self._post("/mailboxes/connection", body)

    # ---- faults

    def set_faults(
        self,
        *,
        latency_ms: int = 0,
        error_rate: float = 0.0,
        timeout_rate: float = 0.0,
        html_rate: float = 0.0,
        empty_rate: float = 0.0,
        garbage_rate: float = 0.0,
        lost_rate: float = 0.0,
        reset_rate: float = 0.0,
        hang_ms: int | None = None,
        error_statuses: Iterable[int] | None = None,
        paths: Iterable[str] | None = None,
        methods: Iterable[str] | None = None,
        count: int | None = None,
        seed: int | None = None,
    ) -> dict[str, Any]:
        """Replaces the fault settings with one rule (unset fields go back to their defaults)."""
        body: dict[str, Any] = {
            "latency_ms": latency_ms,
            "error_rate": error_rate,
            "timeout_rate": timeout_rate,
            "html_rate": html_rate,
            "empty_rate": empty_rate,
            "garbage_rate": garbage_rate,
            "lost_rate": lost_rate,
            "reset_rate": reset_rate,
            "count": count,
            "seed": seed,
        }
        if hang_ms is not None:
            body["hang_ms"] = hang_ms
        if error_statuses is not None:
            body["error_statuses"] = list(error_statuses)
        if paths is not None:
            body["paths"] = list(paths)
        if methods is not None:
            body["methods"] = list(methods)
        return dict(self._post("/faults", body)["faults"])

    def set_fault_rules(self, rules: Sequence[dict[str, Any]]) -> dict[str, Any]:
        """Replaces the fault settings with several rules, each a `set_faults` body (its
        fields by name); the first rule that decides on a fault wins a call."""
        return dict(self._post("/faults", {"rules": list(rules)})["faults"])

    def storm(self, seconds: float) -> None:
        """Every /api/v1 call answered 429 + Retry-After for `seconds` (rate-limit clock)."""
        self._post("/storm", {"seconds": seconds})

    def faults(self) -> dict[str, Any]:
        """Current fault settings, plus `remaining` (calls left of a `count`)."""
        return dict(self._get("/faults")["faults"])

    def clear_faults(self) -> dict[str, Any]:
        return dict(self._post("/faults", {})["faults"])

    # ---- webhooks

    def set_webhooks(
        self,
        mode: Literal["deliver", "drop", "duplicate", "reorder", "delay"] = "deliver",
        *,
        delay_ms: int = 0,
        quirks: bool = False,
        retries: int = 0,
        retry_delay_ms: int = 200,
    ) -> dict[str, Any]:
        return self._post(
            "/webhooks",
            {
                "mode": mode,
                "delay_ms": delay_ms,
                "quirks": quirks,
                "retries": retries,
                "retry_delay_ms": retry_delay_ms,
            },
        )

    def flush_webhooks(self) -> int:
        """Releases webhooks held by the reorder mode (newest first); returns how many."""
        return int(self._post("/webhooks/flush")["flushed"])

    def webhook_status(self) -> dict[str, Any]:
        """URL, settings and how many webhooks are held or queued, plus the delivery log."""
        return self._get("/webhooks")

    def webhook_deliveries(self, type: str | None = None) -> list[dict[str, Any]]:
        params = {"type": type} if type else None
        return list(self._get("/webhooks", params)["deliveries"])

    def wait_for_webhooks(
        self, count: int, timeout: float = 5.0, *, type: str | None = None
    ) -> list[dict[str, Any]]:
        """Waits until at least `count` delivery attempts are logged; raises TimeoutError.

        Each round is a bounded server-side long-poll, so this neither spins nor waits forever.
        """
        deadline = time.monotonic() + timeout
        while True:
            remaining = deadline - time.monotonic()
            params: dict[str, Any] = {
                "min_count": count,
                "timeout": max(0.001, min(remaining, _LONG_POLL_SLICE_S)),
            }
            if type:
                params["type"] = type
            deliveries = list(self._get("/webhooks", params)["deliveries"])
            if len(deliveries) >= count:
                return deliveries
            if remaining <= 0:
                raise TimeoutError(
                    f"expected {count} webhook deliveries within {timeout}s, got "
                    f"{len(deliveries)}: {deliveries}"
                )

    # ---- logs, options, reset

    def calls(self) -> list[dict[str, Any]]:
        """Every /api/v1 call: method, path, request_id, status, key_fingerprint, body, fault."""
        return list(self._get("/calls")["calls"])

    def set_rate_limit(self, per_minute: int) -> dict[str, Any]:
        """Changes the per-key limit and starts a fresh window."""
        return self.set_options(rate_limit_per_minute=per_minute)

    def set_options(
        self,
        *,
        status_field: Literal["status", "status_code"] | None = None,
        validation_error_shape: Literal["errors", "code"] | None = None,
        webhook_url: str | _Unset | None = UNSET,
        rate_limit_per_minute: int | None = None,
        rate_limit_headers: bool | None = None,
        consent_ttl_seconds: float | _Unset | None = UNSET,
        existing_mailbox: Literal["allow", "reject", "reuse"] | None = None,
        reconnect_event: Literal["campaign.updated", "campaign.pending"] | None = None,
        daily_email_total: int | None = None,
    ) -> dict[str, Any]:
        """Changes only the options given; `webhook_url=None` means "no webhook URL"."""
        body: dict[str, Any] = {
            name: value
            for name, value in {
                "status_field": status_field,
                "validation_error_shape": validation_error_shape,
                "rate_limit_per_minute": rate_limit_per_minute,
                "rate_limit_headers": rate_limit_headers,
                "existing_mailbox": existing_mailbox,
                "reconnect_event": reconnect_event,
                "daily_email_total": daily_email_total,
            }.items()
            if value is not None
        }
        if not isinstance(webhook_url, _Unset):
            body["webhook_url"] = webhook_url
        if not isinstance(consent_ttl_seconds, _Unset):
            body["consent_ttl_seconds"] = consent_ttl_seconds
        return dict(self._post("/options", body)["options"])

    def options(self) -> dict[str, Any]:
        return dict(self._get("/options")["options"])

    def reset(self) -> None:
        """Clears campaigns, consents, logs, faults and options; keeps keys and webhook URL."""
        self._post("/reset")

    def health(self) -> bool:
        return bool(self._get("/health").get("ok"))

    # ---- transport

    def _get(self, path: str, params: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._check(self._client.get(self.base_url + CONTROL_PREFIX + path, params=params))

    def _post(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        return self._check(
            self._client.post(self.base_url + CONTROL_PREFIX + path, json=body or {})
        )

    @staticmethod
    def _check(response: httpx.Response) -> dict[str, Any]:
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.is_error or not isinstance(body, dict):
            raise SandboxControlError(response.status_code, body)
        return body
