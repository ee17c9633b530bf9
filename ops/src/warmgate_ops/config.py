"""Where the commands work (the deployment's table and queues), the options that say so, and
what an operator is told when something is missing: exit codes and OpsError."""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import boto3
from botocore.exceptions import ClientError

from warmgate.adapters.dynamodb import MailboxRepository

# 0 done; 1 not found; 2 bad input or configuration (or AWS refused the call);
# 3 deferred or incomplete: run it again later.
EXIT_OK, EXIT_NOT_FOUND, EXIT_BAD_INPUT, EXIT_DEFERRED = 0, 1, 2, 3


# What `add_subparsers()` returns: each command module adds its group of commands to it.
type CommandGroups = argparse._SubParsersAction[argparse.ArgumentParser]


class OpsError(Exception):
    """A message for the operator and the exit code that goes with it."""

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.exit_code = exit_code


@dataclass(frozen=True, slots=True)
class Setting:
    dest: str  # argparse destination of the flag
    flag: str
    variable: str  # as the functions read it
    output: str  # template.yaml Outputs key


TABLE = Setting("table", "--table", "MAILBOX_TABLE_NAME", "MailboxTableName")
WORK_QUEUE = Setting("queue_url", "--queue-url", "WORK_QUEUE_URL", "WorkQueueUrl")
WORK_DLQ = Setting("dlq_url", "--dlq-url", "WORK_DLQ_URL", "WorkDlqUrl")


class Deployment:
    """The warmgate deployment the commands work on: its table and queues, resolved on use."""

    def __init__(self, args: argparse.Namespace, environ: Mapping[str, str]) -> None:
        self.args = args
        self._environ = environ
        self._stack_outputs: dict[str, str] | None = None

    def setting(self, setting: Setting) -> str:
        """The flag, else the stack's output (only that, when --stack is given), else the env."""
        value: str | None = getattr(self.args, setting.dest, None)
        if value:
            return value
        stack: str | None = getattr(self.args, "stack", None)
        if stack:
            value = self.stack_outputs(stack).get(setting.output)
            if not value:
                raise OpsError(f"stack {stack} has no output {setting.output}")
            return value
        value = self._environ.get(setting.variable)
        if not value:
            raise OpsError(
                f"missing setting {setting.variable}: set it, pass {setting.flag}, "
                "or pass --stack <name>"
            )
        return value

    def stack_outputs(self, stack: str) -> dict[str, str]:
        if self._stack_outputs is None:
            cloudformation: Any = boto3.client("cloudformation")
            try:
                found = cloudformation.describe_stacks(StackName=stack)["Stacks"]
            except ClientError as exc:
                raise OpsError(f"stack {stack}: {exc.response['Error']['Message']}") from None
            outputs = found[0].get("Outputs", []) if found else []
            self._stack_outputs = {o["OutputKey"]: o["OutputValue"] for o in outputs}
        return self._stack_outputs

    def repository(self) -> MailboxRepository:
        table = self.setting(TABLE)  # first: a missing setting is named before any AWS error
        return MailboxRepository(boto3.client("dynamodb"), table)


@dataclass(frozen=True, slots=True)
class SharedOptions:
    """Parent parsers the commands take their common options from."""

    location: argparse.ArgumentParser  # --stack, --table, --queue-url, --dlq-url
    json: argparse.ArgumentParser  # --json
    wait: argparse.ArgumentParser  # --wait (SQS long polling)

    @classmethod
    def build(cls) -> SharedOptions:
        # After the command too; SUPPRESS keeps an absent one from hiding one given before it.
        location = argparse.ArgumentParser(add_help=False)
        add_location_options(location, argparse.SUPPRESS)
        json_flag = argparse.ArgumentParser(add_help=False)
        json_flag.add_argument("--json", action="store_true", help="machine-readable output")
        wait = argparse.ArgumentParser(add_help=False)
        wait.add_argument(
            "--wait",
            type=int,
            default=1,
            choices=range(21),
            metavar="0-20",
            help="long-poll seconds",
        )
        return cls(location, json_flag, wait)

    @property
    def common(self) -> list[argparse.ArgumentParser]:
        return [self.location, self.json]


def add_location_options(parser: argparse.ArgumentParser, default: object) -> None:
    group = parser.add_argument_group("where (default: the functions' environment variables)")
    group.add_argument("--stack", default=default, help="read the rest from this stack's Outputs")
    for setting in (TABLE, WORK_QUEUE, WORK_DLQ):
        group.add_argument(
            setting.flag, dest=setting.dest, default=default, help=f"else {setting.variable}"
        )


def positive(text: str) -> int:
    """argparse type: an integer of at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value
