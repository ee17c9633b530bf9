"""The soak's faults: the vendor's (sandbox fault rules) and the functions' own AWS calls
(devstack.aws_faults rules), crashes at the moments that matter included."""

from __future__ import annotations

import threading
from collections.abc import Mapping
from typing import Any

from devstack.aws_faults import AwsFault
from tests.e2e.soak_plan import (
    FUNCTIONS,
    ONBOARDING,
    RECONCILER,
    RESET_LANDS_MS,
    SLOW_ANSWER_MS,
    WEBHOOK,
    WORKER,
    SoakPlan,
)


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
