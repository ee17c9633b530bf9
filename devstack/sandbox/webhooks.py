"""Webhooks the vendor sends: their payloads, the delivery modes (drop, duplicate, reorder,
delay, quirks, retries) and the thread that delivers them and logs every attempt."""

from __future__ import annotations

import copy
import queue
import ssl
import threading
from collections.abc import Mapping
from dataclasses import asdict, dataclass, replace
from typing import Any, Final, Literal, cast, get_args

import httpx

from devstack.sandbox.errors import bad_request
from devstack.sandbox.store import Campaign, utc_now_iso
from devstack.sandbox.validation import non_negative_int, reject_unknown

WEBHOOK_TIMEOUT_S: Final = 5.0
# Long-poll cap for GET /_sandbox/webhooks?min_count=..., so a forgotten waiter cannot pin a thread.
MAX_WAIT_S: Final = 30.0

WebhookMode = Literal["deliver", "drop", "duplicate", "reorder", "delay"]
ReconnectEvent = Literal["campaign.updated", "campaign.pending"]


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
        reject_unknown(body, cls.__dataclass_fields__, "webhook settings")
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


def campaign_event(event_type: str, campaign: Campaign, **account_fields: Any) -> WebhookEvent:
    """`event_type` ("campaign.<action>") for `campaign`: the account's identity and whatever
    else each type's reference example carries (`account_fields`)."""
    account = {
        "campaign_id": campaign.id,
        "first_name": campaign.first_name,
        "last_name": campaign.last_name,
        "email": campaign.email,
        **account_fields,
    }
    action = event_type.removeprefix("campaign.")
    payload = {"type": event_type, "action": action, "account": account}
    return WebhookEvent(event_type, campaign.id, payload)


def pending_event(campaign: Campaign) -> WebhookEvent:
    return campaign_event(
        "campaign.pending",
        campaign,
        provider_type="office",
        tags=list(campaign.tags),
        meta=campaign.meta,
    )


def deleted_event(campaign: Campaign) -> WebhookEvent:
    # The reference's own example: `type: "smtp"` instead of provider_type, meta null, no tags.
    return campaign_event("campaign.deleted", campaign, type="smtp", meta=None)


def reconnect_event(campaign: Campaign, event_type: ReconnectEvent) -> WebhookEvent:
    if event_type == "campaign.pending":
        return pending_event(campaign)
    # The reference's campaign.updated example: no provider_type, no tags, meta "".
    return campaign_event("campaign.updated", campaign, meta="")


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
