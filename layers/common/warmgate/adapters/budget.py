"""The Mailivery request budget: one GCRA limiter shared by every Lambda instance.

Mailivery allows 240 requests/minute per API key (contract §1), and every worker instance and
the onboarding function use the same key, so a per-process limiter cannot keep the sum under
it. The limiter lives in one MailboxTable item (`budget#mailivery`, see repository.py):
  tat  (N) the theoretical arrival time of the next request, whole microseconds since the epoch.

GCRA (the generic cell rate algorithm) with emission interval T and tolerance τ: a request at
time t conforms when tat <= t + τ, and then sets tat = max(t, tat) + T. That is a token bucket
of `burst` tokens refilled one per T (τ = (burst - 1)·T), kept as one timestamp. Any closed
window of W seconds holds at most burst + floor(W / T) tokens: the first at its start, then one
per T, plus the burst - 1 of the tolerance. A grant, the moment acquire returns and the request
may go out, comes at its token's time or less than WAIT_STEP after it (below), so the grants of
n tokens can span up to WAIT_STEP less than the tokens do: the first late by almost WAIT_STEP,
the last on time. T is the shortest whole number of microseconds with
floor((60 s + SEND_MARGIN + WAIT_STEP) / T) <= per_minute - burst: no closed window of
60 s + SEND_MARGIN holds more than per_minute grants, whatever the request pattern and however
many instances take tokens, so no rolling minute at Mailivery does either while each request
reaches it within SEND_MARGIN of its grant (the token's write answering, then the request's own
trip). Without the margin the bound is exact and a request delayed by a few milliseconds can
make a 241st in a minute. The sustained rate is (per_minute - burst + 1) · 60 / (60 + SEND_MARGIN
+ WAIT_STEP) a minute.

A token costs one conditional UpdateItem and no read. Which update depends on where tat stands:
  idle  (tat <= t)          SET tat = t + T      if the item has no tat, or tat <= t
  busy  (t < tat <= t + τ)  SET tat = tat + T    if t <= tat <= t + τ
The busy update adds to the stored value, so instances taking tokens at the same moment do not
conflict. Each instance guesses the case from the last tat it saw; when the guess is wrong (or
the bucket is empty), the failed condition returns the stored item in the same call
(ReturnValuesOnConditionCheckFailure=ALL_OLD), and the next attempt, or the wait for a token,
is computed from it.

A token is not waited for before it is taken: it is booked up to max_wait ahead (the update's
bound is t + τ + max_wait), then slept for until its time, tat - T - τ, which the update
returns (ReturnValues=UPDATED_NEW) or, for a transaction, the exact condition gives. Instances
waiting for tokens then take one write each, in turn, instead of all waking at the same moment
and racing for the first one. The sleep is in whole milliseconds, rounded up (WAIT_STEP), so
the request goes out at its token's time or less than WAIT_STEP after it: the bound above
allows for that.

`acquire_with` takes the token in one transaction with another conditional write: the worker's
claim before a start/resume/delete, so the call that follows the claim costs no DynamoDB call of
its own. Taking that token earlier, together with the re-read's ("two at once"), would break the
guarantee: the second request would go out up to a whole re-read (seconds, retries included)
after its token's time, and a limiter can only bound the times of its tokens. A transaction
returns no values, so its update is conditional on the exact tat last seen (the new value, and
the token's time, are then known): another instance's token since refuses it, and it is tried
again with the value the refusal returned.

Time is kept in whole microseconds, the clock read rounded down: a window of 60 s then spans
exactly 60,000,000 of them, a token is never dated after the moment it was taken (no request
goes out before its token's time), and the part of a microsecond it may be dated before that is
within WAIT_STEP. An item left by the earlier token bucket (`tokens`, `updated_at`, no `tat`)
counts as idle: the first acquire after that deploy may admit a full burst. Callers need
dynamodb:UpdateItem.
"""

from __future__ import annotations

import enum
import math
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, cast

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import TransactWriteItemTypeDef, UpdateTypeDef

MICROS = 1_000_000  # microseconds per second
# Small on purpose: once the initial burst is spent, the sustained rate is (per_minute - burst
# + 1) · 60 / (60 + SEND_MARGIN + WAIT_STEP) a minute, so 3 keeps 236 of Mailivery's 240/min
# (98.3 %) while still absorbing a short spike (the worker takes one token at a time).
DEFAULT_BURST = 3
# How long after its grant a request may reach Mailivery without risking its rolling minute.
SEND_MARGIN = 0.5
# Waits for a token are slept in whole milliseconds, rounded up: an acquire returns less than
# this long after its token's time, and the emission interval is sized for it.
WAIT_STEP = 0.001
MAX_CONFLICTS = 20  # failed attempts in one acquire before giving up
CONFLICT_RETRY_AFTER = 0.05  # seconds; heavy contention clears fast, the caller backs off a bit
CONFLICT_PAUSE = 0.01  # seconds; a transaction was holding the item: let it finish
# How long one acquire may sleep for a token by default. Part of every Mailivery call's
# worst case (warmgate.wiring), so the functions' timeouts are sized with it.
DEFAULT_MAX_WAIT = 1.0

_IDLE = {
    "UpdateExpression": "SET #tat = :next",
    "ConditionExpression": "attribute_not_exists(#tat) OR #tat <= :now",
}
_BUSY = {
    "UpdateExpression": "SET #tat = #tat + :interval",
    "ConditionExpression": "#tat BETWEEN :now AND :latest",
}
_FIRST = {
    "UpdateExpression": "SET #tat = :next",
    "ConditionExpression": "attribute_not_exists(#tat)",
}
_EXACT = {"UpdateExpression": "SET #tat = :next", "ConditionExpression": "#tat = :seen"}


class BudgetExhausted(Exception):
    """No token now, nor within the caller's max_wait: try again after `retry_after` seconds."""

    def __init__(self, retry_after: float) -> None:
        super().__init__(f"Mailivery request budget exhausted; retry after {retry_after:.3f}s")
        self.retry_after = retry_after


class WriteRefused(Exception):
    """The write made with a token failed its own condition: neither was written."""


class _Attempt(enum.Enum):
    TAKEN = "taken"
    REFUSED = "refused"  # the budget's condition failed: the stored tat is known now
    HELD = "held"  # a transaction was writing the item: nothing learned, try again shortly


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
        self._burst = burst
        window = round((60 + SEND_MARGIN + WAIT_STEP) * MICROS)  # µs; see the module docstring
        self._interval = window // (per_minute - burst + 1) + 1  # T
        self._tolerance = (burst - 1) * self._interval  # τ
        self._client = client
        self._table = table_name
        self._key: dict[str, Any] = {"pk": {"S": key}}
        self._clock = clock
        self._sleep = sleep
        self._seen: int | None = None  # the last tat this instance saw; None: none yet

    @property
    def refill_per_second(self) -> float:
        return MICROS / self._interval

    def most_in(self, seconds: float) -> int:
        """The most tokens any closed window of `seconds` can hold: burst + floor(W / T)."""
        return self._burst + math.floor(seconds * MICROS) // self._interval

    def acquire(self, max_wait: float = DEFAULT_MAX_WAIT) -> None:
        """Take one token: booked at most max_wait ahead, then slept for until its time; else
        BudgetExhausted, with how long until a token would be free.

        The wait is bounded by the booking, not by the clock, so it always terminates and a
        clock step (NTP) cannot stretch it.
        """
        self._take(max_wait, None)

    def acquire_with(
        self, write: TransactWriteItemTypeDef, max_wait: float = DEFAULT_MAX_WAIT
    ) -> None:
        """Take one token and make `write` (a conditional write on another item) in one
        transaction: both or neither. WriteRefused when `write`'s own condition fails;
        BudgetExhausted, with nothing written, as `acquire`."""
        self._take(max_wait, write)

    def _take(self, max_wait: float, write: TransactWriteItemTypeDef | None) -> None:
        if max_wait < 0:
            raise ValueError(f"max_wait must not be negative, got {max_wait}")
        slept = 0.0
        conflicts = 0
        while True:
            now = math.floor(self._clock() * MICROS)  # floor: a token is never dated late
            seen = self._seen
            # A token may be booked as far ahead as the caller may still wait for it.
            ahead = math.floor((max_wait - slept) * MICROS)
            if seen is not None and seen > now + self._tolerance + ahead:  # none in time
                raise BudgetExhausted(_milliseconds(seen - self._tolerance - now))
            attempt = self._attempt(now, seen, write, ahead)
            if attempt is _Attempt.TAKEN:
                due = (self._seen or now) - self._interval - self._tolerance  # the token's time
                if due > now:
                    self._sleep(_milliseconds(due - now))
                return
            conflicts += 1
            if conflicts >= MAX_CONFLICTS:
                raise BudgetExhausted(CONFLICT_RETRY_AFTER)
            if attempt is _Attempt.HELD:
                if max_wait - slept < CONFLICT_PAUSE:
                    raise BudgetExhausted(CONFLICT_RETRY_AFTER)
                self._sleep(CONFLICT_PAUSE)
                slept += CONFLICT_PAUSE

    def _attempt(
        self, now: int, seen: int | None, write: TransactWriteItemTypeDef | None, ahead: int
    ) -> _Attempt:
        """One conditional write for one token, at most `ahead` µs beyond the bucket's
        tolerance; updates what this instance has seen."""
        next_ = max(now, seen or now) + self._interval
        if write is not None:  # exact: a transaction returns no values
            form, values = (
                (_FIRST, {":next": next_})
                if seen is None
                else (_EXACT, {":next": next_, ":seen": seen})
            )
        elif seen is None or seen <= now:
            form, values = _IDLE, {":next": next_, ":now": now}
        else:
            form = _BUSY
            values = {
                ":interval": self._interval,
                ":now": now,
                ":latest": now + self._tolerance + ahead,
            }
        update: dict[str, Any] = {
            "TableName": self._table,
            "Key": self._key,
            **form,
            "ExpressionAttributeNames": {"#tat": "tat"},
            "ExpressionAttributeValues": {name: _number(v) for name, v in values.items()},
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
        }
        try:
            if write is None:
                response = self._client.update_item(**update, ReturnValues="UPDATED_NEW")
                self._seen = _tat(response.get("Attributes"))
            else:
                token: TransactWriteItemTypeDef = {"Update": cast("UpdateTypeDef", update)}
                self._client.transact_write_items(TransactItems=[write, token])
                self._seen = next_
        except ClientError as exc:
            return self._failed(exc)
        return _Attempt.TAKEN

    def _failed(self, exc: ClientError) -> _Attempt:
        response: Any = exc.response
        code = response.get("Error", {}).get("Code")
        if code == "ConditionalCheckFailedException":
            self._seen = _tat(response.get("Item"))
            return _Attempt.REFUSED
        if code == "TransactionConflictException":
            return _Attempt.HELD
        if code == "TransactionCanceledException":
            reasons = [r.get("Code") for r in response.get("CancellationReasons", [])]
            if reasons[:1] == ["ConditionalCheckFailed"]:
                raise WriteRefused(str(exc)) from None
            if reasons[1:2] == ["ConditionalCheckFailed"]:
                self._seen = _tat(response["CancellationReasons"][1].get("Item"))
                return _Attempt.REFUSED
            if "TransactionConflict" in reasons:
                return _Attempt.HELD
        raise exc


def _milliseconds(micros: int) -> float:
    """A wait in seconds, in whole milliseconds (WAIT_STEP) rounded up: after it, the token is
    due."""
    return math.ceil(micros / 1000) / 1000


def _number(value: int) -> dict[str, str]:
    return {"N": str(value)}


def _tat(item: dict[str, Any] | None) -> int | None:
    """The stored tat; None when there is no item or it has no tat yet."""
    value = (item or {}).get("tat")
    return None if value is None else int(value["N"])
