"""`dlq peek|redrive`: WorkQueue's dead-letter queue (warmgate_ops.dead_letters)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

import boto3

from warmgate.adapters.sqs import WorkQueue
from warmgate.domain.mailboxes import utc_now
from warmgate_ops.config import (
    EXIT_DEFERRED,
    EXIT_OK,
    WORK_DLQ,
    WORK_QUEUE,
    CommandGroups,
    Deployment,
    OpsError,
    SharedOptions,
    positive,
)
from warmgate_ops.dead_letters import DeadLetter, DeadLetterQueue
from warmgate_ops.tables import age, print_json, render_table


def register(groups: CommandGroups, options: SharedOptions) -> None:
    dlq = groups.add_parser("dlq", help="WorkQueue's dead-letter queue").add_subparsers(
        required=True
    )
    peek = dlq.add_parser(
        "peek", parents=[*options.common, options.wait], help="show, leave in place"
    )
    peek.add_argument("--max", type=positive, default=10)
    peek.set_defaults(run=peek_dead_letters)
    redrive = dlq.add_parser(
        "redrive", parents=[options.location, options.wait], help="move back to WorkQueue"
    )
    redrive.add_argument("--max", type=positive, default=1000)
    redrive.add_argument("--dry-run", action="store_true", help="list what would move")
    redrive.set_defaults(run=redrive_dead_letters)


def dead_letter_queue(args: argparse.Namespace, deployment: Deployment) -> DeadLetterQueue:
    url = deployment.setting(WORK_DLQ)
    return DeadLetterQueue(boto3.client("sqs"), url, wait_seconds=args.wait)


def peek_dead_letters(args: argparse.Namespace, deployment: Deployment) -> int:
    letters = dead_letter_queue(args, deployment).peek(args.max)
    print_dead_letters(letters, as_json=args.json)
    return EXIT_OK


def print_dead_letters(letters: Sequence[DeadLetter], *, as_json: bool) -> None:
    now = utc_now()
    views = [letter.view(now) for letter in letters]
    if as_json:
        print_json(views)
        return
    columns = ("event_type", "campaign_id", "email", "receive_count", "age")
    rows = ([*(v[c] for c in columns[:-1]), age(v["age_seconds"])] for v in views)
    print(render_table(columns, rows))
    print(f"\nshown: {len(views)}")


def redrive_dead_letters(args: argparse.Namespace, deployment: Deployment) -> int:
    target_url = deployment.setting(WORK_QUEUE)
    dlq = dead_letter_queue(args, deployment)
    if target_url == dlq.url:
        raise OpsError("the DLQ and the work queue are the same queue")
    if args.dry_run:
        letters = dlq.peek(args.max)
        print_dead_letters(letters, as_json=False)
        print(f"dry run: would move {len(letters)} message(s) to {target_url}")
        return EXIT_OK
    expected = min(args.max, dlq.approximate_size())

    def progress(moved: int) -> None:
        print(f"moved {moved}/{max(expected, moved)} …", file=sys.stderr)

    target = WorkQueue(boto3.client("sqs"), target_url)
    report = dlq.redrive(target, args.max, progress)
    print(f"moved {report.moved} message(s) from {dlq.url} to {target_url}")
    if report.send_failed or report.not_deleted:
        print(
            f"{report.send_failed} not sent (still in the DLQ), {report.not_deleted} sent but "
            "not deleted (a re-run sends them again; the worker tolerates duplicates)"
        )
        return EXIT_DEFERRED
    return EXIT_OK
