"""The reliability soak: onboardings through the local stack over HTTP, every fault at once.

    python -m tests.e2e.soak            # the full soak (`make soak`): 1,000 onboardings
    python -m tests.e2e.soak --small    # the variant `make test` runs (tests/e2e/test_soak.py)

An integrator (threads, over the HTTP API, retrying as a client should) and the mailbox owners
(the sandbox's consent step) run five journeys: an expected mailbox that consents and warms up;
an owner who signs in with another mailbox (an unexpected campaign; the integrator withdraws
the request); a consent after the integrator withdrew (unexpected); a warming mailbox that
loses its connection and is reconnected (POST /mailboxes again); one an operator pauses in
Mailivery's dashboard and the integrator resumes (POST /mailboxes/{email}/resume).

Meanwhile, seeded: the vendor answers 5xx, HTML, empty or unreadable bodies, resets
connections, answers after 12 s (after or without applying the call), and goes through 429
storms (30 s on its time-scaled clock, nothing but 429 and Retry-After); the functions' AWS
calls are throttled, conflict, lose their answers, fail to send to SQS or to read a secret
(devstack.aws_faults); worker invocations die right after Mailivery answered a start and
before its result is written, or in the middle of a batch; an onboarding dies after the
consent link was minted; webhooks are dropped, duplicated, delayed, reordered and quirky; and
the webhook token is rotated (current → previous) while webhooks arrive. The vendor's
240/min is time-scaled as in bench/throughput.py (StackOptions.time_scale).

It ends when every mailbox reached its end (warming, withdrawn, or parked) and the queues are
worked off; a message that reached WorkDLQ is explained, redriven with `warmgate-ops dlq
redrive`, and worked off too. Then three independent ledgers are reconciled: the sandbox's call
and webhook logs, the table, and what the functions sent to and took from the queues (the
stack's ledger) with the queues' own contents. Any mismatch is printed to stderr naming its
campaign and mailbox, and the exit status is 1. stdout gets exactly one line:

    processed N, started S, resumed R, unexpected U (started 0), actions duplicated 0,
    messages lost 0, DLQ D (each explained), 429 received Q, max 60 s window W/240, wall T
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import random
import secrets
import subprocess
import sys
import threading
import time
from bisect import bisect_left
from collections import Counter, defaultdict
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime
from enum import StrEnum
from typing import Any, Final

import httpx
from boto3.dynamodb.types import TypeDeserializer

from devstack.aws_faults import AwsFault, AwsFaults, Invocation
from devstack.sandbox import SandboxControl
from devstack.stack import LocalStack, StackOptions
from tests.openapi_contract import assert_conforms

WEBHOOK, WORKER = "WebhookFunction", "WorkerFunction"
ONBOARDING, RECONCILER = "OnboardingFunction", "ReconcilerFunction"
FUNCTIONS: Final = (WEBHOOK, WORKER, ONBOARDING, RECONCILER)
VENDOR_LIMIT: Final = 240  # requests per (time-scaled) minute, contract §1
STORM_SECONDS: Final = 30  # on the vendor's time-scaled clock
SLOW_ANSWER_MS: Final = 12_000  # the client's read timeout is 10 s
# A reset connection's call lands this much later at the vendor (a proxy dropped the client,
# the vendor went on); within warmgate.domain.mailboxes.UNKNOWN_OUTCOME_SETTLE.
RESET_LANDS_MS: Final = 2_000
SECRET_MAX_AGE_SECONDS: Final = 5  # the functions' secret cache, short so rotation is quick
WATCH_INTERVAL_S: Final = 2.0
PROGRESS_EVERY_S: Final = 30.0  # a line on stderr
ACTIONS: Final = ("start-warmup", "resume-warmup")
# The sandbox's endpoint never ran for these calls (answered before it, as at the vendor).
NOT_REACHED_FAULTS: Final = frozenset({"error", "html"})
MAX_RECEIVES: Final = 5  # WorkQueue's maxReceiveCount (template.yaml)


@dataclass(frozen=True)
class SoakPlan:
    name: str
    expected: int
    other_mailbox: int  # the owner signs in with another mailbox; the request is withdrawn
    after_withdrawal: int  # the owner consents after the integrator withdrew the request
    reconnects: int
    pauses: int
    time_scale: float
    in_flight: int  # journeys the integrator runs at once
    storms: int  # 429 storms, spread over the onboarding phase
    deadline_s: float  # from the stack's start to the last check
    reconcile_every_s: float
    # A reconnect whose consent webhook is lost waits for the reconciler's requeue of waiting
    # requests (5 real minutes): only a run that long may drop those webhooks.
    drop_reconnect_webhooks: bool
    # CLAIM_LEASE_SECONDS. The local stack runs one invocation at a time, so no live worker can
    # hold a claim while another decides: a shorter lease only shortens the wait after a crash.
    claim_lease_s: int = 90
    # Crashes after the first of each kind (a crashed onboarding's retry waits out warmgate's
    # 60 s in-flight window; a crashed worker's claim, the lease): a short run has only those.
    repeat_crashes: bool = True
    seed: int = 14

    @property
    def mailboxes(self) -> int:
        return (
            self.expected
            + self.other_mailbox
            + self.after_withdrawal
            + self.reconnects
            + self.pauses
        )


FULL: Final = SoakPlan(
    "full",
    expected=800,
    other_mailbox=100,
    after_withdrawal=50,
    reconnects=25,
    pauses=25,
    time_scale=5,
    in_flight=40,
    storms=6,
    deadline_s=45 * 60,
    reconcile_every_s=60,
    drop_reconnect_webhooks=True,
)
SMALL: Final = SoakPlan(
    "small",
    expected=60,
    other_mailbox=8,
    after_withdrawal=4,
    reconnects=4,
    pauses=4,
    time_scale=5,
    in_flight=16,
    storms=1,
    deadline_s=170,
    reconcile_every_s=20,
    drop_reconnect_webhooks=False,
    claim_lease_s=35,  # the setting's minimum
    repeat_crashes=False,
)


# --- the faults --------------------------------------------------------------------------------


def vendor_fault_rules(plan: SoakPlan) -> list[dict[str, Any]]:
    """The sandbox's rules: each kind once for certain (the first matching calls), then a
    moderate seeded rate of everything on every /api/v1 call."""
    api, start = ["^/api/v1/"], [r"/start-warmup$"]
    certain = [
        {"timeout_rate": 1.0, "count": 1, "paths": start},  # applied after 12 s: unknown outcome
        {"lost_rate": 1.0, "count": 1, "paths": [r"/campaigns/\d+$"]},  # a read, then 504
        {"reset_rate": 1.0, "count": 1, "paths": start, "hang_ms": RESET_LANDS_MS},
        {"garbage_rate": 1.0, "count": 1, "paths": start},  # applied, the answer unreadable
        {"empty_rate": 1.0, "count": 1, "paths": [r"/ms-graph$"]},  # a link minted, body lost
        {"html_rate": 1.0, "count": 1, "paths": [r"/resume-warmup$"]},  # a proxy's 502 page
        {"error_rate": 1.0, "count": 1, "paths": [r"/resume-warmup$"], "error_statuses": [503]},
    ]
    resets = {"reset_rate": 0.008, "hang_ms": RESET_LANDS_MS, "paths": api, "seed": plan.seed}
    steady = {
        "error_rate": 0.03,
        "html_rate": 0.008,
        "empty_rate": 0.004,
        "garbage_rate": 0.004,
        "timeout_rate": 0.002,
        "lost_rate": 0.002,
        "paths": api,
        "seed": plan.seed + 1,
    }
    return [{"hang_ms": SLOW_ANSWER_MS, **rule} for rule in (*certain, resets, steady)]


def _item(params: Mapping[str, Any]) -> dict[str, Any]:
    """The mailbox item a PutItem writes, or the one a transaction puts (the worker's claim,
    written with the request budget's token)."""
    item = params.get("Item")
    if isinstance(item, dict):
        return item
    for entry in params.get("TransactItems") or ():
        put = entry.get("Put") or {}
        if str(put.get("Item", {}).get("pk", {}).get("S", "")).startswith("mailbox#"):
            return dict(put["Item"])
    return {}


def _mailbox_state(params: Mapping[str, Any]) -> tuple[str | None, str | None]:
    """(state written, state it comes from) of a mailbox PutItem; Nones for any other item."""
    item = _item(params)
    if not str(item.get("pk", {}).get("S", "")).startswith("mailbox#"):
        return None, None
    history = item.get("history", {}).get("L", [])
    source = history[-1].get("M", {}).get("from", {}).get("S") if history else None
    return item.get("state", {}).get("S"), source


def result_after_vendor_answered(params: Mapping[str, Any]) -> bool:
    """The worker's result write after Mailivery accepted a start or resume."""
    return _mailbox_state(params) == ("warming", "verifying")


def fresh_claim(params: Mapping[str, Any]) -> bool:
    """A worker's claim of a request, right before its vendor call."""
    state, source = _mailbox_state(params)
    return state == "verifying" and source != "verifying"


def minted_link(params: Mapping[str, Any]) -> bool:
    """Onboarding's save of a consent link Mailivery has just minted."""
    return _mailbox_state(params)[0] == "consent_requested" and "consent_url" in _item(params)


class Poison:
    """One mailbox whose record the worker cannot read until a message about it is in WorkDLQ
    (five failed receives): what the DLQ alarm and an operator's redrive are for."""

    def __init__(self, email: str) -> None:
        self.email = email
        self.active = threading.Event()
        self.active.set()

    def hits(self, params: Mapping[str, Any]) -> bool:
        """A read of this mailbox's record (the worker reads it with its campaign's ledger
        entry in one BatchGetItem)."""
        wanted = {"pk": {"S": f"mailbox#{self.email}"}}
        keys = [k for table in (params.get("RequestItems") or {}).values() for k in table["Keys"]]
        return self.active.is_set() and (params.get("Key") == wanted or wanted in keys)


def aws_fault_rules(poison: Poison | None = None, *, repeat_crashes: bool = True) -> list[AwsFault]:
    every = FUNCTIONS
    again = 1.0 if repeat_crashes else 0.0
    return [
        AwsFault(
            "a mailbox the worker cannot read (until its message is in WorkDLQ)",
            "dynamodb.BatchGetItem",
            error="ProvisionedThroughputExceededException",
            functions=(WORKER,),
            when=poison.hits if poison else lambda params: False,
        ),
        # Crashes first: their per-invocation counts must see every matching call.
        AwsFault(
            "crash after the vendor answered",
            "dynamodb.PutItem",
            crash=True,
            functions=(WORKER,),
            when=result_after_vendor_answered,
            first=1,
            rate=0.01 * again,
            count=8,
        ),
        AwsFault(
            "crash mid-batch",
            "dynamodb.TransactWriteItems",
            crash=True,
            functions=(WORKER,),
            when=fresh_claim,
            nth_in_invocation=2,
            first=1,
            rate=0.05 * again,
            count=8,
        ),
        AwsFault(
            "onboarding crash after the link was minted",
            "dynamodb.PutItem",
            crash=True,
            functions=(ONBOARDING,),
            when=minted_link,
            first=1,
            rate=0.005 * again,
            count=3,
        ),
        AwsFault(
            "DynamoDB ProvisionedThroughputExceeded",
            "dynamodb.*",
            error="ProvisionedThroughputExceededException",
            functions=every,
            first=1,
            rate=0.008,
        ),
        AwsFault(
            "DynamoDB ThrottlingException",
            "dynamodb.*",
            error="ThrottlingException",
            functions=every,
            first=1,
            rate=0.004,
        ),
        AwsFault(
            "DynamoDB TransactionConflict",
            "dynamodb.PutItem",
            error="TransactionConflictException",
            functions=every,
            first=1,
            rate=0.004,
        ),
        AwsFault(
            "DynamoDB write applied, answer lost",
            "dynamodb.PutItem",
            error="InternalServerError",
            applied=True,
            functions=every,
            first=1,
            rate=0.002,
        ),
        AwsFault(
            "webhook SendMessage failed",
            "sqs.SendMessage",
            error="InternalError",
            functions=(WEBHOOK,),
            first=1,
            rate=0.03,
        ),
        AwsFault(
            "worker SendMessage (deferral) failed",
            "sqs.SendMessage",
            error="InternalError",
            functions=(WORKER,),
            first=1,
            rate=0.05,
        ),
        AwsFault(
            "webhook token secret unavailable",
            "secrets-manager.GetSecretValue",
            error="InternalServiceError",
            functions=(WEBHOOK,),
            first=1,
            rate=0.05,
        ),
        AwsFault(
            "API key secret unavailable",
            "secrets-manager.GetSecretValue",
            error="ThrottlingException",
            functions=(WORKER, ONBOARDING, RECONCILER),
            first=1,
            rate=0.05,
        ),
    ]


# --- who does what ------------------------------------------------------------------------------


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


# --- the run ------------------------------------------------------------------------------------


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


def build_journeys(plan: SoakPlan, rng: random.Random) -> list[Journey]:
    def mailbox(n: int, kind: str) -> str:
        return f"{kind}-{n:04d}-{secrets.token_hex(3)}@contoso.com"

    journeys = [Journey(Kind.EXPECTED, mailbox(n, "ada")) for n in range(plan.expected)]
    journeys += [
        Journey(Kind.OTHER_MAILBOX, mailbox(n, "decoy"), signer=mailbox(n, "intruder"))
        for n in range(plan.other_mailbox)
    ]
    journeys += [
        Journey(Kind.AFTER_WITHDRAWAL, mailbox(n, "late")) for n in range(plan.after_withdrawal)
    ]
    journeys += [Journey(Kind.RECONNECT, mailbox(n, "lin")) for n in range(plan.reconnects)]
    journeys += [Journey(Kind.PAUSE, mailbox(n, "kay")) for n in range(plan.pauses)]
    rng.shuffle(journeys)
    return journeys


def warming_after(kind: str) -> Callable[[dict[str, Any]], bool]:
    """Warming because of the request of `kind` (onboard, reconnect, resume)."""
    return lambda r: r.get("state") == "warming" and r.get("request_kind") == kind


def run_journey(
    journey: Journey,
    plan: SoakPlan,
    integrator: Integrator,
    vendor: Mailivery,
    watcher: TableWatcher,
    deadline: float,
) -> None:
    email = journey.email
    if journey.kind is Kind.AFTER_WITHDRAWAL:
        link = integrator.request_consent(email)["consent_url"]
        integrator.withdraw(email)
        journey.campaign_id = vendor.consent(link)
        journey.end = "withdrawn"
        return
    link = integrator.request_consent(email)["consent_url"]
    journey.campaign_id = vendor.consent(link, journey.signer)
    if journey.kind is Kind.OTHER_MAILBOX:
        integrator.withdraw(email)
        journey.end = "withdrawn"
        return
    record = watcher.wait_for(email, warming_after("onboard"), deadline)
    if record.get("parked"):
        journey.end = "parked"
        return
    if journey.kind is Kind.RECONNECT:
        vendor.break_connection(journey.campaign_id)
        with contextlib.suppress(IntegratorError):  # its webhook may be lost: reconnect anyway
            watcher.wait_for(
                email, lambda r: r.get("state") == "connection_problem", time.monotonic() + 10
            )
        link = integrator.request_consent(email)["consent_url"]
        vendor.consent(link, may_drop=plan.drop_reconnect_webhooks)
        record = watcher.wait_for(email, warming_after("reconnect"), deadline)
    elif journey.kind is Kind.PAUSE:
        vendor.operator_pause(journey.campaign_id)
        integrator.resume(email)
        record = watcher.wait_for(email, warming_after("resume"), deadline)
    journey.end = "parked" if record.get("parked") else "warming"


def run_soak(plan: SoakPlan, dump: str | None = None) -> SoakRun:
    rng = random.Random(plan.seed)
    # The handlers' JSON logs: next to the dump for a post-mortem, else nowhere.
    function_log = open(f"{dump}.log" if dump else os.devnull, "w")  # noqa: SIM115 - closed below
    options = StackOptions(
        visibility_timeout_seconds=2,  # WorkQueue's 1100 s would end the run in the DLQ's time
        schedule_seconds=plan.reconcile_every_s,
        poll_idle_seconds=0.05,
        time_scale=plan.time_scale,
        function_stdout=function_log,
        function_overrides={
            "SECRET_MAX_AGE_SECONDS": str(SECRET_MAX_AGE_SECONDS),
            "CLAIM_LEASE_SECONDS": str(plan.claim_lease_s),
        },
    )
    stack = LocalStack(options).start()
    try:
        return _run(plan, stack, rng, dump)
    finally:
        stack.stop()
        function_log.close()


def _run(plan: SoakPlan, stack: LocalStack, rng: random.Random, dump: str | None) -> SoakRun:
    started = time.monotonic()
    deadline = started + plan.deadline_s
    control = stack.sandbox_control()
    run = SoakRun(plan, stack, control, build_journeys(plan, rng), started)
    control.set_fault_rules(vendor_fault_rules(plan))
    poison = Poison(next(j.email for j in run.journeys if j.kind is Kind.EXPECTED))
    rules = aws_fault_rules(poison, repeat_crashes=plan.repeat_crashes)
    stack.aws_faults.configure(rules, seed=plan.seed)
    integrator = Integrator(stack.api_url, deadline, random.Random(plan.seed + 1))
    vendor = Mailivery(control, random.Random(plan.seed + 2))
    watcher = TableWatcher(stack)
    watcher.start()
    rotation = TokenRotation(stack, control)
    launched = [0]

    def journey(j: Journey) -> None:
        launched[0] += 1
        try:
            run_journey(j, plan, integrator, vendor, watcher, deadline)
        except Exception as exc:  # recorded and reported, never lost in a thread
            j.failure = f"{type(exc).__name__}: {exc}"

    stop_timeline = threading.Event()
    timeline = threading.Thread(
        target=_timeline,
        args=(run, vendor, rotation, poison, launched, stop_timeline),
        name="soak-timeline",
        daemon=True,
    )
    timeline.start()
    try:
        with ThreadPoolExecutor(plan.in_flight, thread_name_prefix="soak-journey") as pool:
            list(pool.map(journey, run.journeys))
        stop_timeline.set()
        timeline.join(30)
        vendor.release_held()
        if len(rotation.steps) < 3:
            run.problems.append(f"token rotation incomplete: {rotation.steps}")
        _settle(run, deadline)
        if _redrive_dead_letters(run):
            _settle(run, deadline)
        run.wall_s = time.monotonic() - started
        watcher.refresh()
        control.clear_faults()
        stack.aws_faults.configure(())  # no more faults; the ledger stays for the checks
        _reconcile(run, watcher, integrator, vendor, rotation)
        if dump:
            _dump(run, watcher, dump)
    finally:
        stop_timeline.set()
        watcher.stop()
        integrator.close()
    return run


def _timeline(
    run: SoakRun,
    vendor: Mailivery,
    rotation: TokenRotation,
    poison: Poison,
    launched: list[int],
    stopping: threading.Event,
) -> None:
    """Storms spread over the onboarding phase, the token rotation at 35 % and 70 % of it,
    held webhooks released every few seconds (newest first), the poisoned mailbox healed once
    its first message is in WorkDLQ."""
    plan, total = run.plan, len(run.journeys)
    storm_at = [total * (n + 0.5) / plan.storms for n in range(plan.storms)]
    switch_at: float | None = None
    next_report = time.monotonic() + PROGRESS_EVERY_S
    while not stopping.wait(3.0):
        vendor.release_held()
        progress = launched[0]
        if poison.active.is_set() and _queue_depth(run.stack, "WorkDLQ") > 0:
            poison.active.clear()  # the operator has found the cause; now the redrive
        elif not poison.active.is_set():
            _redrive_dead_letters(run)
        if time.monotonic() >= next_report:
            next_report += PROGRESS_EVERY_S
            ended = sum(1 for j in run.journeys if j.end or j.failure)
            queued = _queue_depth(run.stack, "WorkQueue")
            print(
                f"soak: {_duration(time.monotonic() - run.started)}, {progress}/{total} "
                f"journeys started, {ended} ended, WorkQueue {queued}",
                file=sys.stderr,
                flush=True,
            )
        if storm_at and progress >= storm_at[0]:
            storm_at.pop(0)
            run.control.storm(STORM_SECONDS)
            run.storms += 1
        if not rotation.steps and progress >= 0.35 * total:
            rotation.both_accepted()
            switch_at = time.monotonic() + SECRET_MAX_AGE_SECONDS + 2
        if switch_at is not None and time.monotonic() >= switch_at:
            rotation.switch_url()
            switch_at = None
        if len(rotation.steps) == 2 and progress >= 0.7 * total:
            rotation.drop_previous()
    while storm_at:  # a run too short to reach them still gets its storms
        storm_at.pop(0)
        run.control.storm(STORM_SECONDS)
        run.storms += 1
    if len(rotation.steps) == 1:
        time.sleep(SECRET_MAX_AGE_SECONDS + 2)
        rotation.switch_url()
    if len(rotation.steps) == 2:
        rotation.drop_previous()


def _queue_depth(stack: LocalStack, logical_id: str) -> int:
    assert stack.aws is not None
    attributes = stack.aws.client("sqs").get_queue_attributes(
        QueueUrl=stack.queue_url(logical_id),
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())


def _settle(run: SoakRun, deadline: float) -> None:
    """Wait until WorkQueue is worked off and the sandbox holds no webhook."""
    while True:
        status = run.control.webhook_status()
        idle = status["held"] == 0 and status["queued"] == 0
        if idle and _queue_depth(run.stack, "WorkQueue") == 0:
            time.sleep(2)  # a message in a handler's hands is neither visible nor in flight yet
            if _queue_depth(run.stack, "WorkQueue") == 0:
                return
        if time.monotonic() > deadline:
            left = _queue_depth(run.stack, "WorkQueue")
            run.problems.append(f"WorkQueue not worked off at the deadline ({left} left)")
            return
        time.sleep(1)


def _redrive_dead_letters(run: SoakRun) -> bool:
    """What an operator does on the WorkDLQ alarm: look (`warmgate-ops dlq peek`), then move
    the messages back (`warmgate-ops dlq redrive`). True if there was anything to move."""
    if _queue_depth(run.stack, "WorkDLQ") == 0:
        return False
    letters = json.loads(_ops(run, "dlq", "peek", "--max", "1000", "--json"))
    run.dead_letters |= {letter["message_id"]: letter for letter in letters}
    _ops(run, "dlq", "redrive")
    return True


def _ops(run: SoakRun, *command: str) -> str:
    stack = run.stack
    done = subprocess.run(  # noqa: S603 - our own interpreter and module
        [
            sys.executable,
            "-m",
            "warmgate_ops",
            "--queue-url",
            stack.queue_url("WorkQueue"),
            "--dlq-url",
            stack.queue_url("WorkDLQ"),
            *command,
        ],
        env={
            **os.environ,
            "AWS_ENDPOINT_URL": stack.moto_url,
            "AWS_DEFAULT_REGION": stack.options.region,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
        },
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    if done.returncode != 0:
        run.problems.append(f"warmgate-ops {' '.join(command)} failed: {done.stderr.strip()}")
    return done.stdout


# --- the ledgers --------------------------------------------------------------------------------


@dataclass
class VendorCall:
    method: str
    path: str
    status: int
    fault: str | None
    arrived: float  # epoch seconds

    @property
    def campaign(self) -> int | None:
        parts = self.path.split("/")
        return (
            int(parts[4])
            if len(parts) > 4 and parts[3] == "campaigns" and parts[4].isdigit()
            else None
        )

    @property
    def action(self) -> str | None:
        end = self.path.rsplit("/", 1)[-1]
        return end if self.method == "PATCH" and end in ACTIONS else None

    @property
    def reached(self) -> bool:
        """The vendor's endpoint ran (whatever the client saw afterwards)."""
        return self.status != 429 and self.fault not in NOT_REACHED_FAULTS


def vendor_calls(control: SandboxControl) -> list[VendorCall]:
    calls = []
    for c in control.calls():
        ended = datetime.fromisoformat(c["time"].replace("Z", "+00:00")).timestamp()
        calls.append(
            VendorCall(
                c["method"], c["path"], c["status"], c["fault"], ended - c["duration_ms"] / 1000
            )
        )
    return sorted(calls, key=lambda call: call.arrived)


def busiest_window(arrivals: list[float], window_s: float) -> int:
    """The most calls that arrived within any `window_s`."""
    return max((bisect_left(arrivals, t + window_s) - n for n, t in enumerate(arrivals)), default=0)


def consumed_messages(invocations: list[Invocation]) -> dict[str, str]:
    """Messages a worker invocation finished (the event source deletes those): id → body."""
    done: dict[str, str] = {}
    for invocation in invocations:
        if invocation.function != WORKER or invocation.outcome != "ok":
            continue
        failed = {
            f["itemIdentifier"] for f in (invocation.result or {}).get("batchItemFailures", [])
        }
        done |= {mid: body for mid, body in invocation.records.items() if mid not in failed}
    return done


def failed_receives(invocations: list[Invocation]) -> dict[str, list[Invocation]]:
    failed: dict[str, list[Invocation]] = defaultdict(list)
    for invocation in invocations:
        if invocation.function != WORKER:
            continue
        if invocation.outcome != "ok":
            ids = set(invocation.records)
        else:
            ids = {
                f["itemIdentifier"] for f in (invocation.result or {}).get("batchItemFailures", [])
            }
        for message_id in ids:
            failed[message_id].append(invocation)
    return failed


def _explanation(invocation: Invocation, faults: AwsFaults, calls: list[VendorCall]) -> str | None:
    """What a failed receive in this invocation is explained by: a fault it met (in AWS, a
    crash, or the vendor failing while it ran, after the client's own retries); None: nothing
    injected, so a failure of our own. A 429 explains nothing: waiting for the vendor's limit
    is a deferral, never a failed receive."""
    injected = [f.rule for f in faults.injected if f.invocation == invocation.id]
    if injected:
        return ", ".join(sorted(set(injected)))
    end = invocation.ended_at or time.time()
    vendor = {
        c.fault or str(c.status)
        for c in calls
        if invocation.started_at <= c.arrived <= end
        and c.status != 429
        and (c.fault or c.status >= 500)
    }
    return f"vendor {', '.join(sorted(vendor))}" if vendor else None


def _reconcile(
    run: SoakRun,
    watcher: TableWatcher,
    integrator: Integrator,
    vendor: Mailivery,
    rotation: TokenRotation,
) -> None:
    problems, faults = run.problems, run.stack.aws_faults
    calls = vendor_calls(run.control)
    campaigns = {int(c["id"]): c for c in run.control.campaigns()}
    deliveries = run.control.webhook_deliveries()
    mailboxes, ledger = watcher.mailboxes, watcher.ledger
    by_campaign = {j.campaign_id: j for j in run.journeys if j.campaign_id is not None}

    # 1. every journey reached its end, as the table records it
    for j in run.journeys:
        record = mailboxes.get(j.email, {})
        state = "parked" if record.get("parked") else record.get("state")
        if j.failure or j.end is None or state != j.end:
            problems.append(
                f"{j.label()}: ended {state!r}, expected {j.end!r}"
                + (f"; the integrator saw {j.failure}" if j.failure else "")
            )

    # 2. the sandbox's call log and campaigns against the journeys and the table
    reached: dict[tuple[int, str], int] = Counter(
        (c.campaign, c.action) for c in calls if c.action and c.reached and c.campaign is not None
    )
    duplicated = 0
    for (campaign_id, action), count in sorted(reached.items()):
        owner = by_campaign.get(campaign_id)
        if owner is None:
            problems.append(f"campaign {campaign_id}: {count} {action} call(s), no journey made it")
            continue
        extra = count - owner.allowed(action)
        if extra > 0:
            duplicated += extra
            problems.append(f"{owner.label()}: {action} reached Mailivery {count} times")
    tracked = {str(r.get("campaign_id")): e for e, r in mailboxes.items() if r.get("campaign_id")}
    for campaign_id, campaign in sorted(campaigns.items()):
        owner = by_campaign.get(campaign_id)
        if owner is None:
            problems.append(f"campaign {campaign_id} ({campaign['email']}): no journey made it")
            continue
        record = mailboxes.get(owner.email, {})
        if owner.unexpected:
            entry = ledger.get(str(campaign_id))
            if campaign["status"] != "pending":
                problems.append(f"{owner.label()}: unexpected, yet {campaign['status']}")
            if str(campaign_id) in tracked:
                problems.append(
                    f"{owner.label()}: unexpected, yet tracked by {tracked[str(campaign_id)]}"
                )
            if entry is not None and entry.get("state") != "left_pending":
                problems.append(f"{owner.label()}: ledger says {entry.get('state')}")
            continue
        active = campaign["status"] == "active"
        warming = record.get("state") == "warming"
        if active != warming or (warming and record.get("campaign_id") != str(campaign_id)):
            problems.append(
                f"{owner.label()}: Mailivery says {campaign['status']}, the table says "
                f"{record.get('state')} for campaign {record.get('campaign_id')}"
            )

    # 3. the queues: what the functions sent, what the worker finished, what the DLQ holds
    invocations = list(faults.invocations)
    sent = {m.message_id: m for m in faults.sent}
    consumed = consumed_messages(invocations)
    bodies = {m.message_id: m.body for m in faults.sent} | {
        mid: body for i in invocations for mid, body in i.records.items()
    }
    # Every message that reached WorkDLQ (the ops peeks') and its body, as first sent.
    dead = {mid: bodies.get(mid, "") for mid in run.dead_letters}
    queued = _queue_depth(run.stack, "WorkQueue") + _queue_depth(run.stack, "WorkDLQ")
    lost = sorted(set(sent) - set(consumed) - set(dead)) if queued == 0 else []
    for message_id in lost:
        problems.append(f"message lost: {_describe_message(sent[message_id].body)} ({message_id})")
    # A redrive sends a copy (a new id, the same body): each dead body is worked off that way.
    redriven = Counter(body for mid, body in consumed.items() if mid not in sent)
    for body in set(dead.values()):
        if redriven[body] == 0:
            problems.append(f"DLQ message not worked off after redrive: {_describe_message(body)}")
    strangers = sum(redriven.values()) - sum(min(redriven[b], 1) for b in set(dead.values()))
    if strangers > 0:
        problems.append(f"{strangers} message(s) worked off that no function or redrive sent")
    receives = failed_receives(invocations)
    for message_id, failures in sorted(receives.items()):
        for invocation in failures:
            if _explanation(invocation, faults, calls) is None:
                problems.append(
                    f"a receive of {_describe_message(bodies.get(message_id, ''))} failed "
                    f"with nothing injected (invocation {invocation.id}, {invocation.outcome})"
                )
    unexplained = 0
    for message_id, body in sorted(dead.items()):
        reasons = [_explanation(i, faults, calls) for i in receives.get(message_id, [])]
        if len(reasons) < MAX_RECEIVES or None in reasons:
            unexplained += 1
            problems.append(
                f"DLQ message {_describe_message(body)}: failed receives {len(reasons)}, "
                f"explained by {reasons}"
            )
    lost_intake = 0  # webhooks answered 202 whose message never reached the queue
    for invocation in invocations:
        if invocation.function != WEBHOOK:
            continue
        status = (invocation.result or {}).get("statusCode") if invocation.outcome == "ok" else 500
        own = [f.rule for f in faults.injected if f.invocation == invocation.id]
        about = _describe_webhook(invocation.body)
        if status == 202 and len(invocation.sent) != 1:
            lost_intake += 1
            problems.append(f"webhook {about} answered 202, {len(invocation.sent)} message(s) sent")
        elif status != 202 and (status is None or status < 500 or not own):
            problems.append(f"webhook {about} answered {status} with no fault injected")
    refused = [
        d for d in deliveries if d["status_code"] is not None and 400 <= d["status_code"] < 500
    ]
    for delivery in refused:
        problems.append(
            f"webhook {delivery['type']} of campaign {delivery['campaign_id']} refused "
            f"{delivery['status_code']} ({delivery['url'].rsplit('/', 1)[-1][:6]}…)"
        )

    # 4. the vendor's limit
    arrivals = [c.arrived for c in calls]
    window = busiest_window(arrivals, 60 / run.plan.time_scale)
    over_limit = [c for c in calls if c.status == 429 and c.fault != "storm"]
    if window > VENDOR_LIMIT or over_limit:
        problems.append(
            f"vendor limit: {window} calls in a minute, {len(over_limit)} 429 outside storms"
        )

    # 5. the faults really happened
    vendor_kinds = Counter(c.fault for c in calls if c.fault)
    for kind in ("error", "html", "empty", "garbage", "reset", "timeout", "lost", "storm"):
        if vendor_kinds[kind] == 0:
            problems.append(f"no vendor fault {kind!r} happened")
    for rule in aws_fault_rules():
        if not any(f.rule == rule.name for f in faults.injected):
            problems.append(f"no AWS fault {rule.name!r} happened")
    for mode in ("duplicate", "reorder", "delay"):
        if vendor.modes[mode] == 0:
            problems.append(f"no webhook was {mode}d")

    unexpected = [j for j in run.journeys if j.unexpected]
    started_unexpected = sum(
        count for (cid, _), count in reached.items() if cid in {j.campaign_id for j in unexpected}
    )
    processed = sum(1 for j in run.journeys if j.end and not j.failure)
    starts = {cid for (cid, action) in reached if action == "start-warmup"}
    resumes = {cid for (cid, action) in reached if action == "resume-warmup"}
    run.summary = (
        f"processed {processed}, started {len(starts)}, resumed {len(resumes)}, "
        f"unexpected {len(unexpected)} (started {started_unexpected}), "
        f"actions duplicated {duplicated}, messages lost {len(lost) + lost_intake}, "
        f"DLQ {len(dead)} ({f'{unexplained} unexplained' if unexplained else 'each explained'}), "
        f"429 received {sum(1 for c in calls if c.status == 429)}, "
        f"max 60 s window {window}/{VENDOR_LIMIT}, wall {_duration(run.wall_s)}"
    )
    run.counts = {
        "integrator": dict(integrator.answers),
        "webhook modes": dict(vendor.modes),
        "vendor faults": dict(vendor_kinds),
        "aws faults": dict(Counter(f.rule for f in faults.injected)),
        "crashes": {fid: fn.crashes for fid, fn in run.stack.functions.items() if fn.crashes},
        "storms": run.storms,
        "rotation": rotation.steps,
        "dead letters": len(dead),
    }


def _dump(run: SoakRun, watcher: TableWatcher, path: str) -> None:
    faults = run.stack.aws_faults
    document = {
        "journeys": [vars(j) for j in run.journeys],
        "calls": run.control.calls(),
        "deliveries": run.control.webhook_deliveries(),
        "mailboxes": watcher.mailboxes,
        "ledger": watcher.ledger,
        "invocations": [
            {**vars(i), "records": list(i.records), "matched": dict(i.matched)}
            for i in faults.invocations
        ],
        "injected": [vars(f) for f in faults.injected],
        "sent": [vars(m) for m in faults.sent],
    }
    with open(path, "w") as out:
        json.dump(document, out, default=str, indent=1)


def _describe_webhook(body: str | None) -> str:
    try:
        document = json.loads(body or "")
        return f"{document['type']} for campaign {document['account']['campaign_id']}"
    except (ValueError, KeyError, TypeError):
        return "(unreadable)"


def _describe_message(body: str) -> str:
    try:
        document = json.loads(body)
        return (
            f"{document['event_type']} for campaign {document['campaign_id']} ({document['email']})"
        )
    except (ValueError, KeyError, TypeError):
        return "an unreadable message"


def _duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m tests.e2e.soak", description=__doc__.split("\n")[0]
    )
    parser.add_argument("--small", action="store_true", help="the variant make test runs")
    parser.add_argument("--seed", type=int, help="another seed for every random choice")
    parser.add_argument("--dump", help="write every ledger to this JSON file, for a post-mortem")
    args = parser.parse_args(argv)
    plan = SMALL if args.small else FULL
    if args.seed is not None:
        plan = replace(plan, seed=args.seed)
    run = run_soak(plan, dump=args.dump)
    print(json.dumps(run.counts, indent=1), file=sys.stderr)
    for problem in run.problems:
        print(f"MISMATCH {problem}", file=sys.stderr)
    print(run.summary)
    return 1 if run.problems else 0


if __name__ == "__main__":
    raise SystemExit(main())
