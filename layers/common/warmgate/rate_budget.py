"""The Mailivery request budget, one token bucket shared by every Lambda instance.

Mailivery allows 240 requests/minute per API key (contract §1), and every worker instance and
the onboarding function use the same key, so a per-process limiter cannot keep the sum under
it. The bucket lives in one MailboxTable item (`budget#mailivery`, see repository.py):
  tokens      (N) tokens left at `updated_at`, 6 decimals, rounded down;
  updated_at  (N) epoch seconds with milliseconds.
Each acquire is a consistent GetItem and a conditional PutItem (optimistic lock), so a caller
needs only dynamodb:GetItem and dynamodb:PutItem on the table, as OnboardingFunction has now.

Time is counted in whole milliseconds and tokens in whole micro-tokens, and both are rounded in
the direction that admits less: float or decimal rounding can then never mint a request.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from decimal import ROUND_CEILING, ROUND_FLOOR, Decimal
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import AttributeValueTypeDef, PutItemInputTypeDef

MICRO = 1_000_000  # micro-tokens per token
# Small on purpose: once the initial burst is spent, the sustained rate is (per_minute - burst)
# per minute, so 5 keeps 235 of Mailivery's 240/min (97.9 %) while still absorbing a short spike.
DEFAULT_BURST = 5
MAX_CONFLICTS = 20  # lost conditional writes in one acquire before giving up
CONFLICT_RETRY_AFTER = 0.05  # seconds; heavy contention clears fast, the caller backs off a bit
# How long one acquire may sleep for a token by default. Part of every Mailivery call's
# worst case (warmgate.time_budget), so the functions' timeouts are sized with it.
DEFAULT_MAX_WAIT = 1.0


class BudgetExhausted(Exception):
    """No token now, nor within the caller's max_wait: try again after `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"Mailivery request budget exhausted; retry after {retry_after:.3f}s")
        self.retry_after = retry_after


class RateBudget:
    def __init__(
        self,
        client: DynamoDBClient,
        table_name: str,
        *,
        per_minute: int = 240,
        burst: int = DEFAULT_BURST,
        key: str = "budget#mailivery",
        clock: Callable[[], float] = time.time,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if burst < 1:
            raise ValueError(f"burst must be at least 1, got {burst}")
        if per_minute <= burst:
            raise ValueError(f"per_minute ({per_minute}) must be greater than burst ({burst})")
        # A bucket admits, in any window of W seconds, at most what it holds at the start
        # (<= burst) plus what refills during the window (W * r). With W = 60 s and
        # r = (per_minute - burst) / 60 that is burst + per_minute - burst = per_minute, so no
        # rolling minute can exceed the vendor limit, whatever the request pattern.
        # Refill is kept as an integer (micro-tokens per minute) so arithmetic stays exact.
        self._refill_micro_per_minute = (per_minute - burst) * MICRO
        self._capacity_micro = burst * MICRO
        self._client = client
        self._table = table_name
        self._key: dict[str, AttributeValueTypeDef] = {"pk": {"S": key}}
        self._clock = clock
        self._sleep = sleep

    @property
    def refill_per_second(self) -> float:
        return self._refill_micro_per_minute / MICRO / 60

    def acquire(self, max_wait: float = DEFAULT_MAX_WAIT) -> None:
        """Take one token; sleep (≤ max_wait total) if one is due soon, else raise BudgetExhausted.

        The wait is bounded by time actually slept, not by the clock, so it always terminates
        and a clock step (NTP) cannot stretch it.
        """
        if max_wait < 0:
            raise ValueError(f"max_wait must not be negative, got {max_wait}")
        slept = 0.0
        conflicts = 0
        while True:
            now_ms = math.floor(self._clock() * 1000)  # floor: never refill for unelapsed time
            item = self._client.get_item(
                TableName=self._table, Key=self._key, ConsistentRead=True
            ).get("Item")
            if item is None:  # first use ever: start full
                tokens, updated_ms = self._capacity_micro, now_ms
            else:
                tokens = _scaled(item["tokens"], 6, ROUND_FLOOR)
                updated_ms = _scaled(item["updated_at"], 3, ROUND_CEILING)
                # Another instance's clock may be ahead of ours: a negative elapsed adds nothing,
                # and updated_at never moves back, or the next reader would refill that gap twice.
                elapsed_ms = max(0, now_ms - updated_ms)
                refill = elapsed_ms * self._refill_micro_per_minute // 60_000
                tokens = min(self._capacity_micro, tokens + refill)
                updated_ms = max(now_ms, updated_ms)
            if tokens >= MICRO:
                if self._write(item, tokens - MICRO, updated_ms):
                    return
                conflicts += 1  # another instance took a token since our read: re-read
                if conflicts >= MAX_CONFLICTS:
                    raise BudgetExhausted(CONFLICT_RETRY_AFTER)
                continue
            # Whole milliseconds, rounded up, so after the wait the refill covers the deficit;
            # refill starts at updated_at, which a clock-ahead instance may have set in our future.
            deficit_ms = -(-(MICRO - tokens) * 60_000 // self._refill_micro_per_minute)
            wait_ms = max(1, (updated_ms - now_ms) + deficit_ms)  # >= 1 ms: the loop must end
            wait = wait_ms / 1000
            if wait > max_wait - slept:
                raise BudgetExhausted(wait)
            self._sleep(wait)
            slept += wait

    def _write(
        self, read: dict[str, AttributeValueTypeDef] | None, tokens: int, updated_ms: int
    ) -> bool:
        """Store the new state if the item is still as read; False when someone else won."""
        request: PutItemInputTypeDef = {
            "TableName": self._table,
            "Item": {
                **self._key,
                # plain fixed-point text, 6 and 3 decimals, whatever the value
                "tokens": {"N": f"{Decimal(tokens).scaleb(-6):f}"},
                "updated_at": {"N": f"{Decimal(updated_ms).scaleb(-3):f}"},
            },
            "ConditionExpression": "attribute_not_exists(pk)",
        }
        if read is not None:
            # Both values, not only updated_at: acquires within one millisecond leave updated_at
            # unchanged, and only the falling token count tells those states apart.
            request["ConditionExpression"] = "#u = :u AND #t = :t"
            request["ExpressionAttributeNames"] = {"#u": "updated_at", "#t": "tokens"}
            request["ExpressionAttributeValues"] = {":u": read["updated_at"], ":t": read["tokens"]}
        try:
            self._client.put_item(**request)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True


def _scaled(value: AttributeValueTypeDef, digits: int, rounding: str) -> int:
    """A stored N as an integer count of 10**-digits units, rounded the way that admits less."""
    return int(Decimal(value["N"]).scaleb(digits).to_integral_value(rounding))
