"""Unit tests for the shared Mailivery request budget (warmgate.rate_budget).

A simulated clock whose sleep advances it, and an in-memory stand-in for the DynamoDB client
that evaluates the two conditions the budget uses. tests/integration/test_rate_budget.py runs
the same code against moto's DynamoDB.
"""

from __future__ import annotations

import bisect
import copy
import math
import re
from collections.abc import Callable
from decimal import Decimal
from typing import Any

import pytest
from botocore.exceptions import ClientError
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from warmgate.rate_budget import (
    CONFLICT_RETRY_AFTER,
    DEFAULT_BURST,
    MAX_CONFLICTS,
    BudgetExhausted,
    RateBudget,
)

TABLE = "warmgate-mailboxes-test"
KEY = "budget#mailivery"
T0 = 1_700_000_000.0  # a realistic epoch, so float rounding at ms resolution is exercised
_TERM = re.compile(r"^(#\w+) = (:\w+)$")


class FakeDynamoDB:
    """GetItem/PutItem on a dict, with DynamoDB's conditional-write semantics for
    `attribute_not_exists(pk)` and `#a = :a AND #b = :b` (numbers compared as numbers)."""

    def __init__(self) -> None:
        self.items: dict[str, dict[str, Any]] = {}
        self.conflicts = 0
        # Runs just before a conditional write is evaluated: another instance's write that lands
        # between this instance's read and write.
        self.before_put: Callable[[], None] | None = None

    def get_item(self, *, TableName: str, Key: dict[str, Any], ConsistentRead: bool) -> Any:
        assert ConsistentRead, "the budget decides on this read: it must be consistent"
        item = self.items.get(Key["pk"]["S"])
        return {"Item": copy.deepcopy(item)} if item is not None else {}

    def put_item(self, **request: Any) -> Any:
        hook, self.before_put = self.before_put, None
        if hook is not None:
            hook()
        pk = request["Item"]["pk"]["S"]
        if not self._holds(self.items.get(pk), request):
            self.conflicts += 1
            error = {"Error": {"Code": "ConditionalCheckFailedException", "Message": "failed"}}
            raise ClientError(error, "PutItem")  # type: ignore[arg-type]
        self.items[pk] = copy.deepcopy(request["Item"])
        return {}

    @staticmethod
    def _holds(stored: dict[str, Any] | None, request: dict[str, Any]) -> bool:
        condition = request["ConditionExpression"]
        if condition == "attribute_not_exists(pk)":
            return stored is None
        if stored is None:
            return False
        names, values = request["ExpressionAttributeNames"], request["ExpressionAttributeValues"]
        for term in condition.split(" AND "):
            match = _TERM.match(term)
            assert match, f"unexpected condition {condition!r}"
            attribute, value = stored.get(names[match[1]]), values[match[2]]
            if attribute is None or Decimal(attribute["N"]) != Decimal(value["N"]):
                return False
        return True


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


def stored_tokens(fake: FakeDynamoDB) -> Decimal:
    return Decimal(fake.items[KEY]["tokens"]["N"])


def max_in_any_window(times: list[float], window: float = 60.0) -> int:
    """The most timestamps in any closed interval [t, t + window] (closed: stricter)."""
    ordered = sorted(times)
    return max(
        (bisect.bisect_right(ordered, t + window) - i for i, t in enumerate(ordered)), default=0
    )


# --- construction ------------------------------------------------------------------------------


def test_refill_per_second_defaults_leave_room_for_the_burst(
    fake: FakeDynamoDB, clock: SimClock
) -> None:
    budget = RateBudget(fake, TABLE, clock=clock, sleep=clock.sleep)  # type: ignore[arg-type]

    assert budget.refill_per_second == pytest.approx(235 / 60)  # 3.917/s
    assert DEFAULT_BURST + 60 * budget.refill_per_second == pytest.approx(240)


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


# --- bucket behaviour --------------------------------------------------------------------------


def test_acquire_fresh_budget_admits_burst_without_sleeping(
    fake: FakeDynamoDB, clock: SimClock
) -> None:
    budget = make_budget(fake, clock)

    assert admitted(budget) == 10
    assert clock.sleeps == []
    assert clock.now == T0
    assert fake.items[KEY]["tokens"] == {"N": "0.000000"}  # fixed-point, 6 decimals


def test_acquire_after_burst_sleeps_one_refill_interval(
    fake: FakeDynamoDB, clock: SimClock
) -> None:
    budget = make_budget(fake, clock)
    for _ in range(10):
        budget.acquire(max_wait=0)

    budget.acquire(max_wait=1.0)

    # 1/r = 60/230 s = 0.26087 s, rounded up to whole milliseconds
    assert clock.sleeps == [pytest.approx(0.261)]
    assert stored_tokens(fake) < 1


def test_acquire_wait_beyond_max_wait_raises_budget_exhausted_with_retry_after(
    fake: FakeDynamoDB, clock: SimClock
) -> None:
    budget = make_budget(fake, clock)
    admitted(budget)
    clock.now += 0.1  # 0.383 tokens refilled: (1 - 0.383) / r = 0.161 s to go

    with pytest.raises(BudgetExhausted) as raised:
        budget.acquire(max_wait=0.1)

    assert raised.value.retry_after == pytest.approx((1 - 0.1 * 230 / 60) / (230 / 60), abs=2e-3)
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
    assert stored_tokens(fake) < 1


def test_acquire_clock_behind_stored_time_mints_no_tokens(fake: FakeDynamoDB) -> None:
    ahead, behind = SimClock(T0 + 30), SimClock(T0)  # two instances, clocks 30 s apart
    first, second = make_budget(fake, ahead), make_budget(fake, behind)
    for _ in range(5):
        first.acquire(max_wait=0)

    second.acquire(max_wait=0)  # negative elapsed: no refill, but the token it sees is usable

    # 4 left, not a refill of the 30 s skew (which would be a full bucket again)
    assert admitted(first) == 4
    with pytest.raises(BudgetExhausted) as raised:
        second.acquire(max_wait=0)
    assert raised.value.retry_after == pytest.approx(30 + 0.261, abs=2e-3)


def test_acquire_stores_tokens_and_time_with_bounded_precision(
    fake: FakeDynamoDB, clock: SimClock
) -> None:
    clock.now = T0 + 0.1234567
    budget = make_budget(fake, clock)
    admitted(budget)
    clock.now += 0.1

    budget.acquire(max_wait=1.0)

    item = fake.items[KEY]
    assert set(item) == {"pk", "tokens", "updated_at"}
    tokens, updated_at = item["tokens"]["N"], item["updated_at"]["N"]
    assert re.fullmatch(r"0(\.\d{1,6})?", tokens)  # under one token left, at most 6 decimals
    assert re.fullmatch(r"\d+(\.\d{1,3})?", updated_at)
    assert Decimal(updated_at) == Decimal(math.floor(clock.now * 1000)).scaleb(-3)  # ms, floored


# --- contention --------------------------------------------------------------------------------


def test_acquire_write_lost_to_another_instance_rereads_and_takes_next_token(
    fake: FakeDynamoDB, clock: SimClock
) -> None:
    mine, theirs = make_budget(fake, clock), make_budget(fake, clock)
    mine.acquire(max_wait=0)  # item exists: 9 tokens at T0
    fake.before_put = lambda: theirs.acquire(max_wait=0)  # same millisecond, 9 -> 8

    mine.acquire(max_wait=0)

    # updated_at is unchanged by a same-millisecond write; the token count still exposes it
    assert fake.conflicts == 1
    assert stored_tokens(fake) == 7
    assert admitted(mine) == 7


def test_acquire_persistent_conflicts_raise_budget_exhausted(
    fake: FakeDynamoDB, clock: SimClock
) -> None:
    mine, theirs = (make_budget(fake, clock, per_minute=100, burst=50) for _ in range(2))
    mine.acquire(max_wait=0)
    original_put = fake.put_item
    racing = False

    def always_beaten(**request: Any) -> Any:
        nonlocal racing
        if not racing:  # the other instance's own write is not raced again
            racing = True
            try:
                theirs.acquire(max_wait=0)
            finally:
                racing = False
        return original_put(**request)

    fake.put_item = always_beaten  # type: ignore[method-assign]

    with pytest.raises(BudgetExhausted) as raised:
        mine.acquire(max_wait=1.0)

    assert raised.value.retry_after == CONFLICT_RETRY_AFTER
    assert fake.conflicts == MAX_CONFLICTS
    assert stored_tokens(fake) == 49 - MAX_CONFLICTS  # every token went to the winner


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

    # The first minute starts with a full bucket: 240 (the floor-rounded refill may lose one).
    assert 239 <= max_in_any_window(times) <= 240
    assert len(times) == pytest.approx(10 + 300 * 230 / 60, abs=2)


_groups = st.lists(
    st.tuples(
        st.integers(min_value=0, max_value=4000),  # ms since the previous group
        st.integers(min_value=1, max_value=40),  # requests at that instant
        st.sampled_from([0.0, 0.05, 0.5, 2.0]),  # their max_wait
        st.booleans(),  # which of two instances sends them
    ),
    min_size=1,
    max_size=300,
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    per_minute=st.integers(min_value=2, max_value=300),
    burst_share=st.floats(min_value=0.0, max_value=1.0),
    start_offset=st.floats(min_value=0.0, max_value=1.0),
    groups=_groups,
)
def test_acquire_random_traffic_never_exceeds_per_minute_in_any_window(
    per_minute: int, burst_share: float, start_offset: float, groups: list[Any]
) -> None:
    burst = 1 + int(burst_share * (per_minute - 2))
    fake, clock = FakeDynamoDB(), SimClock(T0 + start_offset)
    budgets = [make_budget(fake, clock, per_minute=per_minute, burst=burst) for _ in range(2)]
    times: list[float] = []
    refusals: list[tuple[float, float]] = []  # (retry_after, max_wait)
    for gap_ms, count, max_wait, which in groups:
        clock.now += gap_ms / 1000
        for _ in range(count):
            try:
                budgets[which].acquire(max_wait=max_wait)
            except BudgetExhausted as exc:
                refusals.append((exc.retry_after, max_wait))
            else:
                times.append(clock.now)

    assert max_in_any_window(times) <= per_minute
    assert all(retry_after > max_wait for retry_after, max_wait in refusals)


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
