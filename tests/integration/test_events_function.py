"""EventsFunction against moto: the table's real stream (written by the onboarding and worker
handlers, the sandbox behind them) → the handler → PutEvents → a rule → an SQS queue, with
PutEvents failures injected into the handler's own client."""

from __future__ import annotations

import json
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.config import Config

from devstack.event_bus import BusSubscription
from devstack.stream_poller import ShardReader
from devstack.testkit import LambdaContext, load_function
from tests.event_faults import PutEventsFaults
from tests.integration.harness import TABLE, Stack, read_event
from tests.integration.harness import pending as pending_message
from tests.unit.test_mailbox_events import validator
from warmgate.settings import SettingsError

BUS = "warmgate-test-events"


@dataclass
class Events:
    handler: ModuleType
    stream: ShardReader
    subscription: BusSubscription
    faults: PutEventsFaults

    def invoke(self, records: list[dict[str, Any]]) -> list[str]:
        """One invocation; returns the reported failures' sequence numbers."""
        response = self.handler.lambda_handler({"Records": records}, LambdaContext())
        return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]

    def new_records(self) -> list[dict[str, Any]]:
        records = self.stream.peek(1000)
        self.stream.consume(len(records))
        return records

    def received(self) -> list[dict[str, Any]]:
        """Every event the rule delivered so far, each checked against its schema."""
        events: list[dict[str, Any]] = []
        while batch := self.subscription.receive(wait_seconds=0):
            events += batch
        for event in events:
            errors = [e.message for e in validator(event["detail-type"]).iter_errors(event)]
            assert errors == [], event
        return events


@pytest.fixture
def events(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> Events:
    client = boto3.client("events")
    client.create_event_bus(Name=BUS)
    monkeypatch.setenv("EVENT_BUS_NAME", BUS)
    handler = load_function("events")
    arn = stack.aws.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    subscription = BusSubscription.create(client, stack.sqs, BUS, "integrator-queue")
    return Events(
        handler,
        # moto knows the streams' regional endpoint, not botocore's account-based one.
        ShardReader(
            boto3.client("dynamodbstreams", config=Config(account_id_endpoint_mode="disabled")),
            arn,
            "TRIM_HORIZON",
        ),
        subscription,
        PutEventsFaults(handler.publisher._events),
    )


def moves(events: list[dict[str, Any]]) -> list[tuple[str, str, int]]:
    return [(e["detail-type"], e["detail"]["email"], e["detail"]["sequence"]) for e in events]


def test_events_onboarding_to_warming_publishes_requested_then_warming(
    stack: Stack, events: Events
) -> None:
    campaign_id = stack.consent(stack.expect())
    stack.deliver(pending_message(campaign_id))
    records = events.new_records()

    failures = events.invoke(records)

    assert failures == []
    received = events.received()
    assert moves(received) == [
        ("Mailbox Consent Requested", "ada.lovelace@contoso.com", 1),
        ("Mailbox Warming", "ada.lovelace@contoso.com", 4),  # 2: link stored, 3: verifying
    ]
    assert received[1]["detail"] | {"occurred_at": None} == {
        "email": "ada.lovelace@contoso.com",
        "state": "warming",
        "previous_state": "verifying",
        "reason": "start accepted",
        "campaign_id": campaign_id,
        "requested_by": "user-8841",
        "requested_by_principal": "arn:aws:sts::123456789012:assumed-role/integrator-backend",
        "request_kind": "onboard",
        "parked": False,
        "sequence": 4,
        "occurred_at": None,
    }
    keys = {r["dynamodb"]["Keys"]["pk"]["S"] for r in records}
    assert keys == {"mailbox#ada.lovelace@contoso.com", "budget#mailivery"}  # budget: no event


def test_events_unexpected_campaign_is_published_once(stack: Stack, events: Events) -> None:
    campaign_id = stack.consent(stack.expect(), email="mallory@contoso.com")
    stack.deliver(pending_message(campaign_id, "mallory@contoso.com"))
    stack.deliver(pending_message(campaign_id, "mallory@contoso.com"))  # a duplicate webhook

    events.invoke(events.new_records())

    unexpected = [e for e in events.received() if e["detail-type"] == "Unexpected Campaign"]
    assert [(e["detail"]["campaign_id"], e["detail"]["state"]) for e in unexpected] == [
        (campaign_id, "left_pending")
    ]


def test_events_refused_entry_is_reported_and_published_by_the_retry_without_loss(
    stack: Stack, events: Events
) -> None:
    for name in ("ada", "grace", "lin"):
        stack.expect(f"{name}@contoso.com")
    records = events.new_records()  # per mailbox: requested (an event), link stored (none)
    events.faults.refuse(when=lambda entry: "grace@" in entry["Detail"])

    failures = events.invoke(records)

    grace = next(r for r in records if "grace@" in json.dumps(r["dynamodb"]["Keys"]))
    assert failures == [grace["dynamodb"]["SequenceNumber"]]
    assert [e["detail"]["email"] for e in events.received()] == [
        "ada@contoso.com",
        "lin@contoso.com",  # put in the same request as grace's, before the failure was seen
    ]

    retry = records[records.index(grace) :]  # Lambda retries from the reported record on
    assert events.invoke(retry) == []
    again = events.received()
    assert [e["detail"]["email"] for e in again] == ["grace@contoso.com", "lin@contoso.com"]
    assert len(events.faults.refused) == 1


def test_events_failed_put_events_call_reports_the_first_record(
    stack: Stack, events: Events
) -> None:
    stack.expect()
    records = events.new_records()
    events.faults.fail_calls(1)

    assert events.invoke(records) == [records[0]["dynamodb"]["SequenceNumber"]]
    assert events.received() == []
    assert events.invoke(records) == []
    assert moves(events.received()) == [
        ("Mailbox Consent Requested", "ada.lovelace@contoso.com", 1)
    ]


def test_events_sample_stream_batch_publishes_its_three_events(events: Events) -> None:
    batch = read_event("events-stream-batch.json")

    assert events.invoke(batch["Records"]) == []

    assert [e["detail-type"] for e in events.received()] == [
        "Mailbox Consent Requested",
        "Mailbox Warming",
        "Unexpected Campaign",
    ]


def test_events_function_without_a_bus_fails_its_cold_start_naming_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("EVENT_BUS_NAME", raising=False)

    with pytest.raises(SettingsError, match="EVENT_BUS_NAME"):
        load_function("events")
