"""The local event bus's consumers: an SQS queue subscribed by a rule, as an integrator routes
warmgate's events to its own queue, and the one line each event is printed as.

`make run` subscribes one queue for the whole stack and prints what arrives
(`EventPrinter`); `python -m devstack events` subscribes a queue of its own for as long as it
runs, so any number of tails see every event, as EventBridge fans out to every rule. Each
receive is one long poll of at most RECEIVE_WAIT_SECONDS, so a tail notices Ctrl-C, its
--timeout or the stack stopping within about a second.
"""

from __future__ import annotations

import argparse
import json
import os
import secrets
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TextIO

from devstack.local_aws import EVENT_BUS, LocalAws, local_name
from devstack.template import load_template

ALL_WARMGATE_EVENTS: Mapping[str, Any] = {"source": ["warmgate"]}
RECEIVE_WAIT_SECONDS = 1  # one long poll: how soon a tail notices it should stop


@dataclass
class BusSubscription:
    """A rule on the bus whose target is an SQS queue made for it."""

    events: Any
    sqs: Any
    bus: str
    rule: str
    queue_url: str

    @classmethod
    def create(
        cls,
        events: Any,
        sqs: Any,
        bus: str,
        name: str,
        pattern: Mapping[str, Any] = ALL_WARMGATE_EVENTS,
    ) -> BusSubscription:
        queue_url = sqs.create_queue(QueueName=name)["QueueUrl"]
        queue_arn = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        events.put_rule(Name=name, EventBusName=bus, EventPattern=json.dumps(pattern))
        # The whole event, as EventBridge sends it by default: spelled out because moto's
        # default leaves out `account`.
        whole_event = {"InputPathsMap": {}, "InputTemplate": "<aws.events.event.json>"}
        events.put_targets(
            Rule=name,
            EventBusName=bus,
            Targets=[{"Id": "queue", "Arn": queue_arn, "InputTransformer": whole_event}],
        )
        return cls(events, sqs, bus, name, queue_url)

    @classmethod
    def temporary(cls, events: Any, sqs: Any, bus: str, purpose: str) -> BusSubscription:
        return cls.create(events, sqs, bus, f"warmgate-local-{purpose}-{secrets.token_hex(3)}")

    def receive(self, wait_seconds: int = RECEIVE_WAIT_SECONDS) -> list[dict[str, Any]]:
        """The events that arrived (up to 10), removed from the queue, oldest first."""
        messages = self.sqs.receive_message(
            QueueUrl=self.queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=wait_seconds
        ).get("Messages", [])
        if messages:
            self.sqs.delete_message_batch(
                QueueUrl=self.queue_url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"]}
                    for n, m in enumerate(messages)
                ],
            )
        return [json.loads(message["Body"]) for message in messages]

    def close(self) -> None:
        self.events.remove_targets(Rule=self.rule, EventBusName=self.bus, Ids=["queue"])
        self.events.delete_rule(Name=self.rule, EventBusName=self.bus)
        self.sqs.delete_queue(QueueUrl=self.queue_url)


def event_line(event: Mapping[str, Any]) -> str:
    """One event as one line: time, detail-type, whose, sequence, the move and why."""
    detail = event.get("detail") or {}
    clock = str(event.get("time", ""))[11:19] or datetime.now().strftime("%H:%M:%S")
    subject = detail.get("email") or "-"
    if "campaign_id" in detail and "requested_by" not in detail:  # Unexpected Campaign
        subject = f"campaign {detail['campaign_id']} ({subject})"
    move = f"{detail.get('previous_state') or '∅'} → {detail.get('state')}"
    return (
        f"{clock} EVENT  {event.get('detail-type', '?'):<27} {subject}  #{detail.get('sequence')}"
        f"  {move}  ({detail.get('reason', '')})"
    )


class EventPrinter:
    """Prints each event of a subscription as one line until `stopping` is set."""

    def __init__(
        self,
        subscription: BusSubscription,
        stopping: threading.Event,
        out: TextIO,
        *,
        line: Callable[[Mapping[str, Any]], str] = event_line,
    ) -> None:
        self._subscription = subscription
        self._stopping = stopping
        self._out = out
        self._line = line
        self._thread = threading.Thread(target=self._run, name="devstack-events", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            try:
                events = self._subscription.receive()
            except Exception:  # moto going away at shutdown
                if self._stopping.wait(1.0):
                    return
                continue
            for event in events:
                print(self._line(event), file=self._out, flush=True)


# ------------------------------------------------------------------ python -m devstack events


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if not args.endpoint_url:
        parser.error("--endpoint-url (or DEVSTACK_ENDPOINT_URL) is required: `make run` prints it")
    aws = LocalAws(args.endpoint_url)
    bus = template_bus()
    if bus is None:
        print("devstack events: template.yaml has no event bus", file=sys.stderr)
        return 2
    try:
        subscription = BusSubscription.temporary(
            aws.client("events"), aws.client("sqs"), bus, "tail"
        )
    except Exception as exc:
        print(
            f"devstack events: no local stack at {args.endpoint_url} ({type(exc).__name__}: "
            f"{exc}); start one with `make run`",
            file=sys.stderr,
        )
        return 2
    print(f"following {bus} (rule {subscription.rule}); Ctrl-C stops", file=sys.stderr, flush=True)
    try:
        _print_events(subscription, args)
    except KeyboardInterrupt:
        pass
    finally:
        subscription.close()
    return 0


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m devstack events",
        description="Print the warmgate events on a running local stack's bus, one line each, "
        "from now on (a rule and a queue of its own, removed at the end).",
    )
    parser.add_argument(
        "--endpoint-url",
        default=os.environ.get("DEVSTACK_ENDPOINT_URL"),
        help="the running stack's moto URL, as `make run` prints it "
        "(default: $DEVSTACK_ENDPOINT_URL)",
    )
    parser.add_argument("-f", "--follow", action="store_true", help="until Ctrl-C")
    parser.add_argument(
        "--timeout",
        type=float,
        default=10.0,
        help="without --follow: stop after this many seconds (default 10)",
    )
    parser.add_argument("--count", type=int, help="stop after this many events")
    parser.add_argument("--json", action="store_true", help="each event as its whole JSON")
    return parser


def template_bus() -> str | None:
    """The local name of the template's event bus, None when it has none."""
    return next(
        (
            local_name(logical_id)
            for logical_id, definition in load_template()["Resources"].items()
            if definition.get("Type") == EVENT_BUS
        ),
        None,
    )


def _print_events(subscription: BusSubscription, args: argparse.Namespace) -> None:
    """Print until the timeout (none with --follow) or until --count events are printed."""
    deadline = None if args.follow else time.monotonic() + args.timeout
    printed = 0
    while deadline is None or time.monotonic() < deadline:
        for event in subscription.receive():
            print(json.dumps(event) if args.json else event_line(event), flush=True)
            printed += 1
            if args.count is not None and printed >= args.count:
                return
