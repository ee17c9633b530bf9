"""Mailbox events end to end: the local stack's table stream → EventsFunction → the bus → a
rule → an SQS queue, read as an integrator would. Each scene asserts the exact sequence of
events of its mailboxes (every event checked against its schema in schemas/events), also when
PutEvents fails and is retried, and what becomes of a record that cannot be published."""

from __future__ import annotations

import json
import os
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.sandbox import SandboxControl
from devstack.stack import LocalStack
from tests.e2e.conftest import eventually, unique_email
from tests.e2e.test_local_stack import request_consent, wait_for_state
from tests.event_faults import PutEventsFaults
from tests.unit.test_mailbox_events import validator

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]

Event = dict[str, Any]


class EventLog:
    """Every event the stack's subscription received, as an integrator's consumer keeps them:
    de-duplicated on (email, sequence), or (campaign_id, sequence) for an unexpected campaign."""

    def __init__(self, stack: LocalStack) -> None:
        assert stack.events_subscription is not None
        self._subscription = stack.events_subscription
        self.received: list[Event] = []  # as delivered, duplicates included

    def _drain(self) -> None:
        while batch := self._subscription.receive(wait_seconds=0):
            for event in batch:
                errors = [e.message for e in validator(event["detail-type"]).iter_errors(event)]
                assert errors == [], event
            self.received += batch

    def of(self, key: str) -> list[Event]:
        """The de-duplicated events about one mailbox (email) or campaign (id), in arrival order."""
        self._drain()
        seen: set[tuple[str, int]] = set()
        events = []
        for event in self.received:
            detail = event["detail"]
            subject = str(
                detail["campaign_id"]
                if event["detail-type"] == "Unexpected Campaign"
                else detail["email"]
            )
            if subject == key and (subject, detail["sequence"]) not in seen:
                seen.add((subject, detail["sequence"]))
                events.append(event)
        return events

    def wait_for(self, key: str, count: int) -> list[Event]:
        """The events about `key` once there are `count` of them (fails if more ever show)."""
        events = eventually(
            lambda: found if len(found := self.of(key)) >= count else None,
            f"{count} events about {key}",
        )
        assert len(events) == count, steps(events)
        return events


def steps(events: list[Event]) -> list[tuple[str, str | None, str]]:
    return [(e["detail-type"], e["detail"]["previous_state"], e["detail"]["state"]) for e in events]


def sequences(events: list[Event]) -> list[int]:
    return [event["detail"]["sequence"] for event in events]


@pytest.fixture(scope="session")
def event_log(local_stack: LocalStack) -> EventLog:
    return EventLog(local_stack)


@pytest.fixture
def faults(local_stack: LocalStack) -> Iterator[PutEventsFaults]:
    """PutEvents failures injected into EventsFunction's own EventBridge client."""
    module = local_stack.functions["EventsFunction"].module
    assert module is not None
    client = module.publisher._events
    injected = PutEventsFaults(client)
    yield injected
    for hook in ("provide-client-params", "before-call", "after-call"):
        client.meta.events.unregister(f"{hook}.events.PutEvents", getattr(injected, _HOOKS[hook]))


_HOOKS = {"provide-client-params": "_drop", "before-call": "_nothing_left", "after-call": "_answer"}


def warming(api: httpx.Client, control: SandboxControl, name: str) -> tuple[str, int]:
    email = unique_email(name)
    campaign = control.consent(url=request_consent(api, email)["consent_url"])["campaign"]
    wait_for_state(api, email, "warming")
    return email, int(campaign["id"])


ONBOARDED = [
    ("Mailbox Consent Requested", None, "consent_requested"),
    ("Mailbox Warming", "verifying", "warming"),
]


# --- the scenes --------------------------------------------------------------------------------


def test_events_onboard_to_warming(
    api: httpx.Client, control: SandboxControl, event_log: EventLog
) -> None:
    email, campaign_id = warming(api, control, "ada")

    events = event_log.wait_for(email, 2)

    assert steps(events) == ONBOARDED
    assert sequences(events) == [1, 4]  # 2: the link stored, 3: verifying
    assert events[1]["detail"]["campaign_id"] == str(campaign_id)
    assert events[1]["detail"]["request_kind"] == "onboard"


def test_events_unexpected_campaign(
    api: httpx.Client, control: SandboxControl, event_log: EventLog
) -> None:
    requested, signed_in = unique_email("bob"), unique_email("mallory")
    url = request_consent(api, requested)["consent_url"]

    campaign = control.consent(url=url, email=signed_in)["campaign"]

    (unexpected,) = event_log.wait_for(str(campaign["id"]), 1)
    assert unexpected["detail-type"] == "Unexpected Campaign"
    assert (unexpected["detail"]["email"], unexpected["detail"]["state"]) == (
        signed_in,
        "left_pending",
    )
    assert steps(event_log.of(requested)) == ONBOARDED[:1]  # still waiting for its consent


def test_events_reconnect(api: httpx.Client, control: SandboxControl, event_log: EventLog) -> None:
    email, campaign_id = warming(api, control, "lin")
    control.break_connection(campaign_id)
    wait_for_state(api, email, "connection_problem")

    control.consent(url=request_consent(api, email)["consent_url"])  # the reconnect
    wait_for_state(api, email, "warming")

    events = event_log.wait_for(email, 5)
    assert steps(events) == [
        *ONBOARDED,
        ("Mailbox Connection Problem", "warming", "connection_problem"),
        ("Mailbox Consent Requested", "connection_problem", "consent_requested"),
        ("Mailbox Warming", "verifying", "warming"),
    ]
    assert [e["detail"]["request_kind"] for e in events[3:]] == ["reconnect", "reconnect"]
    assert sequences(events) == sorted(set(sequences(events)))


def test_events_expiry(api: httpx.Client, local_stack: LocalStack, event_log: EventLog) -> None:
    email = unique_email("late")
    request_consent(api, email)
    assert local_stack.aws is not None
    local_stack.aws.client("dynamodb").update_item(  # the day has passed (a write: no event)
        TableName=local_stack.resources["MailboxTable"].ref,
        Key={"pk": {"S": f"mailbox#{email}"}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"S": "2020-01-01T00:00:00Z"}},
    )

    local_stack.schedules[0].fire()  # the reconciler

    events = event_log.wait_for(email, 2)
    assert steps(events) == [
        ONBOARDED[0],
        ("Mailbox Expired", "consent_requested", "expired"),
    ]


def test_events_withdraw(api: httpx.Client, event_log: EventLog) -> None:
    email = unique_email("withdrawn")
    request_consent(api, email)

    assert api.delete(f"/mailboxes/{email}").status_code == 200

    events = event_log.wait_for(email, 2)
    assert steps(events) == [
        ONBOARDED[0],
        ("Mailbox Withdrawn", "consent_requested", "withdrawn"),
    ]
    assert events[1]["detail"]["reason"] == "withdrawn by API"


# --- failures ----------------------------------------------------------------------------------


def test_events_failed_put_events_are_retried_without_loss_or_visible_duplicates(
    api: httpx.Client, control: SandboxControl, event_log: EventLog, faults: PutEventsFaults
) -> None:
    name = unique_email("flaky").split("@")[0]
    faults.refuse(times=2, when=lambda entry: name in entry["Detail"])  # both of its events once
    faults.fail_calls(1)  # and one whole request

    email, _ = warming(api, control, name)

    events = event_log.wait_for(email, 2)
    assert steps(events) == ONBOARDED
    assert sequences(events) == [1, 4]
    assert len(faults.refused) == 2  # both were refused once, and published by a retry
    raw = [e for e in event_log.received if e["detail"].get("email") == email]
    assert sequences(raw) == sorted(sequences(raw))  # never out of order, even undeduplicated


def test_events_unreadable_record_goes_to_the_dlq_and_the_stream_goes_on(
    api: httpx.Client, local_stack: LocalStack, event_log: EventLog
) -> None:
    assert local_stack.aws is not None
    sqs = local_stack.aws.client("sqs")
    broken = unique_email("broken")
    local_stack.aws.client("dynamodb").put_item(  # not a record warmgate writes
        TableName=local_stack.resources["MailboxTable"].ref,
        Item={"pk": {"S": f"mailbox#{broken}"}, "email": {"S": broken}},
    )
    after = unique_email("after")
    request_consent(api, after)

    message = eventually(
        lambda: next(
            iter(
                sqs.receive_message(
                    QueueUrl=local_stack.queue_url("EventsDLQ"), WaitTimeSeconds=1
                ).get("Messages", [])
            ),
            None,
        ),
        "the batch given up on in EventsDLQ",
        timeout=30,
    )
    info = json.loads(message["Body"])["DDBStreamBatchInfo"]
    assert info["batchSize"] == 1
    assert info["startSequenceNumber"] == info["endSequenceNumber"]
    assert steps(event_log.wait_for(after, 1)) == ONBOARDED[:1]


# --- the tail ----------------------------------------------------------------------------------


def test_devstack_events_prints_each_event_as_one_line_until_interrupted(
    api: httpx.Client, local_stack: LocalStack
) -> None:
    process = subprocess.Popen(
        [sys.executable, "-m", "devstack", "events", "--follow"],
        cwd=ROOT,
        env={**os.environ, "DEVSTACK_ENDPOINT_URL": local_stack.moto_url},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    assert process.stderr is not None
    try:
        subscribed = process.stderr.readline()  # printed once its rule is in place
        assert subscribed.startswith("following warmgate-MailboxEventBus (rule "), subscribed
        email = unique_email("tail")
        request_consent(api, email)
        lines: queue.Queue[str] = queue.Queue()  # read aside: a readline here could block
        threading.Thread(target=lambda: [lines.put(x) for x in process.stdout], daemon=True).start()  # type: ignore[union-attr]
        line = eventually(lambda: _next_with(lines, email), "the tail to print the event")
        process.send_signal(signal.SIGINT)
        assert process.wait(timeout=10) == 0
    finally:
        if process.poll() is None:
            process.kill()
    assert " EVENT  Mailbox Consent Requested " in line
    assert f"{email}  #1  ∅ → consent_requested  (consent requested)" in line
    assert local_stack.aws is not None
    rules = local_stack.aws.client("events").list_rules(EventBusName="warmgate-MailboxEventBus")
    assert [r["Name"] for r in rules["Rules"]] == ["warmgate-local-events"]  # its own is gone


def _next_with(lines: queue.Queue[str], text: str) -> str | None:
    while not lines.empty():
        if text in (line := lines.get_nowait()):
            return line
    return None
