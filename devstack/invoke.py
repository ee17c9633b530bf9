"""`python -m devstack invoke <LogicalId> -e events/<file>.json [--env-vars env.json]`.

The arguments and output of `sam local invoke`, without Docker: the handler's response as JSON
on stdout; the function's logs and START/END/REPORT lines on stderr; an unhandled exception as
Lambda's `{"errorMessage", "errorType", "requestId", "stackTrace"}` on stdout. One difference:
the exit status is 1 after an unhandled exception (sam local exits 0), so scripts can tell.

Where AWS and Mailivery are:
- against a running stack when `--endpoint-url` (its moto URL) and `--sandbox-url` are given, or
  DEVSTACK_ENDPOINT_URL / DEVSTACK_SANDBOX_URL are set: the invocation sees that stack's table,
  queues and sandbox (`make run` prints the exact command);
- otherwise standalone: a fresh moto with the template's table, queues and secrets, and a
  fresh sandbox, both started for this one invocation and gone afterwards.
Only the invoked function's module is imported.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import time
import traceback
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from devstack.sandbox import MailiverySandbox
from devstack.stack import (
    LOCAL_WEBHOOK_TOKEN,
    SANDBOX_API_KEY,
    WEBHOOK_TOKEN_SECRET,
    FunctionFactory,
    LocalAws,
    LocalFunction,
    MotoEndpoint,
    StackError,
    TemplateError,
    function_specs,
    load_env_vars,
    parse_parameter_overrides,
    resolve_parameters,
)
from devstack.template import load_template

log = logging.getLogger("devstack")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack invoke",
        description="Invoke one function of template.yaml locally, like `sam local invoke`.",
    )
    parser.add_argument("function", nargs="?", help="logical id, e.g. WebhookFunction")
    parser.add_argument("-e", "--event", help="event JSON file ('-' reads stdin); default {}")
    parser.add_argument("--no-event", action="store_true", help="invoke with {} (the default)")
    parser.add_argument("-n", "--env-vars", type=Path, help="env.json: {LogicalId: {VAR: value}}")
    parser.add_argument("--parameter-overrides", nargs="+", metavar="KEY=VALUE")
    parser.add_argument(
        "--endpoint-url",
        default=os.environ.get("DEVSTACK_ENDPOINT_URL"),
        help="a running stack's moto URL (default: $DEVSTACK_ENDPOINT_URL, else standalone)",
    )
    parser.add_argument(
        "--sandbox-url",
        default=os.environ.get("DEVSTACK_SANDBOX_URL"),
        help="that stack's Mailivery sandbox URL (default: $DEVSTACK_SANDBOX_URL)",
    )
    args = parser.parse_args(argv)
    _log_to_stderr()
    try:
        event = _read_event(None if args.no_event else args.event)
        template = load_template()
        specs = function_specs(template)
        logical_id = _chosen_function(args.function, sorted(specs))
        parameters = resolve_parameters(
            template, parse_parameter_overrides(args.parameter_overrides)
        )
        overrides = load_env_vars(args.env_vars, specs) if args.env_vars else None
        if args.endpoint_url and not args.sandbox_url:
            raise StackError("--endpoint-url needs --sandbox-url too (`make run` prints both)")
        with _local_services(template, parameters, args.endpoint_url, args.sandbox_url) as (
            aws,
            resources,
            sandbox_url,
        ):
            factory = FunctionFactory(
                template,
                parameters,
                resources,
                endpoint_url=aws.endpoint_url,
                mailivery_base_url=sandbox_url.rstrip("/") + "/api/v1",
                env_overrides=overrides,
                stdout=sys.stderr,
            )
            function = factory.function(specs[logical_id])
            return _invoke(function, event)
    except (StackError, TemplateError, ValueError) as exc:
        print(f"devstack invoke: {exc}", file=sys.stderr)
        return 2


def _chosen_function(given: str | None, available: list[str]) -> str:
    if given is None:
        if len(available) == 1:
            return available[0]
        raise StackError(f"name the function to invoke: one of {', '.join(available)}")
    if given not in available:
        raise StackError(f"no function {given!r} in template.yaml: one of {', '.join(available)}")
    return given


def _read_event(source: str | None) -> Any:
    if source is None:
        return {}
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except OSError as exc:
        raise StackError(f"--event {source}: {exc.strerror}") from exc
    try:
        return json.loads(text)
    except ValueError as exc:
        raise StackError(f"--event {source}: not JSON ({exc})") from exc


@contextlib.contextmanager
def _local_services(
    template: dict[str, Any],
    parameters: dict[str, str],
    endpoint_url: str | None,
    sandbox_url: str | None,
) -> Iterator[tuple[LocalAws, dict[str, Any], str]]:
    """(local AWS, its resources, sandbox URL): a running stack's, or fresh ones for this call."""
    if endpoint_url and sandbox_url:
        aws = LocalAws(endpoint_url)
        yield aws, dict(aws.attach(template, parameters)), sandbox_url
        return
    moto = MotoEndpoint().start()
    sandbox: MailiverySandbox | None = None
    try:
        aws = LocalAws(moto.url)
        resources = aws.provision(
            template, parameters, secret_values={WEBHOOK_TOKEN_SECRET: LOCAL_WEBHOOK_TOKEN}
        )
        sandbox = MailiverySandbox(api_keys=(SANDBOX_API_KEY,)).start()
        log.info("standalone: moto %s, sandbox %s", moto.url, sandbox.url)
        yield aws, dict(resources), sandbox.url
    finally:
        if sandbox is not None:
            sandbox.stop()
        moto.stop()


def _invoke(function: LocalFunction, event: Any) -> int:
    context = function.context()
    request_id = context.aws_request_id
    print(f"START RequestId: {request_id} Version: $LATEST", file=sys.stderr, flush=True)
    started = time.monotonic()
    status = 0
    try:
        result = function.invoke(event, context)
    except Exception as exc:
        stack_trace = traceback.format_exception(exc)
        traceback.print_exception(exc, file=sys.stderr)
        result = {
            "errorMessage": str(exc),
            "errorType": type(exc).__name__,
            "requestId": request_id,
            "stackTrace": [line.rstrip("\n") for line in stack_trace[1:-1]],
        }
        status = 1
    duration_ms = (time.monotonic() - started) * 1000
    print(f"END RequestId: {request_id}", file=sys.stderr)
    print(
        f"REPORT RequestId: {request_id}\tDuration: {duration_ms:.2f} ms\t"
        f"Memory Size: {function.spec.memory_mb} MB",
        file=sys.stderr,
        flush=True,
    )
    print(json.dumps(result, default=str), flush=True)
    return status


def _log_to_stderr() -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s devstack %(message)s", "%H:%M:%S"))
    log.addHandler(handler)
    log.setLevel(logging.INFO)
    log.propagate = False


if __name__ == "__main__":
    raise SystemExit(main())
