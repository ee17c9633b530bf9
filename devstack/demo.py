"""`make demo`: the onboarding flow, scripted over real HTTP against the local stack.

Five mailboxes, each showing one promise of warmgate:
1. expected: requested, the owner consents → campaign.pending webhook → WorkQueue → worker
   re-reads the campaign and starts it → `GET /mailboxes/{email}` says `warming`;
2. paused: the owner consents, Mailivery's webhook is late and the campaign gets paused in the
   meantime (a vendor-side pause sends no webhook) → the worker, re-reading, resumes it;
3. unexpected: the owner signs in at Microsoft with another mailbox than the one requested →
   a campaign nobody asked for → never started: left pending (or deleted with
   `--unexpected-policy delete`), and the requested mailbox still waits for its consent;
4. reconnect: a warming mailbox loses its Microsoft connection → `connection_problem`; the
   integrator asks again (`POST /mailboxes`) → a new consent link bound to the same campaign →
   the owner consents → campaign.updated → the worker resumes it (one resume, no second start);
5. operator pause: someone pauses a warming campaign in Mailivery's dashboard; Mailivery then
   sends campaign.updated and a late duplicate campaign.pending → recorded as `paused`, and
   left alone: nothing is resumed without a request from the integrator.

After each scene it prints the mailbox events that scene put on the bus (one line each).

By default the demo starts its own stack on free ports and stops it at the end (handler logs go
to a file it names). `--api-url … --sandbox-url …` drive a running `make run` instead; the
mailbox names then get a run tag so the demo can be repeated (add `--endpoint-url`, the stack's
moto URL, to see the events too).
"""

from __future__ import annotations

import argparse
import contextlib
import secrets
import sys
import tempfile
import warnings
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import TextIO

import httpx

from devstack.demo_scenes import Demo, EventFeed
from devstack.event_bus import BusSubscription, template_bus
from devstack.local_aws import LocalAws
from devstack.stack import LocalStack, StackError, StackOptions, TemplateError


@contextlib.contextmanager
def _own_stack(
    policy: str, verbose: bool, out: TextIO
) -> Iterator[tuple[str, str, BusSubscription | None]]:
    log_file: TextIO | None = None
    if verbose:
        function_stdout: TextIO = sys.stderr
    else:
        path = Path(tempfile.gettempdir()) / "warmgate-demo.log"
        log_file = function_stdout = path.open("w")
        print(f"handler logs: {path}", file=out)
    options = StackOptions(
        parameter_overrides={"UnexpectedCampaignPolicy": policy},
        function_stdout=function_stdout,
        schedule_seconds=3600,  # the reconciler is not part of this story
    )
    try:
        with LocalStack(options) as stack:
            yield stack.api_url, stack.sandbox_url, stack.events_subscription
    finally:
        if log_file is not None:
            log_file.close()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack demo", description=__doc__)
    parser.add_argument("--api-url", help="a running stack's API (default: start one)")
    parser.add_argument("--sandbox-url", help="that stack's Mailivery sandbox")
    parser.add_argument("--endpoint-url", help="that stack's moto URL: show its events too")
    parser.add_argument(
        "--unexpected-policy",
        choices=("leave", "delete"),
        default="leave",
        help="UnexpectedCampaignPolicy of the stack the demo starts",
    )
    parser.add_argument("--verbose", action="store_true", help="handler logs on stderr")
    parser.add_argument("--timeout", type=float, default=15.0, help="seconds per wait")
    args = parser.parse_args(argv)
    if bool(args.api_url) != bool(args.sandbox_url):
        parser.error("--api-url and --sandbox-url go together")
    out = sys.stdout
    # Lambda-faithful but noise here: a request that adds no metric (GET) makes Powertools warn.
    warnings.filterwarnings("ignore", "No application metrics to publish", UserWarning)
    try:
        with contextlib.ExitStack() as resources:
            subscription: BusSubscription | None = None
            if args.api_url:
                api_url, sandbox_url, tag = (
                    args.api_url,
                    args.sandbox_url,
                    "-" + secrets.token_hex(2),
                )
                if args.endpoint_url:
                    subscription = _tail(args.endpoint_url)
                    resources.callback(subscription.close)
            else:
                api_url, sandbox_url, subscription = resources.enter_context(
                    _own_stack(args.unexpected_policy, args.verbose, out)
                )
                tag = ""
            feed = EventFeed(subscription) if subscription is not None else None
            demo = Demo(api_url, sandbox_url, out, tag=tag, timeout=args.timeout, feed=feed)
            resources.callback(demo.close)
            return 0 if demo.run() else 1
    except (StackError, TemplateError) as exc:
        print(f"devstack demo: {exc}", file=sys.stderr)
        return 2
    except (TimeoutError, RuntimeError, httpx.HTTPError) as exc:
        print(f"devstack demo: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


def _tail(endpoint_url: str) -> BusSubscription:
    """A subscription of the demo's own to a running stack's bus."""
    bus = template_bus()
    if bus is None:
        raise TemplateError("template.yaml has no event bus: --endpoint-url shows nothing")
    aws = LocalAws(endpoint_url)
    return BusSubscription.temporary(aws.client("events"), aws.client("sqs"), bus, "demo")


if __name__ == "__main__":
    raise SystemExit(main())
