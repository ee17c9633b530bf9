"""The command line: one parser made of each command group's, and the exit code it ends with."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Mapping, Sequence

from botocore.exceptions import BotoCoreError, ClientError

from warmgate_ops.commands import campaign, dlq, mailbox
from warmgate_ops.config import (
    EXIT_BAD_INPUT,
    Deployment,
    OpsError,
    SharedOptions,
    add_location_options,
)

PROG = "warmgate-ops"


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=PROG, description="Operate warmgate: mailboxes, campaigns, DLQ."
    )
    add_location_options(parser, None)  # before the command; SharedOptions has them after it
    groups = parser.add_subparsers(dest="group", required=True)
    options = SharedOptions.build()
    for commands in (mailbox, campaign, dlq):
        commands.register(groups, options)
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    command: Callable[[argparse.Namespace, Deployment], int] = args.run
    try:
        return command(args, Deployment(args, os.environ if environ is None else environ))
    except OpsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (BotoCoreError, ClientError) as exc:
        print(f"error: AWS: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


def run() -> None:
    """The `warmgate-ops` console script."""
    sys.exit(main())
