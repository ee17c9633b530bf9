"""Unit tests for the shared Mailivery request budget (warmgate.adapters.budget).

A simulated clock whose sleep advances it, and an in-memory stand-in for the DynamoDB client
that evaluates the budget's two updates and their conditions, returns the stored item on a
failed condition as DynamoDB does with ReturnValuesOnConditionCheckFailure=ALL_OLD, and runs
transactions. tests/integration/test_rate_budget.py runs the same code against moto's DynamoDB.
"""

from __future__ import annotations

import bisect
import copy
import random
import re
from collections.abc import Callable
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import example, given, settings
from hypothesis import strategies as st

from tests.properties import examples
from warmgate.adapters.budget import (
    CONFLICT_PAUSE,
    CONFLICT_RETRY_AFTER,
    DEFAULT_BURST,
    MAX_CONFLICTS,
    SEND_MARGIN,
    BudgetExhausted,
    RateBudget,
    WriteRefused,
)

TABLE = "warmgate-mailboxes-test"
KEY = "budget#mailivery"
T0 = 1_700_000_000.0  # a realistic epoch, so float rounding at µs resolution is exercised
CLAIM = {"pk": {"S": "mailbox#ada@contoso.com"}, "version": {"N": "2"}}


def _error(code: str, operation: str, **fields: Any) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}, **fields}, operation)  # type: ignore[arg-type]


class FakeDynamoDB:
    """UpdateItem, PutItem (for the other write of a transaction) and TransactWriteItems on a
    dict, evaluating exactly the expressions the budget and the repository use."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.calls: list[str] = []
        self.refused = 0  # failed budget conditions
        # Runs just before a write is evaluated: another instance's write that lands between
        # this instance's decision and its write.
        self.before_write: Callable[[], None] | None = None
        self.transaction_conflicts = 0  # the next n writes find a transaction on the item

    def update_item(self, **request: Any) -> Any:
        self.calls.append("UpdateItem")
        self._interleave()
        if self.transaction_conflicts:
            self.transaction_conflicts -= 1
            raise _error("TransactionConflictException", "UpdateItem")
        stored = self.items.get(request["Key"]["pk"]["S"])
        if not self._condition_holds(stored, request):
            self.refused += 1
            old = {"Item": copy.deepcopy(stored)} if stored is not None else {}
            assert request["ReturnValuesOnConditionCheckFailure"] == "ALL_OLD"
            raise _error("ConditionalCheckFailedException", "UpdateItem", **old)
        new = self._updated(stored, request)
        assert request["ReturnValues"] == "UPDATED_NEW"
        return {"Attributes": {"tat": copy.deepcopy(new["tat"])}}

    def transact_write_items(self, *, TransactItems: list[dict[str, Any]]) -> Any:
        self.calls.append("TransactWriteItems")
        self._interleave()
        reasons: list[dict[str, Any]] = []
        for operation in TransactItems:
            (kind, request), *_ = operation.items()
            pk = (request.get("Item") or request["Key"])["pk"]["S"]
            stored = self.items.get(pk)
            if self._condition_holds(stored, request):
                reasons.append({"Code": "None"})
                continue
            reason: dict[str, Any] = {"Code": "ConditionalCheckFailed"}
            if request.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and stored:
                reason["Item"] = copy.deepcopy(stored)
            reasons.append(reason)
            if kind == "Update":
                self.refused += 1
        if any(r["Code"] != "None" for r in reasons):
            raise _error(
                "TransactionCanceledException", "TransactWriteItems", CancellationReasons=reasons
            )
        for operation in TransactItems:
            (kind, request), *_ = operation.items()
            if kind == "Put":
                self.items[request["Item"]["pk"]["S"]] = copy.deepcopy(request["Item"])
            else:
                self._updated(self.items.get(request["Key"]["pk"]["S"]), request)
        return {}

    def _interleave(self) -> None:
        hook, self.before_write = self.before_write, None
        if hook is not None:
            hook()

    def _updated(self, stored: dict[str, Any] | None, request: dict[str, Any]) -> dict[str, Any]:
        item = stored if stored is not None else copy.deepcopy(request["Key"])
        values = request["ExpressionAttributeValues"]
        expression = request["UpdateExpression"]
        if expression == "SET #tat = :next":
            tat = int(values[":next"]["N"])
        else:
            assert expression == "SET #tat = #tat + :interval", expression
            tat = int(item["tat"]["N"]) + int(values[":interval"]["N"])
        item["tat"] = {"N": str(tat)}
        self.items[item["pk"]["S"]] = item
        return item

    @staticmethod
    def _condition_holds(stored: dict[str, Any] | None, request: dict[str, Any]) -> bool:
        condition = request["ConditionExpression"]
        values = request.get("ExpressionAttributeValues", {})
        if condition == "attribute_not_exists(pk)":
            return stored is None
        if condition == "version = :read_version":
            return stored is not None and stored["version"] == values[":read_version"]
        tat = None if stored is None or "tat" not in stored else int(stored["tat"]["N"])
        if condition == "attribute_not_exists(#tat)":
            return tat is None
        if condition == "#tat = :seen":
            return tat == int(values[":seen"]["N"])
        if condition == "attribute_not_exists(#tat) OR #tat <= :now":
            return tat is None or tat <= int(values[":now"]["N"])
        assert condition == "#tat BETWEEN :now AND :latest", condition
        return tat is not None and int(values[":now"]["N"]) <= tat <= int(values[":latest"]["N"])


class SimClock:
    def __init__(self, now: float = T0) -> None:
        self.now = now
        self.sleeps: list[float] = []

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds


def make_budget(
    fake: FakeDynamoDB, clock: SimClock, *, per_minute: int = 240, burst: int = 10
) -> RateBudget:
    return RateBudget(
        fake,  # type: ignore[arg-type]
        TABLE,
        per_minute=per_minute,
        burst=burst,
        clock=clock,
        sleep=clock.sleep,
    )


def claim_put(version: int = 1) -> Any:
    """The worker's claim as the repository writes it: a Put conditional on the version read."""
    return {
        "Put": {
            "TableName": TABLE,
            "Item": CLAIM,
            "ConditionExpression": "version = :read_version",
            "ExpressionAttributeValues": {":read_version": {"N": str(version)}},
        }
    }


@pytest.fixture
def fake() -> FakeDynamoDB:
    return FakeDynamoDB()


@pytest.fixture
def clock() -> SimClock:
    return SimClock()


def admitted(budget: RateBudget, *, max_wait: float = 0.0, limit: int = 10_000) -> int:
    """How many acquires succeed before the first BudgetExhausted."""
    for count in range(limit):
        try:
            budget.acquire(max_wait=max_wait)
        except BudgetExhausted:
            return count
    return limit


def stored_tat(fake: FakeDynamoDB) -> int:
    return int(fake.items[KEY]["tat"]["N"])


def max_in_any_window(times: list[float], window: float = 60.0 + SEND_MARGIN) -> int:
    """The most timestamps in any closed interval [t, t + window]; by default a minute and the
    margin a request has to reach Mailivery after its grant. The contract says only "240 a
    minute"; a rolling minute as the sandbox counts it is half-open (a request exactly 60 s old
    has left it). Closed is the stricter: it also counts two grants exactly `window` apart."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_right(ordered, t + window) - i for i, t in enumerate(ordered)), default=0
    )


# --- construction ------------------------------------------------------------------------------


def test_refill_per_second_defaults_leave_room_for_the_burst(
    fake: FakeDynamoDB, clock: SimClock
) -> None:
    budget = RateBudget(fake, TABLE, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]

    # T = 60.501 s // 238 + 1 µs = 254206 µs: floor(60.5 s / T) = 237, so 60 s and the send
    # margin hold at most 3 + 237 = 240 grants ...
    assert budget.most_in(60 + SEND_MARGIN) == 240
    assert budget.most_in(60) == 239
    # ... and once the burst is spent, 236 a minute (98.3 % of 240).
    assert budget.refill_per_second * 60 == pytest.approx(236.03, abs=0.01)
    assert DEFAULT_BURST == 3


@pytest.mark.parametrize(
    ("per_minute", "burst", "message"),
    [(240, 0, "burst"), (10, 10, "per_minute"), (5, 10, "per_minute"), (240, -1, "burst")],
)
def test_init_invalid_limits_raise_value_error(
    fake: FakeDynamoDB, clock: SimClock, per_minute: int, burst: int, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        make_budget(fake, clock, per_minute=per_minute, burst=burst)


def test_acquire_negative_max_wait_raises_value_error(fake: FakeDynamoDB, clock: SimClock) -> None:
    with pytest.raises(ValueError, match="max_wait"):
        make_budget(fake, clock).acquire(max_wait=-0.1)


# --- one instance ------------------------------------------------------------------------------


def test_acquire_fresh_budget_admits_burst_with_one_update_each(
    fake: FakeDynamoDB, clock: SimClock
) -> None:
    budget = make_budget(fake, clock)

    assert admitted(budget) == 10

    assert clock.sleeps == []
    # One conditional write per token; the 11th finds the bucket empty from what it saw last
    # and makes no call at all.
    assert fake.calls == ["UpdateItem"] * 10
    assert fake.refused == 0


def test_acquire_after_burst_sleeps_one_emission_interval(
    fake: FakeDynamoDB, clock: SimClock
) -> None:
    budget = make_budget(fake, clock)
    admitted(budget)

    budget.acquire(max_wait=1.0)

    # T = 60.501 s // 231 + 1 µs = 261910 µs, slept in whole milliseconds, rounded up
    assert clock.sleeps == [pytest.approx(0.262)]
    assert fake.calls == ["UpdateItem"] * 11


def test_acquire_wait_beyond_max_wait_raises_budget_exhausted_with_retry_after(
    fake: FakeDynamoDB, clock: SimClock
) -> None:
    budget = make_budget(fake, clock)
    admitted(budget)
    clock.now += 0.1  # 0.162 s still to go for the next token

    with pytest.raises(BudgetExhausted) as raised:
        budget.acquire(max_wait=0.1)

    assert raised.value.retry_after == pytest.approx(0.162)
    assert clock.sleeps == []
    clock.now += raised.value.retry_after - 0.001
    with pytest.raises(BudgetExhausted):
        budget.acquire(max_wait=0)
    clock.now += 0.001
    budget.acquire(max_wait=0)  # retry_after is exact to the millisecond, not a guess


def test_acquire_long_idle_refills_only_to_burst(fake: FakeDynamoDB, clock: SimClock) -> None:
    budget = make_budget(fake, clock)
    admitted(budget)
    clock.now += 3600

    assert admitted(budget) == 10


def test_acquire_stores_only_the_theoretical_arrival_time_in_whole_microseconds(
    fake: FakeDynamoDB, clock: SimClock
) -> None:
    clock.now = T0 + 0.1234567
    budget = make_budget(fake, clock)

    budget.acquire(max_wait=0)

    item = fake.items[KEY]
    assert set(item) == {"pk", "tat"}
    assert re.fullmatch(r"\d+", item["tat"]["N"])
    assert stored_tat(fake) == 1_700_000_000_123_456 + 261_910  # the clock floored, plus T


def test_acquire_item_of_the_earlier_token_bucket_counts_as_idle(
    fake: FakeDynamoDB, clock: SimClock
) -> None:
    fake.items[KEY] = {"pk": {"S": KEY}, "tokens": {"N": "0.5"}, "updated_at": {"N": str(T0)}}

    assert admitted(make_budget(fake, clock)) == 10


# --- several instances -------------------------------------------------------------------------


def test_acquire_concurrent_takers_in_a_busy_bucket_do_not_conflict(
    fake: FakeDynamoDB, clock: SimClock
) -> None:
    mine, theirs = make_budget(fake, clock), make_budget(fake, clock)
    mine.acquire(max_wait=0)  # tat is now in the future: the bucket is busy
    theirs.acquire(max_wait=0)  # a first call on a busy bucket learns where tat is: 2 calls
    fake.calls.clear()
    fake.before_write = lambda: theirs.acquire(max_wait=0)  # lands between our guess and write

    mine.acquire(max_wait=0)

    # Both add T to whatever is stored: neither write is refused, one call each.
    assert fake.calls == ["UpdateItem", "UpdateItem"]
    assert admitted(mine) == 10 - 4


def test_acquire_stale_guess_learns_the_stored_value_from_the_failed_write(
    fake: FakeDynamoDB, clock: SimClock
) -> None:
    mine, theirs = make_budget(fake, clock), make_budget(fake, clock)
    admitted(theirs)  # the bucket is empty, and `mine` has never seen it

    with pytest.raises(BudgetExhausted) as raised:
        mine.acquire(max_wait=0)

    # The failed condition returned the item (ALL_OLD): no read, and the wait is exact.
    assert fake.calls[-1:] == ["UpdateItem"]
    assert fake.refused == 1
    assert raised.value.retry_after == pytest.approx(0.262)
    clock.now += raised.value.retry_after
    calls = len(fake.calls)
    mine.acquire(max_wait=0)
    assert len(fake.calls) == calls + 1


def test_acquire_waiting_instances_book_their_tokens_ahead_one_write_each(
    fake: FakeDynamoDB, clock: SimClock
) -> None:
    mine, theirs = make_budget(fake, clock), make_budget(fake, clock)
    admitted(mine)
    theirs.acquire(max_wait=0.5)  # learns the bucket (a refused write), books the next token
    fake.calls.clear()
    start = clock.now

    mine.acquire(max_wait=1.0)
    theirs.acquire(max_wait=1.0)

    # Each books the next free token with one write and sleeps until its time: no race.
    assert fake.calls == ["UpdateItem", "UpdateItem"]
    assert fake.refused == 1  # only `theirs` learning where the bucket stood, before
    assert clock.now - start == pytest.approx(2 * 0.261910, abs=0.003)


def test_acquire_transaction_holding_the_item_is_waited_out_within_max_wait(
    fake: FakeDynamoDB, clock: SimClock
) -> None:
    budget = make_budget(fake, clock)
    fake.transaction_conflicts = 2

    budget.acquire(max_wait=1.0)

    assert clock.sleeps == [CONFLICT_PAUSE, CONFLICT_PAUSE]
    assert fake.calls == ["UpdateItem"] * 3


def test_acquire_item_held_without_time_to_wait_raises_budget_exhausted(
    fake: FakeDynamoDB, clock: SimClock
) -> None:
    fake.transaction_conflicts = 1

    with pytest.raises(BudgetExhausted) as raised:
        make_budget(fake, clock).acquire(max_wait=0)

    assert raised.value.retry_after == CONFLICT_RETRY_AFTER


def test_acquire_persistent_conflicts_raise_budget_exhausted(
    fake: FakeDynamoDB, clock: SimClock
) -> None:
    fake.transaction_conflicts = 10 * MAX_CONFLICTS

    with pytest.raises(BudgetExhausted) as raised:
        make_budget(fake, clock).acquire(max_wait=10.0)

    assert raised.value.retry_after == CONFLICT_RETRY_AFTER
    assert len(fake.calls) == MAX_CONFLICTS


def test_acquire_other_dynamodb_error_is_raised(fake: FakeDynamoDB, clock: SimClock) -> None:
    def throttled(**request: Any) -> Any:
        raise _error("ProvisionedThroughputExceededException", "UpdateItem")

    fake.update_item = throttled  # type: ignore[method-assign]

    with pytest.raises(ClientError, match="ProvisionedThroughputExceeded"):
        make_budget(fake, clock).acquire(max_wait=1.0)


# --- a token with another write ----------------------------------------------------------------


def test_acquire_with_writes_the_token_and_the_claim_in_one_transaction(
    fake: FakeDynamoDB, clock: SimClock
) -> None:
    fake.items[CLAIM["pk"]["S"]] = {**CLAIM, "version": {"N": "1"}}
    budget = make_budget(fake, clock)

    budget.acquire_with(claim_put(version=1))

    assert fake.calls == ["TransactWriteItems"]
    assert fake.items[CLAIM["pk"]["S"]] == CLAIM
    assert admitted(budget) == 9


def test_acquire_with_refused_write_raises_write_refused_and_takes_no_token(
    fake: FakeDynamoDB, clock: SimClock
) -> None:
    fake.items[CLAIM["pk"]["S"]] = {**CLAIM, "version": {"N": "5"}}  # someone else wrote it
    budget = make_budget(fake, clock)

    with pytest.raises(WriteRefused):
        budget.acquire_with(claim_put(version=1))

    assert KEY not in fake.items
    assert admitted(budget) == 10


def test_acquire_with_empty_bucket_raises_budget_exhausted_and_writes_nothing(
    fake: FakeDynamoDB, clock: SimClock
) -> None:
    fake.items[CLAIM["pk"]["S"]] = {**CLAIM, "version": {"N": "1"}}
    admitted(make_budget(fake, clock))  # another instance emptied the bucket

    with pytest.raises(BudgetExhausted):
        make_budget(fake, clock).acquire_with(claim_put(version=1), max_wait=0)

    assert fake.items[CLAIM["pk"]["S"]]["version"] == {"N": "1"}


def test_acquire_with_stale_guess_learns_from_the_cancellation_and_waits(
    fake: FakeDynamoDB, clock: SimClock
) -> None:
    fake.items[CLAIM["pk"]["S"]] = {**CLAIM, "version": {"N": "1"}}
    admitted(make_budget(fake, clock))  # empty, unknown to the next instance

    make_budget(fake, clock).acquire_with(claim_put(version=1), max_wait=1.0)

    assert fake.calls[-2:] == ["TransactWriteItems", "TransactWriteItems"]
    assert clock.sleeps == [pytest.approx(0.262)]
    assert fake.items[CLAIM["pk"]["S"]] == CLAIM


# --- the vendor limit, whatever the request pattern --------------------------------------------


def test_acquire_saturated_demand_fills_but_never_exceeds_each_minute(
    fake: FakeDynamoDB, clock: SimClock
) -> None:
    budget = make_budget(fake, clock)
    times: list[float] = []
    end = T0 + 300
    while clock.now < end:
        budget.acquire(max_wait=1.0)  # always waits for the next token: saturated demand
        times.append(clock.now)

    # The first minute (and margin) starts with a full bucket: all 240, never more.
    assert max_in_any_window(times) == 240
    assert len(times) == pytest.approx(10 + 300 * 231 / 60.5, abs=2)


_groups = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=4000),  # ms since the previous group
        st.integers(min_value=1, max_value=40),  # requests at that instant
        st.sampled_from([0.0, 0.05, 0.5, 2.0]),  # their max_wait
        st.integers(min_value=0, max_value=9),  # which instance sends them (modulo the count)
        st.booleans(),  # with a claim (acquire_with) or alone
    ),
    min_size=1,
    max_size=300,
)


@pytest.mark.parametrize("instances", [2, 10])
@settings(max_examples=examples(75))
@given(
    per_minute=st.integers(min_value=2, max_value=300),
    burst_share=st.floats(min_value=0.0, max_value=1.0),
    start_offset=st.floats(min_value=0.0, max_value=1.0),
    groups=_groups,
    interleave_seed=st.integers(min_value=0, max_value=2**32 - 1),
)
# Found by a CI run: 32 grants in 60.5 s at per_minute=31, burst 1. Waits are slept in whole
# milliseconds, rounded up: the 2nd grant went out 0.387 ms after its token's time, the 33rd
# 0.382 ms after its own, so 31 T = 60.500003 s of tokens took 60.499998 s of grants. T now
# allows for that rounding (WAIT_STEP).
@example(
    per_minute=31,
    burst_share=0.0,
    start_offset=0.0,
    groups=[(0, 1, 0.0, 0, False), (0, 32, 2.0, 0, False)],
    interleave_seed=0,
)
def test_acquire_random_traffic_never_exceeds_per_minute_in_any_window(
    instances: int,
    per_minute: int,
    burst_share: float,
    start_offset: float,
    groups: list[Any],
    interleave_seed: int,
) -> None:
    burst = 1 + int(burst_share * (per_minute - 2))
    fake, clock = FakeDynamoDB(), SimClock(T0 + start_offset)
    budgets = [
        make_budget(fake, clock, per_minute=per_minute, burst=burst) for _ in range(instances)
    ]
    interleave = random.Random(interleave_seed)
    times: list[float] = []
    refusals: list[tuple[float, float]] = []  # (retry_after, what was left of max_wait)

    def take(which: int, max_wait: float, with_claim: bool) -> None:
        sleeps = len(clock.sleeps)  # interleaved takes never sleep: these are this take's
        try:
            if with_claim:
                fake.items[CLAIM["pk"]["S"]] = {**CLAIM, "version": {"N": "1"}}  # still as read
                budgets[which].acquire_with(claim_put(version=1), max_wait=max_wait)
            else:
                budgets[which].acquire(max_wait=max_wait)
        except BudgetExhausted as exc:
            refusals.append((exc.retry_after, max_wait - sum(clock.sleeps[sleeps:])))
        else:
            times.append(clock.now)

    for gap_ms, count, max_wait, which, with_claim in groups:
        clock.now += gap_ms / 1000
        for _ in range(count):
            if interleave.random() < 0.3:  # another instance's write lands in between
                other = interleave.randrange(instances)
                fake.before_write = lambda other=other: take(other, 0.0, False)
            take(which % instances, max_wait, with_claim)

    assert max_in_any_window(times) <= per_minute
    # Refused only when the wait is longer than the caller had left (slept included).
    assert all(retry_after > left for retry_after, left in refusals)


@pytest.mark.parametrize("time_scale", [1, 2, 5, 10])
def test_time_scaled_budget_admits_at_most_240_in_any_scaled_minute(time_scale: float) -> None:
    """The local stack's time scale (devstack.stack.scaled_requests_per_minute): the budget of
    every function, greedy callers, never more than 240 in a window of 60 / time_scale s."""
    from devstack.stack import scaled_requests_per_minute

    fake, clock = FakeDynamoDB(), SimClock()
    per_minute = scaled_requests_per_minute(time_scale)
    budget = make_budget(fake, clock, per_minute=per_minute, burst=DEFAULT_BURST)
    times = []
    for _ in range(3 * per_minute):  # three real minutes of callers that never stop
        budget.acquire(max_wait=1.0)
        times.append(clock.now)

    # At the limit, not over it (waits are rounded up to the millisecond: it may admit one less).
    assert 235 <= max_in_any_window(times, 60 / time_scale) <= 240
    assert scaled_requests_per_minute(1) == 240
