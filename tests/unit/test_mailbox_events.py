"""The mailbox events: which table writes are events (every row of the state machine's table),
what they carry, the JSON Schemas in schemas/events, and how a batch is put on the bus."""

from __future__ import annotations

import json
import uuid
from dataclasses import replace
from datetime import timedelta
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from jsonschema import Draft202012Validator
from referencing import Registry, Resource

from tests.stream_records import (
    T0,
    ledger_entry,
    ledger_write,
    mailbox_write,
    new_mailbox,
    saved,
    stream_record,
)
from warmgate.domain.ledger import LedgerState
from warmgate.domain.mailboxes import TRANSITIONS, ExpectedMailbox, MailboxEvent, MailboxState
from warmgate.services.mailbox_events import (
    DETAIL_TYPES,
    MAILBOX_DETAIL_TYPES,
    MAX_ENTRIES_PER_PUT,
    UNEXPECTED_CAMPAIGN,
    MailboxEventPublisher,
    MalformedStreamRecord,
    WarmgateEvent,
    event_for,
)

ROOT = Path(__file__).resolve().parents[2]
SCHEMAS = ROOT / "schemas" / "events"
EVENTS = ROOT / "events"
BUS = "arn:aws:events:eu-west-1:123456789012:event-bus/warmgate-mailbox-events"
S = MailboxState


def moved(record: ExpectedMailbox, to: MailboxState, event: MailboxEvent) -> ExpectedMailbox:
    """`record` after one transition, as stored (version + 1)."""
    at = T0 + timedelta(minutes=record.version)
    return saved(record.transition(to, event=event, now=at, reason=f"{event.value} seen"), record)


def in_state(state: MailboxState | None) -> ExpectedMailbox:
    """A stored mailbox in `state` (a consent_requested record forced there, version 3)."""
    record = new_mailbox()
    return replace(record, state=state, version=3) if state is not None else record


# --- which writes are events ------------------------------------------------------------------


def test_detail_types_are_the_published_states_and_unexpected_campaign() -> None:
    assert DETAIL_TYPES == (
        "Mailbox Consent Requested",
        "Mailbox Resume Requested",
        "Mailbox Warming",
        "Mailbox Paused",
        "Mailbox Connection Problem",
        "Mailbox Start Failed",
        "Mailbox Rejected",
        "Mailbox Request Failed",
        "Mailbox Expired",
        "Mailbox Withdrawn",
        "Mailbox Deleted",
        "Unexpected Campaign",
    )
    assert S.VERIFYING not in MAILBOX_DETAIL_TYPES


def test_event_for_new_mailbox_is_consent_requested_without_previous_state() -> None:
    record = new_mailbox()

    event = event_for(mailbox_write(record))

    assert event is not None
    assert event.detail_type == "Mailbox Consent Requested"
    assert event.detail == {
        "email": "ada@contoso.com",
        "state": "consent_requested",
        "previous_state": None,
        "reason": "consent requested",
        "campaign_id": None,
        "requested_by": "user-42",
        "requested_by_principal": "arn:aws:iam::123456789012:user/integrator",
        "request_kind": "onboard",
        "parked": False,
        "sequence": 1,
        "occurred_at": "2026-11-26T09:00:00Z",
    }
    assert (event.item_key, event.occurred_at) == ("mailbox#ada@contoso.com", record.updated_at)


MOVES = sorted(
    ((frm, event, to) for frm, event, to in TRANSITIONS if frm is not None and frm is not to),
    key=lambda row: (row[0].value, row[1].value, row[2].value),
)


@pytest.mark.parametrize(
    ("source", "cause", "target"), MOVES, ids=[f"{f}-{e}-{t}" for f, e, t in MOVES]
)
def test_event_for_every_state_change_of_the_table_names_the_new_state(
    source: MailboxState, cause: MailboxEvent, target: MailboxState
) -> None:
    before = in_state(source)
    after = moved(before, target, cause)

    event = event_for(mailbox_write(after, before))

    if target is S.VERIFYING:
        assert event is None
        return
    assert event is not None
    assert event.detail_type == MAILBOX_DETAIL_TYPES[target]
    assert (event.detail["state"], event.detail["previous_state"]) == (target, source)
    assert event.detail["reason"] == f"{cause.value} seen"
    assert event.detail["sequence"] == before.version + 1


@pytest.mark.parametrize(
    "change",
    [
        lambda r: replace(r, consent_url="https://login.microsoftonline.com/x", version=2),
        lambda r: moved(r, S.CONSENT_REQUESTED, MailboxEvent.REQUESTED),  # requested again
    ],
    ids=["consent-link-stored", "requested-again"],
)
def test_event_for_write_that_keeps_the_state_is_none(change: Any) -> None:
    record = new_mailbox()

    assert event_for(mailbox_write(change(record), record)) is None


def test_event_for_outcome_unknown_keeps_verifying_and_is_none() -> None:
    claimed = in_state(S.VERIFYING)
    unknown = moved(claimed, S.VERIFYING, MailboxEvent.OUTCOME_UNKNOWN)

    assert event_for(mailbox_write(unknown, claimed)) is None


def test_event_for_parked_start_failure_says_parked() -> None:
    claimed = in_state(S.VERIFYING)
    parked = replace(moved(claimed, S.START_FAILED, MailboxEvent.REFUSED), parked=True)

    event = event_for(mailbox_write(parked, claimed))

    assert event is not None
    assert (event.detail_type, event.detail["parked"]) == ("Mailbox Start Failed", True)
    assert event.detail["previous_state"] == "verifying"


@pytest.mark.parametrize(
    ("old", "new", "published"),
    [
        (None, LedgerState.LEFT_PENDING, True),
        (None, LedgerState.UNEXPECTED_ACTIVE, True),
        (LedgerState.DELETING, LedgerState.DELETED, True),  # deleted by policy
        (None, LedgerState.DELETING, False),  # a claim, like verifying
        (None, LedgerState.DELETED, False),  # campaign.deleted seen: the mailbox's event
        (LedgerState.LEFT_PENDING, LedgerState.ADOPTED, False),  # a request took it
        (LedgerState.LEFT_PENDING, LedgerState.LEFT_PENDING, False),
    ],
)
def test_event_for_ledger_entry_announces_settled_unexpected_campaigns_only(
    old: LedgerState | None, new: LedgerState, published: bool
) -> None:
    before = ledger_entry(old) if old else None
    after = ledger_entry(new, version=2 if old else 1)

    event = event_for(ledger_write(after, before))

    if not published:
        assert event is None
        return
    assert event is not None
    assert event.detail_type == UNEXPECTED_CAMPAIGN
    assert event.detail == {
        "campaign_id": "4712",
        "email": "mallory@contoso.com",
        "state": new.value,
        "previous_state": old.value if old else None,
        "reason": "no expectation for this mailbox; policy leave (pending)",
        "first_seen_at": "2026-11-26T09:00:00Z",
        "sequence": after.version,
        "occurred_at": "2026-11-26T09:00:00Z",
    }
    assert event.item_key == "campaign#4712"


@pytest.mark.parametrize(
    "image",
    [
        {"pk": {"S": "budget#mailivery"}, "tokens": {"N": "3"}},
        {"pk": {"S": "reconciler#cursor"}, "next_page": {"N": "2"}, "version": {"N": "7"}},
    ],
    ids=["budget", "reconciler-cursor"],
)
def test_event_for_other_items_is_none(image: dict[str, Any]) -> None:
    assert event_for(stream_record(image, image)) is None


def test_event_for_removal_is_none() -> None:
    from warmgate.adapters.mailbox_items import mailbox_to_item

    assert event_for(stream_record(None, mailbox_to_item(new_mailbox()))) is None


def test_event_for_unreadable_mailbox_image_raises_naming_the_item() -> None:
    record = mailbox_write(new_mailbox())
    del record["dynamodb"]["NewImage"]["state"]

    with pytest.raises(MalformedStreamRecord, match=r"mailbox#ada@contoso.com: KeyError"):
        event_for(record)


def test_event_for_the_sample_stream_batch() -> None:
    batch = json.loads((EVENTS / "events-stream-batch.json").read_text())

    events = [event_for(record) for record in batch["Records"]]

    assert [e.detail_type if e else None for e in events] == [
        "Mailbox Consent Requested",
        None,  # the consent link stored
        None,  # verifying
        None,  # the request budget
        "Mailbox Warming",
        "Unexpected Campaign",
    ]


# --- the schemas ------------------------------------------------------------------------------


@cache
def registry() -> Registry:
    resources = [
        Resource.from_contents(json.loads(path.read_text())) for path in SCHEMAS.glob("*.json")
    ]
    return Registry().with_resources((r.id(), r) for r in resources if r.id())  # type: ignore[misc]


def schema_file(detail_type: str) -> Path:
    return SCHEMAS / (detail_type.lower().replace(" ", "-") + ".json")


def validator(detail_type: str) -> Draft202012Validator:
    schema = json.loads(schema_file(detail_type).read_text())
    return Draft202012Validator(
        schema, registry=registry(), format_checker=Draft202012Validator.FORMAT_CHECKER
    )


def delivered(event: WarmgateEvent) -> dict[str, Any]:
    """The event as EventBridge delivers it to a target."""
    entry = event.entry(BUS)
    return {
        "version": "0",
        "id": str(uuid.uuid4()),
        "detail-type": entry["DetailType"],
        "source": entry["Source"],
        "account": "123456789012",
        "time": event.occurred_at,
        "region": "eu-west-1",
        "resources": [],
        "detail": json.loads(entry["Detail"]),
    }


def test_schemas_one_file_per_detail_type_and_each_file_is_a_valid_schema() -> None:
    files = {path.name for path in SCHEMAS.glob("*.json")} - {"mailbox-event.json"}

    assert files == {schema_file(t).name for t in DETAIL_TYPES}
    for path in SCHEMAS.glob("*.json"):
        Draft202012Validator.check_schema(json.loads(path.read_text()))


def produced_events() -> list[WarmgateEvent]:
    """One event of every kind the mapping produces."""
    events = []
    for source, cause, target in MOVES:
        before = in_state(source)
        event = event_for(mailbox_write(moved(before, target, cause), before))
        if event is not None:
            events.append(event)
    new = event_for(mailbox_write(new_mailbox()))
    unexpected = event_for(ledger_write(ledger_entry(LedgerState.LEFT_PENDING)))
    assert new is not None
    assert unexpected is not None
    return [new, unexpected, *events]


def test_schemas_accept_every_event_produced_and_every_detail_type_is_produced() -> None:
    events = produced_events()

    for event in events:
        errors = [e.message for e in validator(event.detail_type).iter_errors(delivered(event))]
        assert errors == [], event.detail_type
    assert {event.detail_type for event in events} == set(DETAIL_TYPES)


@pytest.mark.parametrize(
    ("detail_type", "change"),
    [
        ("Mailbox Paused", {"state": "warming"}),  # another detail-type's state
        ("Mailbox Warming", {"sequence": "4"}),
        ("Mailbox Warming", {"surprise": 1}),  # an undocumented field
        ("Unexpected Campaign", {"state": "deleting"}),
    ],
)
def test_schemas_refuse_an_event_that_departs_from_them(
    detail_type: str, change: dict[str, Any]
) -> None:
    event = next(e for e in produced_events() if e.detail_type == detail_type)
    tampered = delivered(event)
    tampered["detail"] |= change

    assert list(validator(detail_type).iter_errors(tampered))


# --- publishing --------------------------------------------------------------------------------


class FakeEventBridge:
    """put_events that accepts everything, except the entries (or calls) told to fail."""

    def __init__(
        self,
        *,
        fail_entries: frozenset[int] = frozenset(),
        fail_calls: frozenset[int] = frozenset(),
    ) -> None:
        self.calls: list[list[dict[str, Any]]] = []
        self._fail_entries = fail_entries  # by position over every entry ever put
        self._fail_calls = fail_calls
        self._entries = 0

    def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
        self.calls.append(Entries)
        if len(self.calls) - 1 in self._fail_calls:
            raise ConnectionError("EventBridge unreachable")
        results = []
        for _ in Entries:
            failed = self._entries in self._fail_entries
            self._entries += 1
            results.append(
                {"ErrorCode": "InternalFailure", "ErrorMessage": "try again"}
                if failed
                else {"EventId": str(uuid.uuid4())}
            )
        return {"FailedEntryCount": sum("ErrorCode" in r for r in results), "Entries": results}

    def mailboxes_put(self) -> list[str]:
        return [json.loads(e["Detail"])["email"] for call in self.calls for e in call]


def onboarded(n: int) -> list[dict[str, Any]]:
    """n new mailboxes: n stream records, each an event."""
    return [mailbox_write(new_mailbox(f"m{i:02}@contoso.com")) for i in range(n)]


def lives(email: str) -> list[dict[str, Any]]:
    """Three events of one mailbox: requested, resume requested, deleted (sequence 1, 2, 3)."""
    first = new_mailbox(email)
    second = moved(
        replace(first, state=S.WARMING), S.RESUME_REQUESTED, MailboxEvent.RESUME_REQUESTED
    )
    third = moved(second, S.DELETED, MailboxEvent.CAMPAIGN_DELETED)
    return [mailbox_write(first), mailbox_write(second, first), mailbox_write(third, second)]


def test_publish_puts_at_most_ten_entries_per_request_in_stream_order() -> None:
    events = FakeEventBridge()
    records = onboarded(23)

    outcome = MailboxEventPublisher(events, BUS).publish(records)  # type: ignore[arg-type]

    assert [len(call) for call in events.calls] == [10, 10, 3]
    assert events.mailboxes_put() == [f"m{i:02}@contoso.com" for i in range(23)]
    assert (outcome.published, outcome.skipped, outcome.batch_item_failures) == (23, 0, [])
    assert all(e["EventBusName"] == BUS and e["Source"] == "warmgate" for e in events.calls[0])
    assert MAX_ENTRIES_PER_PUT == 10


def test_publish_puts_one_event_per_mailbox_per_request() -> None:
    events = FakeEventBridge()
    records = [*lives("ada@contoso.com"), *onboarded(2)]

    MailboxEventPublisher(events, BUS).publish(records)  # type: ignore[arg-type]

    assert [[json.loads(e["Detail"])["sequence"] for e in call] for call in events.calls] == [
        [1],
        [2],
        [3, 1, 1],
    ]


def test_publish_skips_records_that_are_no_events() -> None:
    events = FakeEventBridge()
    claimed = in_state(S.VERIFYING)
    records = [mailbox_write(moved(claimed, S.VERIFYING, MailboxEvent.OUTCOME_UNKNOWN), claimed)]

    outcome = MailboxEventPublisher(events, BUS).publish(records)  # type: ignore[arg-type]

    assert (events.calls, outcome.published, outcome.skipped) == ([], 0, 1)
    assert outcome.batch_item_failures == []


def test_publish_failed_entry_retries_from_its_record_and_puts_nothing_after_its_request() -> None:
    events = FakeEventBridge(fail_entries=frozenset({12}))
    records = onboarded(25)

    outcome = MailboxEventPublisher(events, BUS).publish(records)  # type: ignore[arg-type]

    assert [len(call) for call in events.calls] == [10, 10]  # the third request is not made
    assert outcome.published == 12
    assert outcome.batch_item_failures == [
        {"itemIdentifier": records[12]["dynamodb"]["SequenceNumber"]}
    ]
    assert outcome.problem == "InternalFailure: try again"


def test_publish_failed_entry_never_lets_a_later_event_of_its_mailbox_through() -> None:
    events = FakeEventBridge(fail_entries=frozenset({1}))  # ada's second event
    records = lives("ada@contoso.com")

    outcome = MailboxEventPublisher(events, BUS).publish(records)  # type: ignore[arg-type]

    assert [len(call) for call in events.calls] == [1, 1]  # the third is never put
    assert outcome.batch_item_failures == [
        {"itemIdentifier": records[1]["dynamodb"]["SequenceNumber"]}
    ]


def test_publish_failed_request_retries_from_its_first_record() -> None:
    events = FakeEventBridge(fail_calls=frozenset({1}))
    records = onboarded(15)

    outcome = MailboxEventPublisher(events, BUS).publish(records)  # type: ignore[arg-type]

    assert outcome.published == 10
    assert outcome.batch_item_failures == [
        {"itemIdentifier": records[10]["dynamodb"]["SequenceNumber"]}
    ]
    assert "EventBridge unreachable" in str(outcome.problem)


def test_publish_failed_entry_count_without_a_failed_entry_retries_the_whole_request() -> None:
    class Inconsistent(FakeEventBridge):
        def put_events(self, Entries: list[dict[str, Any]]) -> dict[str, Any]:
            return {**super().put_events(Entries), "FailedEntryCount": 1}

    records = onboarded(3)

    outcome = MailboxEventPublisher(Inconsistent(), BUS).publish(records)  # type: ignore[arg-type]

    assert outcome.published == 0
    assert outcome.batch_item_failures == [
        {"itemIdentifier": records[0]["dynamodb"]["SequenceNumber"]}
    ]


def test_publish_unreadable_record_publishes_what_came_before_and_stops_at_it() -> None:
    events = FakeEventBridge()
    records = onboarded(4)
    del records[2]["dynamodb"]["NewImage"]["email"]

    outcome = MailboxEventPublisher(events, BUS).publish(records)  # type: ignore[arg-type]

    assert events.mailboxes_put() == ["m00@contoso.com", "m01@contoso.com"]
    assert outcome.batch_item_failures == [
        {"itemIdentifier": records[2]["dynamodb"]["SequenceNumber"]}
    ]
    assert "mailbox#m02@contoso.com" in str(outcome.problem)


def test_publish_unreadable_first_record_raises_so_lambda_bisects_it_alone() -> None:
    events = FakeEventBridge()
    records = onboarded(3)
    del records[0]["dynamodb"]["NewImage"]["state"]

    with pytest.raises(MalformedStreamRecord, match=r"mailbox#m00@contoso\.com"):
        MailboxEventPublisher(events, BUS).publish(records)  # type: ignore[arg-type]

    assert events.calls == []


def test_publish_entry_carries_the_transition_time() -> None:
    events = FakeEventBridge()

    MailboxEventPublisher(events, BUS).publish(onboarded(1))  # type: ignore[arg-type]

    assert events.calls[0][0]["Time"].isoformat() == "2026-11-26T09:00:00+00:00"
