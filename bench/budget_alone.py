"""The request budget alone: several instances, each its own RateBudget and client, taking
tokens as fast as it lets them against moto's DynamoDB, on a fast scaled clock: no window
over the limit, the rate each reaches, and the DynamoDB writes per token."""

from __future__ import annotations

import threading
import time
from typing import Final

import boto3

from bench.aws_calls import AwsCalls
from bench.harness import TABLE, aws_environment
from bench.pacing import (
    BURST,
    VENDOR_LIMIT,
    busiest_window,
    in_process_aws,
    steady_state,
    vendor_limit_row,
)
from bench.report import Row, ratio
from devstack.template import create_table
from devstack.testkit import applied_environment
from warmgate.adapters import aws
from warmgate.adapters.budget import BudgetExhausted, RateBudget

# How many instances take tokens at once, and how much faster their clock runs.
TAKERS: Final = (2, 10)
QUICK_TAKERS: Final = (10,)  # --quick: the drain already has two takers
TAKERS_SCALE: Final = 20.0


def contention_rows(takers: int, scaled_seconds: float) -> list[Row]:
    """The budget alone under `takers` concurrent instances: rate, busiest window, writes."""
    grants, writes, refill_per_second = take_tokens(takers, scaled_seconds)
    steady = steady_state(grants, BURST, 1.0)
    busiest = busiest_window(grants, 60.0)
    return [
        Row(
            f"budget alone, {takers} takers: grants / scaled min, steady state",
            steady.per_minute,
            "/min",
            baseline=60 * refill_per_second,
            ratio=ratio(steady.per_minute, 60 * refill_per_second),
        ),
        vendor_limit_row(f"budget alone, {takers} takers: busiest rolling minute", busiest),
        Row(
            f"budget alone, {takers} takers: DynamoDB writes per token",
            ratio(writes, len(grants)),
            "",
        ),
    ]


def take_tokens(takers: int, scaled_seconds: float) -> tuple[list[float], int, float]:
    """(the grants' scaled times, sorted; the DynamoDB writes made; the budget's refill rate)."""
    grants: list[float] = []
    lock = threading.Lock()
    with (
        in_process_aws(),
        applied_environment(aws_environment(None)),
        AwsCalls(aws.session()) as calls,
    ):
        create_table(boto3.client("dynamodb"), "MailboxTable", TABLE)
        budgets = [
            RateBudget(
                aws.client("dynamodb"),
                TABLE,
                per_minute=VENDOR_LIMIT,
                burst=BURST,
                clock=lambda: time.time() * TAKERS_SCALE,
                sleep=lambda scaled: time.sleep(scaled / TAKERS_SCALE),
            )
            for _ in range(takers)
        ]
        end = time.time() + scaled_seconds / TAKERS_SCALE

        def take(budget: RateBudget) -> None:
            while time.time() < end:
                try:
                    budget.acquire(max_wait=1.0)
                except BudgetExhausted as exhausted:  # as the worker would: come back later
                    time.sleep(exhausted.retry_after / TAKERS_SCALE)
                    continue
                with lock:  # when the request would go out: as the vendor would count it
                    grants.append(time.time() * TAKERS_SCALE)

        threads = [threading.Thread(target=take, args=(budget,)) for budget in budgets]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        writes = calls.total().count("dynamodb", "UpdateItem")
    return sorted(grants), writes, budgets[0].refill_per_second
