"""The soak's run: the journeys on a local stack with every fault configured, until every
mailbox reached its end and the queues are worked off (dead letters explained and redriven),
then the ledgers reconciled."""

from __future__ import annotations

import contextlib
import json
import os
import random
import secrets
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from devstack.stack import LocalStack, StackOptions
from tests.e2e.soak_actors import (
    Integrator,
    IntegratorError,
    Journey,
    Kind,
    Mailivery,
    SoakRun,
    TableWatcher,
    TokenRotation,
)
from tests.e2e.soak_faults import Poison, aws_fault_rules, vendor_fault_rules
from tests.e2e.soak_ledgers import dump_ledgers, duration, queue_depth, reconcile
from tests.e2e.soak_plan import PROGRESS_EVERY_S, SECRET_MAX_AGE_SECONDS, STORM_SECONDS, SoakPlan


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
        reconcile(run, watcher, integrator, vendor, rotation)
        if dump:
            dump_ledgers(run, watcher, dump)
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
        if poison.active.is_set() and queue_depth(run.stack, "WorkDLQ") > 0:
            poison.active.clear()  # the operator has found the cause; now the redrive
        elif not poison.active.is_set():
            _redrive_dead_letters(run)
        if time.monotonic() >= next_report:
            next_report += PROGRESS_EVERY_S
            ended = sum(1 for j in run.journeys if j.end or j.failure)
            queued = queue_depth(run.stack, "WorkQueue")
            print(
                f"soak: {duration(time.monotonic() - run.started)}, {progress}/{total} "
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


def _settle(run: SoakRun, deadline: float) -> None:
    """Wait until WorkQueue is worked off and the sandbox holds no webhook."""
    while True:
        status = run.control.webhook_status()
        idle = status["held"] == 0 and status["queued"] == 0
        if idle and queue_depth(run.stack, "WorkQueue") == 0:
            time.sleep(2)  # a message in a handler's hands is neither visible nor in flight yet
            if queue_depth(run.stack, "WorkQueue") == 0:
                return
        if time.monotonic() > deadline:
            left = queue_depth(run.stack, "WorkQueue")
            run.problems.append(f"WorkQueue not worked off at the deadline ({left} left)")
            return
        time.sleep(1)


def _redrive_dead_letters(run: SoakRun) -> bool:
    """What an operator does on the WorkDLQ alarm: look (`warmgate-ops dlq peek`), then move
    the messages back (`warmgate-ops dlq redrive`). True if there was anything to move."""
    if queue_depth(run.stack, "WorkDLQ") == 0:
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
