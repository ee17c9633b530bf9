"""`python -m devstack [run|invoke|events|demo|sandbox] …`; `run` is the default.

run      the local stack (`make run`): API, webhook, worker, events, schedule, moto, sandbox
invoke   one function, like `sam local invoke <LogicalId> -e events/<file>.json`
events   print a running stack's mailbox events, one line each (`--follow` until Ctrl-C)
demo     the scripted onboarding scenario (`make demo`)
sandbox  only the Mailivery sandbox (python -m devstack.sandbox)
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import shlex
import signal
import sys
import threading
import warnings
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from types import FrameType
from typing import Final, TextIO, cast

from devstack.stack import (
    ACCOUNT_ID,
    LocalStack,
    StackError,
    StackOptions,
    TemplateError,
    parse_parameter_overrides,
)

COMMANDS: Final = ("run", "invoke", "events", "demo", "sandbox")
log = logging.getLogger("devstack")


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args and args[0] in ("-h", "--help") and len(args) == 1:
        print(__doc__)
        return 0
    command = args.pop(0) if args and args[0] in COMMANDS else "run"
    if args and not args[0].startswith("-") and command == "run":
        print(
            f"devstack: unknown command {args[0]!r}; one of {', '.join(COMMANDS)}", file=sys.stderr
        )
        return 2
    if command == "invoke":
        from devstack.invoke import main as invoke

        return invoke(args)
    if command == "events":
        from devstack.event_bus import main as events

        return events(args)
    if command == "demo":
        from devstack.demo import main as demo

        return demo(args)
    if command == "sandbox":
        from devstack.sandbox.cli import main as sandbox

        return sandbox(args)
    return run(args)


# --------------------------------------------------------------------------- run


def run(argv: Sequence[str]) -> int:
    args = _run_parser().parse_args(argv)
    # Lambda-faithful but confusing here: a request that adds no metric makes Powertools warn.
    warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)
    compact = args.log_format == "compact" or (args.log_format == "auto" and sys.stdout.isatty())
    configure_devstack_logging(sys.stdout if compact else sys.stderr, compact=compact)

    try:
        options = StackOptions(
            api_port=args.port,
            sandbox_port=args.sandbox_port,
            moto_port=args.moto_port,
            parameter_overrides=parse_parameter_overrides(args.parameter_overrides),
            env_vars_file=args.env_vars,
            visibility_timeout_seconds=args.visibility_timeout,
            schedule_seconds=args.schedule_seconds,
            # write/flush/isatty are all that redirect_stdout and logging use of it.
            function_stdout=cast(TextIO, CompactLogStream(sys.stdout)) if compact else None,
            event_lines=sys.stdout,  # each event on the bus, one line
        )
        stack = LocalStack(options).start()
    except (StackError, TemplateError) as exc:
        print(f"devstack: {exc}", file=sys.stderr)
        return 2

    stopping = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    try:
        print(banner(stack), flush=True)
        stopping.wait()
    finally:
        print("\nstopping…", file=sys.stderr, flush=True)
        stack.stop()
    return 0


def _run_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack run",
        description="Start warmgate's local stack from template.yaml (no Docker) until Ctrl-C.",
    )
    parser.add_argument("--port", type=int, default=3000, help="API port (0 = any free port)")
    parser.add_argument("--sandbox-port", type=int, default=8700, help="Mailivery sandbox port")
    parser.add_argument("--moto-port", type=int, default=0, help="moto port (default: free)")
    parser.add_argument("-n", "--env-vars", type=Path, help="sam local's env.json format")
    parser.add_argument(
        "--parameter-overrides",
        nargs="+",
        metavar="KEY=VALUE",
        help="template parameters, e.g. UnexpectedCampaignPolicy=delete",
    )
    parser.add_argument(
        "--schedule-seconds",
        type=float,
        default=60.0,
        help="run each Schedule/ScheduleV2 function this often (default 60)",
    )
    parser.add_argument(
        "--visibility-timeout",
        type=int,
        metavar="SECONDS",
        help="local-only: every queue's VisibilityTimeout (WorkQueue's is 1100 s; 2 makes a "
        "failing message reach WorkDLQ in ~10 s)",
    )
    parser.add_argument(
        "--log-format",
        choices=("auto", "compact", "json"),
        default="auto",
        help="handler logs as one short line (compact) or Powertools JSON; auto = compact on "
        "a terminal",
    )
    return parser


def banner(stack: LocalStack) -> str:
    api, sandbox = stack.api_url, stack.sandbox_url
    email = "ada@contoso.com"
    body = json.dumps({"email": email, "first_name": "Ada", "requested_by": "you"})
    extract = "python3 -c 'import json,sys; print(json.load(sys.stdin)[\"consent_url\"])'"
    lines = ["warmgate local stack (template.yaml, no Docker)", ""]
    lines += [f"  {what:<11} {where}" for what, where in stack.describe()]
    lines += [
        "",
        f"  AWS_IAM routes run as arn:aws:iam::{ACCOUNT_ID}:user/local-developer "
        "(no signature needed).",
        "",
        "Try (bash):",
        "  # 1. the integrator's backend asks for a mailbox; the answer carries the consent URL",
        f"  URL=$(curl -s -X POST {api}/mailboxes -H 'content-type: application/json' \\",
        f"        -d {shlex.quote(body)} | {extract}); echo $URL",
        "  # 2. the mailbox owner consents at Microsoft (played by the sandbox)",
        f"  curl -s -X POST {sandbox}/_sandbox/consent -H 'content-type: application/json' "
        '-d "{\\"url\\": \\"$URL\\"}"',
        "  # 3. webhook → WorkQueue → worker: a moment later the mailbox is warming",
        f"  curl -s {api}/mailboxes/{email}",
        "",
        "  # one function, like sam local invoke, against this stack:",
        "  python -m devstack invoke OnboardingFunction -e events/onboarding-get-mailbox.json "
        f"--endpoint-url {stack.moto_url} --sandbox-url {sandbox}",
        "  # the mailbox events (printed here too, as `EVENT` lines), from another terminal:",
        f"  python -m devstack events --follow --endpoint-url {stack.moto_url}",
        "  # your mailboxes, a page at a time:",
        f"  curl -s '{api}/mailboxes?limit=10'",
        "  # the scripted scenario against this stack:",
        f"  make demo DEMO_ARGS='--api-url {api} --sandbox-url {sandbox}'",
        "",
        "Ctrl-C stops everything.",
    ]
    return "\n".join(lines)


# --------------------------------------------------------------------------- terminal logs


class CompactLogStream(io.TextIOBase):
    """Shows Powertools' JSON log lines and EMF metric blobs as one short line each, for a
    terminal; anything that is not such JSON passes through unchanged."""

    _STANDARD_KEYS: Final = frozenset(
        {
            "level",
            "location",
            "message",
            "timestamp",
            "service",
            "cold_start",
            "function_name",
            "function_memory_size",
            "function_arn",
            "function_request_id",
            "xray_trace_id",
            "correlation_id",
            "sampling_rate",
            "exception",
            "exception_name",
            "stack_trace",
        }
    )

    def __init__(self, target: TextIO) -> None:
        super().__init__()
        self._target = target
        self._buffer = ""
        self._lock = threading.Lock()

    def writable(self) -> bool:
        return True

    def isatty(self) -> bool:
        return self._target.isatty()

    def write(self, text: str) -> int:
        with self._lock:
            self._buffer += text
            *lines, self._buffer = self._buffer.split("\n")
            for line in lines:
                self._target.write(self.format_line(line) + "\n")
            if lines:
                self._target.flush()
        return len(text)

    def flush(self) -> None:
        with self._lock:
            self._target.flush()

    @classmethod
    def format_line(cls, line: str) -> str:
        try:
            record = json.loads(line)
        except ValueError:
            return line
        if not isinstance(record, dict):
            return line
        if "_aws" in record:  # an EMF blob from Metrics.log_metrics
            names = [
                metric["Name"]
                for directive in record["_aws"].get("CloudWatchMetrics", [])
                for metric in directive.get("Metrics", [])
            ]
            values = " ".join(f"{name}={_metric_value(record.get(name))}" for name in names)
            return f"{_clock()} METRIC {'':<18} {values}"
        if "level" not in record or "message" not in record:
            return line
        timestamp = str(record.get("timestamp", ""))
        clock = timestamp[11:19] if len(timestamp) >= 19 else _clock()
        extras = " ".join(
            f"{key}={value if isinstance(value, str) else json.dumps(value, default=str)}"
            for key, value in record.items()
            if key not in cls._STANDARD_KEYS
        )
        text = (
            f"{clock} {record['level']:<6} {record.get('function_name', '-'):<18} "
            f"{record['message']}"
        )
        if extras:
            text += f"  {extras}"
        if record.get("exception"):
            text += "\n    " + str(record["exception"]).replace("\n", "\n    ")
        return text


def _metric_value(value: object) -> str:
    # EMF holds each metric as a list of values; one whole number reads better as such.
    if isinstance(value, list) and len(value) == 1:
        value = value[0]
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    return str(value)


def _clock() -> str:
    return datetime.now().strftime("%H:%M:%S")


def configure_devstack_logging(stream: TextIO, *, compact: bool) -> None:
    """The stack's own lines (requests, batches, schedules); in compact mode shaped like the
    handler lines and on the same stream, so they interleave in order."""
    pattern = (
        "%(asctime)s %(levelname)-6s devstack           %(message)s"
        if compact
        else "%(asctime)s %(levelname)s devstack %(message)s"
    )
    handler = logging.StreamHandler(stream)
    handler.setFormatter(logging.Formatter(pattern, datefmt="%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


if __name__ == "__main__":
    raise SystemExit(main())
