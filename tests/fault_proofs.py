"""Fault proofs: each injected fault has an assertion that fails when the code mishandles it.

For every fault point the local stack offers (the sandbox's vendor faults, its webhook modes,
devstack.aws_faults' AWS errors, crashes and lost answers, and the soak's named rules), MUTATIONS
holds at least one minimal, plausible mishandling of it in the product code, and the fastest
tests that must catch it. Each mutation is applied to a copy of the repository's tracked files
(never to the working tree), the named tests run there, and the mutation counts as killed only
if pytest fails. A baseline run of the same tests on the unmutated copy comes first, so that a
kill means the mutation, not a test that fails anyway.

    python -m tests.fault_proofs                # every mutation (make fault-proofs)
    python -m tests.fault_proofs --only NAME    # one (repeatable)
    python -m tests.fault_proofs --list         # the table, nothing run

One line per mutation: `killed` with the first failing test id, or `SURVIVED`; exit 1 if any
mutation survived or did not apply. tests/unit/test_fault_proofs.py keeps the table in step
with the code (every fault point covered, every `old` text found exactly once, every test
present), so it cannot rot silently. Results as measured: docs/reliability.md.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final, get_args

ROOT: Final = Path(__file__).resolve().parents[1]
# Generous: the slowest mutation's tests take about a minute on a shared 2-core machine. A run
# that hangs past it is reported as killed by the timeout (CI would see the hang as well).
TEST_TIMEOUT_S: Final = 600

# Every product file a mutation touches, in one place: when a module moves, re-map it here.
PATHS: Final = {
    "answers": "layers/common/warmgate/adapters/mailivery/answers.py",
    "budget": "layers/common/warmgate/adapters/budget.py",
    "client": "layers/common/warmgate/adapters/mailivery/client.py",
    "decisions": "layers/common/warmgate/domain/decisions.py",
    "dynamodb": "layers/common/warmgate/adapters/dynamodb.py",
    "mailboxes": "layers/common/warmgate/domain/mailboxes.py",
    "onboarding": "layers/common/warmgate/services/onboarding.py",
    "reconciler": "layers/common/warmgate/services/reconciler.py",
    "start_attempts": "layers/common/warmgate/services/start_attempts.py",
    "webhook_intake": "layers/common/warmgate/api/webhook_intake.py",
    "worker": "layers/common/warmgate/services/worker.py",
    "worker_batch": "layers/common/warmgate/api/worker_batch.py",
}

# Test modules, by short name (a test id is "<module>::<test>").
LIFECYCLE: Final = "tests/integration/test_lifecycle.py"
CLIENT: Final = "tests/integration/test_mailivery_client.py"
ONBOARDING: Final = "tests/integration/test_onboarding_api.py"
RECONCILER: Final = "tests/integration/test_reconciler_function.py"
WEBHOOK: Final = "tests/integration/test_webhook_function.py"
WORKER: Final = "tests/integration/test_worker_function.py"
WORKER_AWS: Final = "tests/integration/test_worker_aws_calls.py"
WORKER_FAULTS: Final = "tests/integration/test_worker_aws_faults.py"
RATE_BUDGET_UNIT: Final = "tests/unit/test_rate_budget.py"
DECISIONS_UNIT: Final = "tests/unit/test_decisions.py"


@dataclass(frozen=True)
class Mutation:
    """One mishandling: in PATHS[file], `old` (found exactly once) becomes `new`; `tests`, run
    together, must then fail. `faults`: the fault points (see fault_points()) it mishandles."""

    name: str
    faults: tuple[str, ...]
    file: str
    old: str
    new: str
    tests: tuple[str, ...]
    why: str

    @property
    def path(self) -> str:
        return PATHS[self.file]


# Fault points whose mishandling lands the same way whatever the AWS error code: the product
# never tells these codes apart (a failed call propagates, the message is retried by SQS).
AWS_WRITE_ERRORS: Final = (
    "aws:ProvisionedThroughputExceededException",
    "aws:ThrottlingException",
    "aws:RequestLimitExceeded",
    "aws:InternalServerError",
    "aws:ServiceUnavailable",
    "soak:DynamoDB ProvisionedThroughputExceeded",
    "soak:DynamoDB ThrottlingException",
    "soak:DynamoDB TransactionConflict",
)

MUTATIONS: Final[tuple[Mutation, ...]] = (
    # --- the vendor (the sandbox) ------------------------------------------------------------
    Mutation(
        "timeout-taken-as-not-sent",
        ("vendor:timeout", "vendor:lost"),
        "client",
        '            raise Timeout(\n                f"{method} {path_template} timed out',
        '            raise Unreachable(\n                f"{method} {path_template} timed out',
        (
            f"{LIFECYCLE}::test_delivery_right_after_an_unknown_outcome_waits_for_the_late_call_to_land",
        ),
        "a start that timed out may have run at Mailivery; as 'could not connect' the claim is "
        "released and the retry starts it a second time",
    ),
    Mutation(
        "timeout-not-ambiguous-in-worker",
        ("vendor:lost", "vendor:timeout"),
        "start_attempts",
        "AMBIGUOUS_ERRORS = (ServerError, Timeout, ConnectionLost, UnexpectedResponse)",
        "AMBIGUOUS_ERRORS = (ServerError, ConnectionLost, UnexpectedResponse)",
        (
            f"{LIFECYCLE}::test_ambiguous_start_keeps_claim_blocks_withdraw_and_retry_settles_without_second_start",
        ),
        "a start whose answer was lost frees its request instead of keeping the claim until a "
        "re-read settles it",
    ),
    Mutation(
        "unknown-outcome-not-waited-for",
        ("vendor:timeout", "vendor:reset"),
        "mailboxes",
        "held = UNKNOWN_OUTCOME_SETTLE if self.outcome_unknown else lease",
        "held = timedelta(0) if self.outcome_unknown else lease",
        (
            f"{LIFECYCLE}::test_delivery_right_after_an_unknown_outcome_waits_for_the_late_call_to_land",
        ),
        "a delivery right after an unknown outcome re-reads at once, sees the campaign still "
        "pending (the late call has not landed) and starts it again",
    ),
    Mutation(
        "5xx-on-start-taken-as-not-applied",
        ("vendor:error", "vendor:html"),
        "start_attempts",
        "AMBIGUOUS_ERRORS = (ServerError, Timeout, ConnectionLost, UnexpectedResponse)",
        "AMBIGUOUS_ERRORS = (Timeout, ConnectionLost, UnexpectedResponse)",
        (f"{LIFECYCLE}::test_ambiguous_start_not_applied_is_started_by_the_retry",),
        "a 5xx does not prove the start did not run; freeing the claim lets a duplicate start it",
    ),
    Mutation(
        "create-retried-on-5xx",
        ("vendor:error",),
        "client",
        'retryable = method == "GET"',
        'retryable = method in ("GET", "POST")',
        (f"{CLIENT}::test_create_is_not_retried_on_5xx",),
        "a retried ms-graph create can mint a second consent link, so a second campaign",
    ),
    Mutation(
        "reads-not-retried-on-5xx",
        ("vendor:error",),
        "client",
        '        retryable = method == "GET"\n        attempts = self._retry.attempts if retryable else 1',
        '        retryable = method == "GET"\n        attempts = 1',
        (f"{CLIENT}::test_read_is_retried_on_5xx_with_fresh_request_ids",),
        "an idempotent read given up at the first 5xx: every blip fails a receive",
    ),
    Mutation(
        "non-json-error-body-unclassified",
        ("vendor:html",),
        "answers",
        "    if not 200 <= status < 300:\n        raise _error_for(",
        "    if body is not None and not 200 <= status < 300:\n        raise _error_for(",
        (f"{CLIENT}::test_unintelligible_answer_raises_typed_error",),
        "a proxy's HTML 502 page read as an unintelligible success, not as a retryable 5xx",
    ),
    Mutation(
        "unreadable-reread-taken-as-gone",
        ("vendor:empty", "vendor:garbage"),
        "worker",
        "            except NotFound:\n                return message.campaign_id, None",
        # worker.py does not import UnexpectedResponse: named through a tuple it does import,
        # or the except clause would fail with a NameError and change nothing.
        "            except (\n"
        '                NotFound, *(e for e in AMBIGUOUS_ERRORS if e.__name__ == "UnexpectedResponse")\n'
        "            ):\n                return message.campaign_id, None",
        (f"{WORKER}::test_worker_unreadable_reread_fails_the_item_and_changes_nothing",),
        "an answer that cannot be read says nothing about the campaign: taken as 'not found', "
        "the worker decides (and records) on a campaign it never saw",
    ),
    Mutation(
        "unreadable-answer-to-start-taken-as-failure",
        ("vendor:empty", "vendor:garbage"),
        "client",
        "method, path, campaign_id=campaign_id, allow_empty=True, throttled=not prepaid",
        "method, path, campaign_id=campaign_id, allow_empty=False, throttled=not prepaid",
        (f"{LIFECYCLE}::test_start_answered_with_an_unreadable_body_is_taken_as_applied",),
        "a 200 to a start is its acceptance whatever its body says: read as a failure, the "
        "mailbox waits for a retry and Mailivery gets more calls",
    ),
    Mutation(
        "reset-taken-as-not-sent",
        ("vendor:reset",),
        "client",
        '            raise ConnectionLost(\n                f"{method} {path_template} lost its connection',
        '            raise Unreachable(\n                f"{method} {path_template} lost its connection',
        (
            f"{CLIENT}::test_connection_reset_after_the_request_raises_connection_lost_not_unreachable",
            f"{LIFECYCLE}::test_start_whose_connection_dropped_keeps_its_claim_and_is_not_repeated",
        ),
        "a connection dropped after the request was sent may have been applied",
    ),
    Mutation(
        "retry-after-ignored",
        ("vendor:storm",),
        "answers",
        '    value = response.headers.get("Retry-After")',
        "    value = None",
        (f"{CLIENT}::test_rate_limited_beyond_max_wait_raises_with_retry_after",),
        "a 429 storm's Retry-After ignored: reads retried into the storm, the work not deferred "
        "for as long as the vendor asked",
    ),
    Mutation(
        "deferral-ignores-retry-after",
        ("vendor:storm",),
        "worker",
        'exc.retry_after or 60, "rate_limited"',
        '60, "rate_limited"',
        (f"{WORKER}::test_worker_defers_a_429_storm_for_as_long_as_its_retry_after",),
        "work deferred a fixed minute into a longer storm comes back to more 429s",
    ),
    Mutation(
        "429-on-start-keeps-the-claim",
        ("vendor:storm",),
        "worker",
        "            self._release(claimed, mailbox)\n            raise",
        "            raise",
        (f"{WORKER}::test_worker_429_on_start_releases_claim_for_the_retry",),
        "a start refused by the rate limiter never ran, but its claim blocks the retry for a lease",
    ),
    Mutation(
        "storm-does-not-stop-the-reconciler",
        ("vendor:storm",),
        "reconciler",
        "NOT_NOW: tuple[type[Exception], ...] = (BudgetExhausted, *TRANSIENT_ERRORS)",
        "NOT_NOW: tuple[type[Exception], ...] = (\n"
        '    BudgetExhausted, *(e for e in TRANSIENT_ERRORS if e.__name__ != "RateLimited")\n)',
        (
            f"{RECONCILER}::test_reconciler_through_a_429_storm_queues_every_stranded_campaign_exactly_once",
        ),
        "a reconciler run that does not stop on 429 fails instead of continuing next run",
    ),
    Mutation(
        "no-time-box-for-slow-answers",
        ("vendor:latency",),
        "worker_batch",
        "                if self._enough_time_left(lambda_context, message):",
        "                if True:",
        (
            f"{WORKER}::test_worker_batch_with_too_little_time_left_hands_every_record_back_untouched",
        ),
        "with 12 s answers a record started near the invocation's end is killed mid-call",
    ),
    # --- webhooks as the sandbox delivers them -------------------------------------------------
    Mutation(
        "replay-not-recognised",
        ("webhook:duplicate", "soak:crash mid-batch"),
        "decisions",
        "        event_type.strip().lower() in ANNOUNCING_EVENT_TYPES\n        and mailbox is not None",
        "        False\n        and mailbox is not None",
        (f"{WORKER_AWS}::test_worker_replayed_message_makes_one_dynamodb_call_and_no_vendor_call",),
        "a duplicate, or a record redelivered after its batch died, costs a vendor read and "
        "more DynamoDB calls instead of ending at the first read",
    ),
    Mutation(
        "consumed-request-acts-again",
        ("webhook:duplicate", "webhook:reorder", "soak:crash mid-batch"),
        "decisions",
        '    if not owner.has_open_request(now):\n        return "no open request"',
        '    if False:\n        return "no open request"',
        (
            f"{LIFECYCLE}::test_operator_pause_then_updated_and_duplicate_pending_changes_nothing_at_mailivery",
        ),
        "a redelivered or late event acts on a request an earlier delivery already consumed",
    ),
    Mutation(
        "deleted-event-trusted-over-reread",
        ("webhook:reorder",),
        "decisions",
        "    if campaign is not None:\n        return CampaignDecision(\n            Outcome.IGNORED,",
        "    if False:\n        return CampaignDecision(\n            Outcome.IGNORED,",
        (f"{DECISIONS_UNIT}",),
        "a campaign.deleted that arrives out of order marks a live campaign deleted",
    ),
    Mutation(
        "dropped-webhook-never-found",
        ("webhook:drop",),
        "reconciler",
        '        if (campaign.email or "") not in awaiting:',
        "        if True:",
        (f"{RECONCILER}::test_reconciler_dropped_webhook_still_ends_warming",),
        "a webhook that never arrives strands the mailbox: the reconciler queues nothing",
    ),
    Mutation(
        "late-consent-after-expiry-started",
        ("webhook:delay",),
        "mailboxes",
        "        return parse_iso(self.expires_at) <= now",
        "        return False",
        (f"{WORKER}::test_worker_expired_expectation_is_rejected_not_started",),
        "a webhook delayed past the expectation's expiry starts a campaign nobody still expects",
    ),
    # --- AWS, through devstack.aws_faults ----------------------------------------------------
    Mutation(
        "failed-write-taken-as-success",
        (*AWS_WRITE_ERRORS, "aws:TransactionConflictException"),
        "dynamodb",
        "                raise StaleRecord(name) from None\n            raise\n\n    def _batch_get",
        "                raise StaleRecord(name) from None\n\n    def _batch_get",
        (
            f"{WORKER_FAULTS}::test_throttled_result_write_fails_the_record_and_the_retry_starts_nothing",
        ),
        "a throttled result write reported as done: the message is deleted while the mailbox "
        "stays claimed",
    ),
    Mutation(
        "transaction-conflict-taken-as-token",
        ("aws:TransactionConflictException", "soak:DynamoDB TransactionConflict"),
        "budget",
        '        if code == "TransactionConflictException":\n            return _Attempt.HELD',
        '        if code == "TransactionConflictException":\n            return _Attempt.TAKEN',
        (RATE_BUDGET_UNIT,),
        "a conflicting budget transaction did not write: counting it as a token taken lets "
        "more than 240 calls a minute through",
    ),
    Mutation(
        "failed-record-acknowledged",
        (
            *AWS_WRITE_ERRORS,
            "soak:a mailbox the worker cannot read (until its message is in WorkDLQ)",
        ),
        "worker_batch",
        '                logger.exception("last receive failed: the message goes to WorkDLQ")\n            raise',
        '                logger.exception("last receive failed: the message goes to WorkDLQ")\n            return',
        (f"{WORKER}::test_worker_vendor_5xx_fails_item_for_sqs_retry",),
        "a record that failed (an unreadable table, a failed vendor read) acknowledged: the "
        "message is deleted, never retried, never in WorkDLQ",
    ),
    Mutation(
        "lost-answer-of-saved-link-refused",
        ("aws:applied", "soak:DynamoDB write applied, answer lost"),
        "onboarding",
        "                    and current.consent_url == url  # an earlier try was saved, its answer lost",
        "                    and current.consent_url is None  # an earlier try was saved, its answer lost",
        (
            f"{ONBOARDING}::test_consent_link_saved_but_its_answer_lost_is_answered_once_not_as_withdrawn",
        ),
        "a link save that DynamoDB applied but whose answer was lost is taken for a withdrawal",
    ),
    Mutation(
        "webhook-sendmessage-error-swallowed",
        ("aws:InternalError", "soak:webhook SendMessage failed"),
        "webhook_intake",
        '            raise QueueUnavailable(f"SendMessage failed: {exc}") from exc',
        '            return ""',
        (
            f"{WEBHOOK}::test_webhook_function_queue_gone_is_503_then_retry_after_recovery_queues_once",
        ),
        "a webhook answered 202 though SQS never took it: Mailivery does not retry, it is lost",
    ),
    Mutation(
        "deferral-sendmessage-error-swallowed",
        ("aws:InternalError", "aws:RequestThrottled", "soak:worker SendMessage (deferral) failed"),
        "worker_batch",
        "            self.work_queue.send(message, delay_seconds=later.delay)",
        "            try:\n                self.work_queue.send(message, delay_seconds=later.delay)\n"
        "            except Exception:\n                return",
        (
            f"{WORKER_FAULTS}::test_deferral_that_cannot_be_sent_fails_the_record_instead_of_dropping_it",
        ),
        "a deferral SQS refused, acknowledged anyway: the message is gone, the mailbox waits "
        "forever",
    ),
    Mutation(
        "token-secret-failure-taken-as-wrong-token",
        ("aws:InternalServiceError", "soak:webhook token secret unavailable"),
        "webhook_intake",
        '            raise WebhookTokenUnavailable("the webhook token secret could not be read") from exc',
        "            return WebhookToken(())",
        (f"{WEBHOOK}::test_webhook_function_token_secret_unreadable_is_503_and_queue_empty",),
        "an unreadable secret answered 404: Mailivery takes the URL as gone and does not retry",
    ),
    Mutation(
        "api-key-failure-leaves-request-in-flight",
        ("aws:InternalServiceError", "soak:API key secret unavailable"),
        "onboarding",
        '            self._record_failure(claimed, type(exc).__name__, "warmgate failed: see its logs", None)',
        "            pass",
        (
            f"{ONBOARDING}::test_request_consent_failing_before_mailivery_is_called_allows_a_retry_at_once",
        ),
        "no link was requested, yet the record stays in flight: the integrator's retry gets 409",
    ),
    # --- crashes ---------------------------------------------------------------------------------
    Mutation(
        "live-claim-taken-over",
        ("aws:crash", "soak:crash after the vendor answered"),
        "mailboxes",
        "held = UNKNOWN_OUTCOME_SETTLE if self.outcome_unknown else lease",
        "held = UNKNOWN_OUTCOME_SETTLE if self.outcome_unknown else timedelta(0)",
        (
            f"{DECISIONS_UNIT}::test_decide_table",
            f"{WORKER_FAULTS}::test_worker_that_died_after_the_vendor_answered_is_settled_by_a_reread",
        ),
        "a claim is taken over before its lease ends: the call of a worker still in it (or one "
        "that died in it) may be made twice",
    ),
    Mutation(
        "abandoned-link-request-blocks-forever",
        ("aws:crash", "soak:onboarding crash after the link was minted"),
        "mailboxes",
        "            and parse_iso(self.updated_at) + abandon_after > now\n",
        "",
        (f"{ONBOARDING}::test_request_consent_abandoned_in_flight_record_does_not_block",),
        "an onboarding that died after the claim leaves the mailbox 'in flight' for ever",
    ),
    Mutation(
        "previous-token-refused-during-rotation",
        ("webhook:token rotation",),
        "webhook_intake",
        '        if previous is not None and previous != "":',
        "        if False:",
        (f"{WEBHOOK}::test_webhook_function_rotation_accepts_current_and_previous_token",),
        "while the URL in Mailivery still carries the old token, every webhook is refused",
    ),
)


# --- the fault points the local stack offers -------------------------------------------------

# Not enumerable from a type: the rotation is a step of the soak (TokenRotation), not a rule.
EXTRA_FAULT_POINTS: Final = ("webhook:token rotation",)


def fault_points() -> set[str]:
    """Every fault the local stack can inject, read from the code that injects it."""
    from devstack import aws_faults
    from devstack.sandbox import faults, webhooks
    from tests.e2e.soak_faults import aws_fault_rules

    vendor = {
        name.removesuffix("_rate")
        for name in faults.FaultConfig.__dataclass_fields__
        if name.endswith("_rate")
    }
    vendor |= set(_literals(faults.CallFault)) | {"latency"}  # latency_ms: slow answers
    webhook = set(get_args(webhooks.WebhookMode)) - {"deliver"}
    aws = set(aws_faults.ERROR_STATUS) | {"crash", "applied"}
    return (
        {f"vendor:{kind}" for kind in vendor}
        | {f"webhook:{mode}" for mode in webhook}
        | {f"aws:{kind}" for kind in aws}
        | {f"soak:{rule.name}" for rule in aws_fault_rules()}
        | set(EXTRA_FAULT_POINTS)
    )


def _literals(annotation: object) -> Iterable[str]:
    for arg in get_args(annotation):
        if isinstance(arg, str):
            yield arg
        else:
            yield from _literals(arg)


# --- running -----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Result:
    mutation: Mutation
    verdict: str  # killed | SURVIVED | NOT APPLIED
    detail: str
    seconds: float

    @property
    def ok(self) -> bool:
        return self.verdict == "killed"


class MutationNotApplied(Exception):
    pass


def apply(mutation: Mutation, root: Path) -> None:
    """Replace `old` by `new` in the copy under `root`; `old` must occur exactly once."""
    target = root / mutation.path
    if not target.is_file():
        raise MutationNotApplied(f"{mutation.name}: {mutation.path} does not exist")
    text = target.read_text()
    found = text.count(mutation.old)
    if found != 1:
        raise MutationNotApplied(
            f"{mutation.name}: its old text occurs {found} times in {mutation.path}, not once"
        )
    target.write_text(text.replace(mutation.old, mutation.new))


def copy_tree(destination: Path) -> None:
    """The working tree's tracked files (as they are now, edits included) into `destination`."""
    listed = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    for name in filter(None, listed.split("\0")):
        source = ROOT / name
        if source.is_file():  # a tracked file deleted in the working tree is left out
            (destination / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, destination / name)


def run_tests(root: Path, tests: Sequence[str]) -> tuple[int | None, str]:
    """pytest on `tests` in the copy, with this .venv's python and the copy first on the path;
    (exit code or None on timeout, output)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(
        [str(root / "layers" / "common"), str(root), env.get("PYTHONPATH", "")]
    ).rstrip(os.pathsep)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", *tests]
    try:
        done = subprocess.run(
            command, cwd=root, env=env, capture_output=True, text=True, timeout=TEST_TIMEOUT_S
        )
    except subprocess.TimeoutExpired as exc:
        output = exc.stdout if isinstance(exc.stdout, str) else ""
        return None, output
    return done.returncode, done.stdout + done.stderr


# pytest's short summary; a captured log line ("ERROR    warmgate:app.py …") is no test id.
FAILED_LINE: Final = re.compile(r"^(?:FAILED|ERROR) (tests/.+?)(?: - .*)?$", re.MULTILINE)


def first_failure(output: str) -> str:
    found = FAILED_LINE.search(output)
    return found.group(1) if found else "(no test id in pytest's output)"


def prove(mutation: Mutation, workdir: Path) -> Result:
    started = time.monotonic()
    copy = workdir / mutation.name
    copy_tree(copy)
    try:
        apply(mutation, copy)
    except MutationNotApplied as exc:
        return Result(mutation, "NOT APPLIED", str(exc), time.monotonic() - started)
    try:
        code, output = run_tests(copy, mutation.tests)
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    elapsed = time.monotonic() - started
    if code is None:
        return Result(mutation, "killed", f"timed out after {TEST_TIMEOUT_S} s", elapsed)
    if code == 0:
        return Result(mutation, "SURVIVED", f"{', '.join(mutation.tests)} passed", elapsed)
    if code != 1:  # 2-5: interrupted, internal error, usage error, no tests collected
        return Result(mutation, "SURVIVED", f"pytest exit {code}, not a test failure", elapsed)
    return Result(mutation, "killed", first_failure(output), elapsed)


def baseline(tests: Sequence[str], workdir: Path) -> tuple[bool, str]:
    """The named tests on the unmutated copy: they must pass for a kill to mean anything."""
    copy = workdir / "baseline"
    copy_tree(copy)
    try:
        code, output = run_tests(copy, tests)
    finally:
        shutil.rmtree(copy, ignore_errors=True)
    return code == 0, output


def markdown_table(results: Sequence[Result]) -> str:
    rows = [
        "| Fault | Mutation (what the code does wrong) | Where | Result: first failing test |",
        "|---|---|---|---|",
    ]
    for r in results:
        m = r.mutation
        faults = ", ".join(f"`{f}`" for f in m.faults)
        outcome = f"{r.verdict}: `{r.detail.rpartition('::')[2]}`" if r.ok else f"**{r.verdict}**"
        rows.append(f"| {faults} | `{m.name}`: {m.why} | `{m.path}` | {outcome} |")
    return "\n".join(rows)


def selected(only: Sequence[str]) -> list[Mutation]:
    if not only:
        return list(MUTATIONS)
    names = {m.name for m in MUTATIONS}
    unknown = sorted(set(only) - names)
    if unknown:
        raise SystemExit(f"unknown mutation(s): {', '.join(unknown)}; see --list")
    return [m for m in MUTATIONS if m.name in only]


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fault_proofs", description=__doc__)
    parser.add_argument("--only", action="append", default=[], metavar="NAME")
    parser.add_argument("--list", action="store_true", help="print the table, run nothing")
    parser.add_argument(
        "--no-baseline", action="store_true", help="skip the run on the unmutated copy"
    )
    parser.add_argument(
        "--markdown",
        action="store_true",
        help="end with the results as docs/reliability.md's table",
    )
    args = parser.parse_args(argv)
    mutations = selected(args.only)
    if args.list:
        for m in mutations:
            print(f"{m.name}: {', '.join(m.faults)} | {m.path} | {' '.join(m.tests)}\n  {m.why}")
        return 0
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="fault-proofs-") as tmp:
        workdir = Path(tmp)
        if not args.no_baseline:
            tests = sorted({t for m in mutations for t in m.tests})
            passed, output = baseline(tests, workdir)
            if not passed:
                print(output[-4000:])
                print(f"baseline FAILED: the unmutated tests fail ({first_failure(output)})")
                return 1
            print(f"baseline passed: {len(tests)} test targets", flush=True)
        results = []
        for mutation in mutations:
            result = prove(mutation, workdir)
            results.append(result)
            print(
                f"{result.verdict:<11} {mutation.name:<44} {result.detail} "
                f"({result.seconds:.0f} s)",
                flush=True,
            )
    bad = [r for r in results if not r.ok]
    if args.markdown:
        print(markdown_table(results))
    print(
        f"{len(results) - len(bad)}/{len(results)} mutations killed, "
        f"{len({f for m in mutations for f in m.faults})} fault points, "
        f"wall {time.monotonic() - started:.0f} s"
    )
    return 1 if bad else 0


if __name__ == "__main__":
    sys.exit(main())
