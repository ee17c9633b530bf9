"""Who does what in the soak: the integrator (over the HTTP API, retrying as a client
should), the mailbox owners and Mailivery (the sandbox), a watcher of the table, the webhook
token's rotation; and the run's record they fill in."""

from __future__ import annotations

import json
import random
import secrets
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any, Final

import httpx
from boto3.dynamodb.types import TypeDeserializer

from devstack.sandbox import SandboxControl
from devstack.stack import LocalStack
from tests.e2e.soak_plan import WATCH_INTERVAL_S, SoakPlan
from tests.openapi_contract import assert_conforms


class Kind(StrEnum):
    EXPECTED = "expected"
    OTHER_MAILBOX = "other mailbox"
    AFTER_WITHDRAWAL = "consent after withdrawal"
    RECONNECT = "reconnect"
    PAUSE = "pause and resume"


@dataclass
class Journey:
    kind: Kind
    email: str
    signer: str | None = None  # who really signs in (OTHER_MAILBOX)
    campaign_id: int | None = None
    end: str | None = None  # warming | withdrawn | parked
    failure: str | None = None

    @property
    def unexpected(self) -> bool:
        return self.kind in (Kind.OTHER_MAILBOX, Kind.AFTER_WITHDRAWAL)

    def allowed(self, action: str) -> int:
        """Vendor actions this journey's requests back, on its campaign."""
        if self.unexpected:
            return 0
        if action == "start-warmup":
            return 1
        return 1 if self.kind in (Kind.RECONNECT, Kind.PAUSE) else 0

    def label(self) -> str:
        return f"campaign {self.campaign_id} ({self.email}, {self.kind.value})"


class IntegratorError(Exception):
    pass


class Integrator:
    """The integrator's backend: the documented API, retried as its answers say."""

    RETRIED_CONFLICTS: Final = frozenset(
        {"CONSENT_REQUEST_IN_PROGRESS", "CONCURRENT_UPDATE", "CLAIM_HELD"}
    )

    def __init__(self, api_url: str, deadline: float, rng: random.Random) -> None:
        # Every answer must conform to openapi.yaml, faults or not.
        self._http = httpx.Client(
            base_url=api_url, timeout=60.0, event_hooks={"response": [assert_conforms]}
        )
        self._deadline = deadline
        self._rng = rng
        self._rng_lock = threading.Lock()
        self.answers: Counter[str] = Counter()

    def close(self) -> None:
        self._http.close()

    def request_consent(self, email: str) -> dict[str, Any]:
        body = {"email": email, "first_name": "Soak", "requested_by": "soak"}
        return self._call("POST", "/mailboxes", body, ok={200, 201}).json()  # type: ignore[no-any-return]

    def withdraw(self, email: str) -> None:
        self._call("DELETE", f"/mailboxes/{email}", None, ok={200})

    def resume(self, email: str) -> None:
        self._call("POST", f"/mailboxes/{email}/resume", None, ok={202})

    def _call(
        self, method: str, path: str, body: dict[str, Any] | None, *, ok: set[int]
    ) -> httpx.Response:
        for attempt in range(1, 1000):
            try:
                response = self._http.request(method, path, json=body)
            except httpx.TransportError as exc:
                self.answers[f"{method} transport error"] += 1
                self._pause(attempt, None, f"{method} {path}: {exc!r}")
                continue
            code = _code(response)
            self.answers[f"{method} {response.status_code} {code or ''}".strip()] += 1
            if response.status_code in ok:
                return response
            retried = response.status_code in (429, 500, 502, 503) or (
                response.status_code == 409 and code in self.RETRIED_CONFLICTS
            )
            if not retried:
                raise IntegratorError(f"{method} {path}: {response.status_code} {response.text}")
            self._pause(attempt, response.headers.get("Retry-After"), f"{method} {path}")
        raise IntegratorError(f"{method} {path}: no success")  # pragma: no cover

    def _pause(self, attempt: int, retry_after: str | None, what: str) -> None:
        with self._rng_lock:
            jitter = self._rng.uniform(0.5, 1.5)
        wait = float(retry_after) if retry_after else min(8.0, 0.5 * 2**attempt) * jitter
        if time.monotonic() + wait > self._deadline:
            raise IntegratorError(f"{what}: still failing at the deadline")
        time.sleep(wait)


def _code(response: httpx.Response) -> str | None:
    try:
        body = response.json()
    except ValueError:
        return None
    return body.get("code") if isinstance(body, dict) else None


class Mailivery:
    """The vendor's side the soak plays: owners consenting, an operator's pause, a connection
    lost, and how each webhook travels (seeded): delivered, duplicated, delayed, held and
    released out of order, or dropped."""

    MODES: Final = (("deliver", 0.55), ("duplicate", 0.15), ("delay", 0.1), ("reorder", 0.1))

    def __init__(self, control: SandboxControl, rng: random.Random) -> None:
        self.control = control
        self._rng = rng
        self._lock = threading.Lock()
        self.modes: Counter[str] = Counter()

    def consent(self, url: str, signer: str | None = None, *, may_drop: bool = True) -> int:
        with self._lock:
            self._next_webhook(may_drop)
            campaign: dict[str, Any] = self.control.consent(url=url, email=signer)["campaign"]
        return int(campaign["id"])

    def break_connection(self, campaign_id: int) -> None:
        with self._lock:
            self._next_webhook(may_drop=True)
            self.control.break_connection(campaign_id)

    def operator_pause(self, campaign_id: int) -> None:
        with self._lock:
            self.control.pause_campaign(campaign_id)  # the dashboard sends no webhook
            self._next_webhook(may_drop=True)
            self.control.send_webhook(campaign_id, "campaign.updated")

    def release_held(self) -> None:
        with self._lock:
            self.control.flush_webhooks()

    def _next_webhook(self, may_drop: bool) -> None:
        draw, mode = self._rng.random(), "drop"
        for candidate, share in self.MODES:
            draw -= share
            if draw < 0:
                mode = candidate
                break
        if mode == "drop" and not may_drop:
            mode = "deliver"
        self.modes[mode] += 1
        self.control.set_webhooks(
            mode,  # type: ignore[arg-type]
            delay_ms=1500 if mode == "delay" else 0,
            quirks=self._rng.random() < 0.5,
            retries=2,  # [unknown] the vendor's retry policy; a few quick retries
            retry_delay_ms=300,
        )


class TableWatcher(threading.Thread):
    """Reads the table every few seconds (not through the API: the stack runs one invocation
    at a time, and the journeys' waits must not compete with the work they wait for)."""

    def __init__(self, stack: LocalStack) -> None:
        super().__init__(name="soak-table-watcher", daemon=True)
        assert stack.aws is not None
        self._dynamodb = stack.aws.client("dynamodb")
        self._table = stack.resources["MailboxTable"].ref
        self._changed = threading.Condition()
        self._stopping = threading.Event()
        self.mailboxes: dict[str, dict[str, Any]] = {}
        self.ledger: dict[str, dict[str, Any]] = {}

    def run(self) -> None:
        while not self._stopping.wait(WATCH_INTERVAL_S):
            self.refresh()

    def stop(self) -> None:
        self._stopping.set()
        self.join(10)

    def refresh(self) -> None:
        mailboxes, ledger = {}, {}
        for item in self._scan():
            key = str(item["pk"])
            if key.startswith("mailbox#"):
                mailboxes[str(item["email"])] = item
            elif key.startswith("campaign#"):
                ledger[str(item["campaign_id"])] = item
        with self._changed:
            self.mailboxes, self.ledger = mailboxes, ledger
            self._changed.notify_all()

    def wait_for(
        self, email: str, done: Callable[[dict[str, Any]], bool], deadline: float
    ) -> dict[str, Any]:
        with self._changed:
            while True:
                record = self.mailboxes.get(email)
                if record is not None and (done(record) or record.get("parked")):
                    return record
                left = deadline - time.monotonic()
                if left <= 0:
                    state = record.get("state") if record else "no record"
                    raise IntegratorError(f"{email} still {state} at the deadline")
                self._changed.wait(min(left, 10))

    def _scan(self) -> Iterator[dict[str, Any]]:
        deserializer = TypeDeserializer()
        for page in self._dynamodb.get_paginator("scan").paginate(
            TableName=self._table, ConsistentRead=True
        ):
            for item in page.get("Items", []):
                yield {k: deserializer.deserialize(v) for k, v in item.items()}


class TokenRotation:
    """The README's rotation, while webhooks arrive: store {current: new, previous: old}, wait
    out the functions' cache, point Mailivery at the new URL, later drop `previous`."""

    def __init__(self, stack: LocalStack, control: SandboxControl) -> None:
        assert stack.aws is not None
        assert stack.webhook_url is not None
        self._secrets = stack.aws.client("secretsmanager")
        self._secret = stack.resources["WebhookTokenSecret"].ref
        self._control = control
        self.old = stack.options.webhook_token
        self.new = secrets.token_urlsafe(36)
        self._old_url = stack.webhook_url
        self.steps: list[str] = []

    def both_accepted(self) -> None:
        self._put({"current": self.new, "previous": self.old})
        self.steps.append("previous kept")

    def switch_url(self) -> None:
        self._control.set_options(webhook_url=self._old_url.replace(self.old, self.new))
        self.steps.append("URL switched")

    def drop_previous(self) -> None:
        self._put({"current": self.new})
        self.steps.append("previous dropped")

    def _put(self, value: dict[str, str]) -> None:
        self._secrets.put_secret_value(SecretId=self._secret, SecretString=json.dumps(value))


# --- the run's record ---------------------------------------------------------------------------


@dataclass
class SoakRun:
    plan: SoakPlan
    stack: LocalStack
    control: SandboxControl
    journeys: list[Journey]
    started: float
    storms: int = 0
    dead_letters: dict[str, dict[str, Any]] = field(default_factory=dict)  # ops dlq peek's
    wall_s: float = 0.0
    problems: list[str] = field(default_factory=list)
    summary: str = ""
    counts: dict[str, Any] = field(default_factory=dict)
