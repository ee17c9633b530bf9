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
import json
import sys
from dataclasses import replace

from tests.e2e.soak_plan import FULL, SMALL
from tests.e2e.soak_run import run_soak


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
