"""End to end on the local stack (devstack.stack.LocalStack): webhook accepted → vendor start
call issued, per mailbox, with WorkerFunction's batching window emulated; and what each
onboarding costs in requests, priced by bench.cost.

Each mailbox goes the production way: POST /mailboxes through the local API (OnboardingFunction
issues the consent link), the sandbox plays the owner consenting, Mailivery's campaign.pending
webhook reaches WebhookFunction over HTTP, WorkQueue (moto) carries it, the stack's SQS poller
gathers a batch for up to MaximumBatchingWindowInSeconds (template.yaml) and invokes
WorkerFunction, which re-reads the campaign and calls start-warmup.

- accepted: when WebhookFunction logs "webhook accepted" for the campaign, i.e. once SQS took
  the message and just before the 202 (read from the handlers' output as it is written);
- start issued: the sandbox's log time of PATCH /campaigns/{id}/start-warmup.

Phases, one stack:
  one at a time  each mailbox consents only once the previous one started: a lone webhook
                 waits out the whole batching window (the issue's goal: p95 ≤ 2 s);
  under load     consents offered at a steady 10/s, as owners click at their own pace, with
                 the template's window and (not with --quick) with other windows, for the
                 choice of window: latency against worker invocations per message;
  worst case     10 % of Mailivery calls answered 5xx and every start refused 3 times before
                 it is accepted (the sandbox refuses them); the worker's re-enqueue delays are
                 cut to 0 (a botocore hook on SendMessage) and the window to 0, so the retries
                 that take minutes in AWS, one invocation each, take seconds here.
The requests of the first phase (the happy path, at a pace where no webhooks share a batch)
and of the worst case are counted (AWS calls by botocore event hooks, invocations, their wall
time, log bytes) for bench.cost.

The vendor budget and the sandbox's limit are raised to 6,000/min (the most Settings accepts):
at 240/min this would only repeat the throughput benchmark. A first onboarding warms every
function (clients, secrets) before anything is measured.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final, TextIO, cast

import httpx

from bench.aws_calls import AwsCalls
from bench.cost import (
    ONBOARDINGS,
    Usage,
    cost_details,
    cost_notes,
    per_invocation_dollars,
    total_rows,
    usage_json,
)
from bench.e2e_phases import RATE, REFUSALS, VENDOR_5XX_RATE, WORKER, Run
from bench.e2e_taps import (
    DeferCap,
    LogTap,
    Meter,
    PhaseClock,
    latencies,
    registered,
    snapshot,
    tapped_logger,
    usage_between,
)
from bench.report import Goal, Row, Table, median, percentile, ratio
from warmgate.adapters import aws

RAISED_LIMIT: Final = 6000  # Settings' maximum for MAILIVERY_REQUESTS_PER_MINUTE
BUDGETED_FUNCTIONS: Final = ("OnboardingFunction", "WorkerFunction")
LONE_P95_GOAL_MS: Final = 2000.0
DEFER_CAP_SECONDS: Final = 0
VISIBILITY_TIMEOUT_S: Final = 5


@dataclass
class Measured:
    """What the phases measured, for the latency and cost tables."""

    window: int  # the template's batching window, seconds
    lone_ids: list[str]
    load_ids: list[str]
    load_invocations: int
    offered: float  # seconds the consents under load took to offer
    compared: dict[int, tuple[list[str], int]]  # other window → (campaign ids, invocations)
    accepted: dict[str, float]  # campaign id → when its webhook was accepted
    calls: list[dict[str, Any]]  # the sandbox's log
    happy: Usage
    worst: Usage
    ended: dict[str, int]  # worst case: state → mailboxes
    phase_seconds: dict[str, float]


@dataclass(frozen=True)
class Sizes:
    lone: int
    loaded: int
    worst: int
    other_windows: list[int]


def run(*, quick: bool) -> list[Table]:
    sizes = Sizes(
        lone=3 if quick else 10,
        loaded=20 if quick else 100,
        worst=5 if quick else 20,
        other_windows=[] if quick else [0, 5],  # the evidence for the window: a full run
    )
    measured = measure(sizes)
    latency = latency_table(measured, sizes.loaded)
    latency.extra["phase_seconds"] = measured.phase_seconds
    return [latency, cost_table(measured, sizes)]


def measure(sizes: Sizes) -> Measured:
    from devstack.stack import LocalStack, StackOptions

    meter = Meter(AwsCalls())  # entered once the stack made its session
    tap = LogTap(meter.current)
    cap = DeferCap(DEFER_CAP_SECONDS)
    options = StackOptions(
        schedule_seconds=3600,  # the reconciler stays out of the way
        # A record that fails (a re-read that met 5xx at every retry) comes back after this
        # instead of WorkQueue's 1100 s, as it would, much later, in AWS.
        visibility_timeout_seconds=VISIBILITY_TIMEOUT_S,
        poll_idle_seconds=0.1,  # the stack's default: an idle poller looks again after 100 ms
        # write/flush are all redirect_stdout and logging use of it (as devstack's own stream)
        function_stdout=cast(TextIO, tap),
    )
    with (
        LocalStack(options) as stack,
        # The stack starts warmgate's botocore session afresh: the hooks go on that one,
        # and every function is loaded again below so that its clients carry them.
        meter.calls,
        registered(aws.session(), "before-parameter-build.sqs.SendMessage", cap),
        tapped_logger(tap),
        stack.sandbox_control() as control,
        httpx.Client(base_url=stack.api_url, timeout=30) as api,
    ):
        for logical_id, function in stack.functions.items():
            if logical_id in BUDGETED_FUNCTIONS:
                function.environment["MAILIVERY_REQUESTS_PER_MINUTE"] = str(RAISED_LIMIT)
            function.load()  # re-import: settings are read at import, clients made now
        for function in stack.functions.values():
            meter.wrap(function)
        control.set_rate_limit(RAISED_LIMIT)
        source = next(s for s in stack.sqs_sources if s.function.logical_id == WORKER)
        memory_gb = {n: f.spec.memory_mb / 1024 for n, f in stack.functions.items()}
        return run_phases(Run(stack, api, control, tap, meter, source), sizes, cap, memory_gb)


def run_phases(run_: Run, sizes: Sizes, cap: DeferCap, memory_gb: dict[str, float]) -> Measured:
    meter, tap, source = run_.meter, run_.tap, run_.worker_source
    window = source.batching_window
    phases = PhaseClock()
    source.batching_window = 0  # warm-up: every function run once, its secrets cached
    run_.one_at_a_time(1)
    source.batching_window = window
    phases.lap("start and warm-up")

    before = snapshot(meter, tap)
    lone_ids = run_.one_at_a_time(sizes.lone)
    happy = usage_between(before, snapshot(meter, tap), sizes.lone, memory_gb)
    phases.lap("one at a time")
    load_ids, load_invocations, offered = run_.under_load(sizes.loaded, window)
    phases.lap("under load")

    compared = {}
    for other in sizes.other_windows:
        ids, invocations, _ = run_.under_load(sizes.loaded, other)
        compared[other] = (ids, invocations)
    source.batching_window = window
    phases.lap("other windows")

    before = snapshot(meter, tap)
    ended = run_.worst_case(sizes.worst, cap)
    worst = usage_between(before, snapshot(meter, tap), sizes.worst, memory_gb)
    phases.lap("worst case")
    return Measured(
        window=window,
        lone_ids=lone_ids,
        load_ids=load_ids,
        load_invocations=load_invocations,
        offered=offered,
        compared=compared,
        accepted=dict(tap.accepted),
        calls=run_.control.calls(),
        happy=happy,
        worst=worst,
        ended=ended,
        phase_seconds=phases.laps,
    )


def cost_table(measured: Measured, sizes: Sizes) -> Table:
    happy, worst = measured.happy, measured.worst
    cost = Table(
        "cost",
        f"Cost per 1,000 onboardings, eu-west-1 list prices (happy path: {sizes.lone} "
        f"onboardings one at a time; worst case: {sizes.worst}, each start refused {REFUSALS} "
        f"times, {VENDOR_5XX_RATE:.0%} of Mailivery calls 5xx)",
    )
    cost.rows += total_rows(happy, worst)
    cost.details += cost_details(happy, worst)
    cost.notes += [
        f"worst case: the mailboxes ended {measured.ended} (a start that also met a 5xx can use "
        "up MAX_START_ATTEMPTS and park; a new request would start it)",
        *cost_notes(happy, worst),
    ]
    cost.extra = {"happy": usage_json(happy), "worst": usage_json(worst)}
    return cost


def latency_table(measured: Measured, loaded: int) -> Table:
    m = measured
    table = Table(
        "e2e",
        f"End to end on the local stack: webhook accepted → start-warmup issued, batching window "
        f"{m.window} s emulated (template.yaml)",
    )
    lone_s = latencies(m.lone_ids, m.accepted, m.calls)
    load_s = latencies(m.load_ids, m.accepted, m.calls)
    if not lone_s or not load_s:
        raise RuntimeError("no start-warmup call was observed; is the local stack working?")
    table.rows += latency_rows(lone_s, load_s, loaded, m.load_invocations / len(m.load_ids))
    table.rows += window_rows(m, load_s)
    table.notes += [
        f"one at a time: {len(lone_s)} mailboxes, each consented once the previous one started, "
        f"so each webhook waits out the {m.window} s window alone; baseline of the load rows = "
        "their median",
        f"under load: {loaded} consents offered at {RATE:g}/s ({m.offered:.1f} s); the rows "
        "marked 'same load' repeat it with another window, baseline = the template's window",
        "the stack runs every handler in one process, one invocation at a time, and polls an "
        "idle queue every 100 ms (Lambda long-polls), so these are a local pipeline's "
        "latencies, not Lambda's (no cold starts)",
        f"vendor budget and sandbox limit raised to {RAISED_LIMIT}/min for this benchmark",
    ]
    for other, (ids, invocations) in m.compared.items():
        extra = (invocations / len(ids) - m.load_invocations / len(m.load_ids)) * ONBOARDINGS
        table.notes.append(
            f"window {other} s instead of {m.window} s at this load: {extra:+.0f} worker "
            f"invocations per {ONBOARDINGS:,} onboardings, "
            f"{extra * per_invocation_dollars(m.happy, WORKER):+.4f} $ (requests, "
            "their log lines, the batch's receive and delete; bench.cost)"
        )
    table.extra = {
        "window_s": m.window,
        "lone_ms": [x * 1000 for x in lone_s],
        "loaded_ms": [x * 1000 for x in load_s],
        "invocations_per_message": {
            m.window: m.load_invocations / len(m.load_ids),
            **{w: inv / len(ids) for w, (ids, inv) in m.compared.items()},
        },
    }
    return table


def latency_rows(
    lone_s: list[float], load_s: list[float], loaded: int, per_message: float
) -> list[Row]:
    """Percentiles one at a time (the goal) and under load (against the lone median)."""
    reference = median(lone_s) * 1000
    rows = [
        Row(
            f"one mailbox at a time, {label}",
            percentile(lone_s, q) * 1000,
            "ms",
            goal=Goal("<=", LONE_P95_GOAL_MS, "ms") if label == "p95" else None,
        )
        for label, q in (("p50", 50.0), ("p95", 95.0))
    ]
    for label, q in (("p50", 50.0), ("p95", 95.0), ("p99", 99.0)):
        value = percentile(load_s, q) * 1000
        rows.append(
            Row(
                f"{loaded} at {RATE:g}/s, {label}",
                value,
                "ms",
                baseline=reference,
                ratio=ratio(value, reference),
            )
        )
    rows.append(Row(f"{loaded} at {RATE:g}/s, worker invocations per message", per_message, ""))
    return rows


def window_rows(measured: Measured, load_s: list[float]) -> list[Row]:
    """The same load under each other window, against the template's."""
    per_message = measured.load_invocations / len(measured.load_ids)
    rows = []
    for other, (ids, invocations) in measured.compared.items():
        other_s = latencies(ids, measured.accepted, measured.calls)
        rows += [
            Row(
                f"  same load, window {other} s: p95",
                percentile(other_s, 95) * 1000,
                "ms",
                baseline=percentile(load_s, 95) * 1000,
                ratio=ratio(percentile(other_s, 95), percentile(load_s, 95)),
            ),
            Row(
                f"  same load, window {other} s: worker invocations per message",
                invocations / len(ids),
                "",
                baseline=per_message,
                ratio=ratio(invocations / len(ids), per_message),
            ),
        ]
    return rows
