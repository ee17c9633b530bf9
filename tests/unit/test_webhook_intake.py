"""Unit tests for the webhook intake service: token check, queue message, error map. No I/O: the
SQS client and the secret fetch are fakes; payloads come from events/webhook-payloads."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import warmgate.api.webhook_intake as intake_module
from tests.properties import examples
from tests.webhook_bodies import (
    FILLERS,
    SQS_MAX_MESSAGE_BYTES,
    UNUSABLE_EMAILS,
    WORST_FILLER,
    largest_accepted_webhook,
    sqs_message_size,
)
from warmgate.adapters.sqs import MAX_REQUEST_ID_LENGTH, QueuedWebhook
from warmgate.api.http_body import BadRequestBody, BodyTooLarge
from warmgate.api.webhook_intake import (
    MAX_WEBHOOK_BODY_BYTES,
    MIN_TOKEN_LENGTH,
    QueueUnavailable,
    UnknownWebhookToken,
    WebhookIntake,
    WebhookToken,
    WebhookTokenMisconfigured,
    WebhookTokenSource,
    WebhookTokenUnavailable,
    answer_for,
)
from warmgate.domain.campaign_ids import CAMPAIGN_ID_PATTERN
from warmgate.domain.emails import InvalidEmail, normalize_email
from warmgate.domain.webhooks import (
    MAX_EVENT_TYPE_LENGTH,
    WebhookInvalid,
    WebhookNotJson,
    parse_webhook,
)

PAYLOADS = Path(__file__).resolve().parents[2] / "events" / "webhook-payloads"
CURRENT = "current-token-0123456789abcdef"
PREVIOUS = "previous-token-0123456789abcdef"
QUEUE_URL = "https://sqs.eu-west-1.amazonaws.com/123456789012/warmgate-WorkQueue"
RECEIVED = datetime(2025, 11, 24, 9, 15, 2, 123456, tzinfo=UTC)


def _rotating_secret(current: str = CURRENT, previous: str | None = PREVIOUS) -> str:
    return json.dumps({"current": current, "previous": previous})


class FakeSqs:
    """Records SendMessage calls; `failure` makes the next calls raise."""

    def __init__(self) -> None:
        self.sent: list[dict[str, Any]] = []
        self.failure: Exception | None = None

    def send_message(self, **kwargs: Any) -> dict[str, Any]:
        if self.failure is not None:
            raise self.failure
        self.sent.append(kwargs)
        return {"MessageId": f"message-{len(self.sent)}"}


class CachedSecret:
    """A secret store behind a cache, like Powertools' parameters: `forget` drops the cache."""

    def __init__(self, value: str) -> None:
        self.value = value
        self.reads = 0
        self._cached: str | None = None

    def fetch(self) -> str:
        if self._cached is None:
            self.reads += 1
            self._cached = self.value
        return self._cached

    def forget(self) -> None:
        self._cached = None


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _intake(sqs: FakeSqs, secret: str = CURRENT) -> WebhookIntake:
    return WebhookIntake(
        sqs,  # type: ignore[arg-type]
        QUEUE_URL,
        WebhookTokenSource(lambda: secret),
        clock=lambda: RECEIVED,
    )


def _receive(intake: WebhookIntake, body: str | None, **overrides: Any) -> Any:
    arguments: dict[str, Any] = {
        "token": CURRENT,
        "body": body,
        "is_base64": False,
        "request_id": "request-1",
    }
    arguments.update(overrides)
    return intake.receive(**arguments)


# --- WebhookToken: what is accepted ---------------------------------------------------------


def test_webhook_token_plain_secret_admits_current() -> None:
    assert WebhookToken.from_secret(CURRENT).admits(CURRENT)


def test_webhook_token_plain_secret_with_trailing_newline_admits_stripped_token() -> None:
    # `aws secretsmanager put-secret-value --secret-string file://token` keeps the newline.
    assert WebhookToken.from_secret(f"  {CURRENT}\n").admits(CURRENT)


def test_webhook_token_json_secret_admits_current_and_previous() -> None:
    token = WebhookToken.from_secret(_rotating_secret())
    assert token.admits(CURRENT)
    assert token.admits(PREVIOUS)
    assert len(token.candidates) == 2


@pytest.mark.parametrize("previous", [None, ""], ids=["null", "empty"])
def test_webhook_token_json_secret_without_previous_admits_only_current(
    previous: str | None,
) -> None:
    token = WebhookToken.from_secret(_rotating_secret(previous=previous))
    assert token.admits(CURRENT)
    assert not token.admits(PREVIOUS)
    assert not token.admits("")
    assert len(token.candidates) == 1


def test_webhook_token_json_secret_absent_previous_admits_only_current() -> None:
    token = WebhookToken.from_secret(json.dumps({"current": CURRENT}))
    assert token.admits(CURRENT)
    assert len(token.candidates) == 1


def test_webhook_token_json_secret_is_not_itself_a_token() -> None:
    secret = _rotating_secret()
    assert not WebhookToken.from_secret(secret).admits(secret)


def test_webhook_token_plain_secret_does_not_admit_previous() -> None:
    assert not WebhookToken.from_secret(CURRENT).admits(PREVIOUS)


@pytest.mark.parametrize(
    "presented",
    [
        CURRENT[:-1],  # prefix
        CURRENT + "x",  # extension
        CURRENT.upper(),  # case matters
        f" {CURRENT}",  # the presented token is not trimmed
        "wrong-token-0123456789abcdef",
    ],
    ids=["prefix", "extension", "upper-case", "leading-space", "other"],
)
def test_webhook_token_wrong_token_is_refused(presented: str) -> None:
    assert not WebhookToken.from_secret(_rotating_secret()).admits(presented)


@pytest.mark.parametrize("presented", [None, ""], ids=["missing", "empty"])
def test_webhook_token_missing_or_empty_token_is_refused(presented: str | None) -> None:
    assert not WebhookToken.from_secret(_rotating_secret()).admits(presented)


@pytest.mark.parametrize(
    "presented",
    ["tökén-0123456789abcdef", "токен-0123456789abcdef", "\ud800-lone-surrogate-0123456789"],
    ids=["latin", "cyrillic", "lone-surrogate"],
)
def test_webhook_token_non_ascii_token_is_refused_without_error(presented: str) -> None:
    # hmac.compare_digest raises TypeError on non-ASCII str: the check must compare bytes.
    assert not WebhookToken.from_secret(CURRENT).admits(presented)


def test_webhook_token_non_ascii_secret_admits_same_token() -> None:
    token = "tökén-ünïcödé-0123456789"
    assert WebhookToken.from_secret(token).admits(token)
    assert not WebhookToken.from_secret(token).admits("tokén-ünïcödé-0123456789")


def test_webhook_token_repr_does_not_show_the_token() -> None:
    token = WebhookToken.from_secret(_rotating_secret())
    assert CURRENT not in repr(token)
    assert PREVIOUS not in repr(token)


# --- WebhookToken: hmac.compare_digest is what decides --------------------------------------


def test_webhook_token_compares_every_candidate_with_compare_digest(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    real = intake_module.hmac.compare_digest
    calls: list[tuple[bytes, bytes]] = []

    def spy(a: bytes, b: bytes) -> bool:
        calls.append((a, b))
        return real(a, b)

    monkeypatch.setattr(intake_module.hmac, "compare_digest", spy)
    token = WebhookToken.from_secret(_rotating_secret())

    assert token.admits(CURRENT)
    # The current token matched first, yet the previous one was compared too (no short cut
    # that would time which candidate matched), and both were compared as bytes.
    assert calls == [(CURRENT.encode(), CURRENT.encode()), (CURRENT.encode(), PREVIOUS.encode())]


@pytest.mark.parametrize(
    ("digest_result", "presented", "expected"),
    [(True, "wrong-token-0123456789abcdef", True), (False, CURRENT, False)],
    ids=["digest-says-equal", "digest-says-different"],
)
def test_webhook_token_result_comes_from_compare_digest(
    monkeypatch: pytest.MonkeyPatch, digest_result: bool, presented: str, expected: bool
) -> None:
    # If anything but compare_digest (==, startswith …) decided, these answers would differ.
    monkeypatch.setattr(intake_module.hmac, "compare_digest", lambda a, b: digest_result)
    assert WebhookToken.from_secret(CURRENT).admits(presented) is expected


# --- WebhookToken: misconfigured secrets ----------------------------------------------------


@pytest.mark.parametrize(
    "secret",
    [
        "",
        "   \n",
        "short-token",
        "{not json",
        "{}",
        json.dumps({"previous": PREVIOUS}),
        json.dumps({"current": 12345678901234567890}),
        json.dumps({"current": ""}),
        json.dumps({"current": CURRENT, "previous": "short"}),
        json.dumps({"current": CURRENT, "previous": ["x" * 20]}),
    ],
    ids=[
        "empty",
        "blank",
        "too-short",
        "broken-json",
        "no-current",
        "only-previous",
        "current-not-string",
        "current-empty",
        "previous-too-short",
        "previous-not-string",
    ],
)
def test_webhook_token_unusable_secret_is_misconfigured(secret: str) -> None:
    with pytest.raises(WebhookTokenMisconfigured) as raised:
        WebhookToken.from_secret(secret)
    # The message describes the shape; it never echoes a (possibly almost right) token.
    for value in ("short-token", "short", PREVIOUS, "x" * 20, "12345678901234567890"):
        assert value not in str(raised.value)


def test_webhook_token_secret_not_starting_with_brace_is_a_plain_token() -> None:
    # Only a JSON object is the structured form; anything else is the token itself.
    assert WebhookToken.from_secret('["a-plain-token-after-all"]').admits(
        '["a-plain-token-after-all"]'
    )


def test_webhook_token_minimum_length_is_accepted() -> None:
    token = "t" * MIN_TOKEN_LENGTH
    assert WebhookToken.from_secret(token).admits(token)


# --- WebhookTokenSource -----------------------------------------------------------------------


def test_webhook_token_source_same_secret_is_parsed_once(monkeypatch: pytest.MonkeyPatch) -> None:
    parsed: list[str] = []
    real = WebhookToken.from_secret.__func__  # type: ignore[attr-defined]

    def counting(cls: type[WebhookToken], value: str) -> WebhookToken:
        parsed.append(value)
        result: WebhookToken = real(cls, value)
        return result

    monkeypatch.setattr(WebhookToken, "from_secret", classmethod(counting))
    source = WebhookTokenSource(lambda: CURRENT)
    assert source.current() is source.current()
    assert parsed == [CURRENT]


def test_webhook_token_source_fetch_failure_is_unavailable() -> None:
    def failing() -> str:
        raise RuntimeError("AccessDeniedException")

    with pytest.raises(WebhookTokenUnavailable):
        WebhookTokenSource(failing).current()


def test_webhook_token_source_refresh_within_interval_is_skipped() -> None:
    forgotten: list[bool] = []
    clock = Clock()
    source = WebhookTokenSource(
        lambda: CURRENT,
        forget=lambda: forgotten.append(True),
        refresh_after_miss_seconds=60,
        monotonic=clock,
    )
    source.current()  # cold start: a fresh read
    clock.now += 59
    assert source.refreshed() is None
    assert forgotten == []


def test_webhook_token_source_refresh_after_interval_rereads_once() -> None:
    store = CachedSecret(CURRENT)
    clock = Clock()
    source = WebhookTokenSource(
        store.fetch, forget=store.forget, refresh_after_miss_seconds=60, monotonic=clock
    )
    source.current()
    store.value = _rotating_secret(current="rotated-token-0123456789ab", previous=CURRENT)
    assert not source.current().admits("rotated-token-0123456789ab")  # still cached
    clock.now += 60

    fresh = source.refreshed()

    assert fresh is not None
    assert fresh.admits("rotated-token-0123456789ab")
    assert fresh.admits(CURRENT)
    assert store.reads == 2
    assert source.refreshed() is None  # the next miss within the interval reads nothing
    assert store.reads == 2


def test_webhook_token_source_without_forget_never_refreshes() -> None:
    clock = Clock()
    source = WebhookTokenSource(lambda: CURRENT, monotonic=clock)
    source.current()
    clock.now += 3600
    assert source.refreshed() is None


# --- WebhookIntake: authentication ----------------------------------------------------------


def test_webhook_intake_wrong_token_raises_unknown_and_sends_nothing() -> None:
    sqs = FakeSqs()
    with pytest.raises(UnknownWebhookToken):
        _receive(_intake(sqs), PAYLOADS.joinpath("campaign-pending.json").read_text(), token="no")
    assert sqs.sent == []


def test_webhook_intake_wrong_token_is_checked_before_the_body() -> None:
    sqs = FakeSqs()
    with pytest.raises(UnknownWebhookToken):
        _receive(_intake(sqs), "x" * (MAX_WEBHOOK_BODY_BYTES + 1), token=None)


def test_webhook_intake_token_rotated_before_cache_expiry_is_accepted_after_refresh() -> None:
    store = CachedSecret(CURRENT)
    clock = Clock()
    source = WebhookTokenSource(
        store.fetch, forget=store.forget, monotonic=clock, refresh_after_miss_seconds=60
    )
    sqs = FakeSqs()
    intake = WebhookIntake(sqs, QUEUE_URL, source, clock=lambda: RECEIVED)  # type: ignore[arg-type]
    body = PAYLOADS.joinpath("campaign-pending.json").read_text()
    _receive(intake, body)
    store.value = "rotated-token-0123456789ab"  # rotated in the store, our cache still old

    clock.now += 10
    with pytest.raises(UnknownWebhookToken):  # re-read at most once a minute
        _receive(intake, body, token="rotated-token-0123456789ab")
    clock.now += 60
    _receive(intake, body, token="rotated-token-0123456789ab")

    assert len(sqs.sent) == 2
    assert store.reads == 2


# --- WebhookIntake: body --------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "is_base64", "error"),
    [
        ("x" * (MAX_WEBHOOK_BODY_BYTES + 1), False, BodyTooLarge),
        ("not base64!", True, BadRequestBody),
        ("not json", False, WebhookNotJson),
        (None, False, WebhookNotJson),
        ("[1, 2]", False, WebhookNotJson),
        ('{"account": {"campaign_id": 1}}', False, WebhookInvalid),
        ('{"type": "campaign.pending", "account": {"first_name": "Ada"}}', False, WebhookInvalid),
    ],
    ids=[
        "too-large",
        "bad-base64",
        "not-json",
        "no-body",
        "array",
        "missing-type",
        "missing-identity",
    ],
)
def test_webhook_intake_bad_body_raises_and_sends_nothing(
    body: str | None, is_base64: bool, error: type[Exception]
) -> None:
    sqs = FakeSqs()
    with pytest.raises(error):
        _receive(_intake(sqs), body, is_base64=is_base64)
    assert sqs.sent == []


def test_webhook_intake_base64_body_is_decoded_and_queued() -> None:
    sqs = FakeSqs()
    raw = PAYLOADS.joinpath("campaign-pending.json").read_bytes()
    receipt = _receive(_intake(sqs), base64.b64encode(raw).decode(), is_base64=True)
    assert receipt.message.payload == json.loads(raw)
    assert receipt.message_id == "message-1"


def test_webhook_intake_accepted_webhook_is_sent_once_to_the_queue() -> None:
    sqs = FakeSqs()
    body = PAYLOADS.joinpath("campaign-pending.json").read_text()

    receipt = _receive(_intake(sqs), body, request_id="Bq3xTjW-IAMEV3g=")

    assert len(sqs.sent) == 1
    call = sqs.sent[0]
    assert set(call) == {"QueueUrl", "MessageBody", "MessageAttributes"}
    assert call["QueueUrl"] == QUEUE_URL
    assert call["MessageBody"] == receipt.message.message_body()
    assert call["MessageAttributes"] == receipt.message.message_attributes()
    assert receipt.message.request_id == "Bq3xTjW-IAMEV3g="
    assert receipt.message.received_at == "2025-11-24T09:15:02.123Z"


# --- any usable webhook is queued exactly once (issue 13 §1) -----------------------------------

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=30)
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=15,
)
_email_like = st.builds(
    "{}{}{}".format,
    st.text(max_size=20),
    st.sampled_from(["@", "\uff20", "@@", "", "@xn--"]),
    st.text(max_size=20),
)
_anything_for_email = st.one_of(
    st.sampled_from(list(UNUSABLE_EMAILS.values())), _email_like, _json_values
)
_usable_types = st.text(min_size=1, max_size=MAX_EVENT_TYPE_LENGTH).filter(str.strip)
_usable_campaign_ids = st.one_of(
    st.integers(min_value=-(10**62), max_value=10**63),
    st.from_regex(CAMPAIGN_ID_PATTERN, fullmatch=True),
)


def _usable_envelope(
    event_type: str, campaign_id: int | str, account: dict[str, Any], extra: dict[str, Any]
) -> dict[str, Any]:
    return {**extra, "type": event_type, "account": {**account, "campaign_id": campaign_id}}


_usable_envelopes = st.builds(
    _usable_envelope,
    _usable_types,
    _usable_campaign_ids,
    st.dictionaries(
        st.sampled_from(["email", "first_name", "last_name", "tags", "meta", "type", "x"]),
        _anything_for_email,
        max_size=5,
    ),
    st.dictionaries(st.text(max_size=10), _json_values, max_size=3),
)


@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])
@given(_usable_envelopes)
@example(_usable_envelope("campaign.pending", 4711, {"email": "иван@пример.рф"}, {}))
@example(_usable_envelope("campaign.pending", "c-1", {"email": "a" * 5000 + "@x.io"}, {}))
@example(_usable_envelope("\x00 \ufffe \ud800", 1, {"email": "x'; DROP TABLE t;--"}, {"'": '"'}))
def test_webhook_intake_usable_type_and_campaign_id_is_queued_exactly_once(
    document: dict[str, Any],
) -> None:
    sqs = FakeSqs()

    receipt = _receive(_intake(sqs), json.dumps(document))

    assert len(sqs.sent) == 1
    queued = QueuedWebhook.from_message_body(sqs.sent[0]["MessageBody"])
    assert queued == receipt.message
    assert queued.event_type == document["type"].strip()
    assert queued.campaign_id == str(document["account"]["campaign_id"])
    assert queued.payload == document
    sent_email = document["account"].get("email")
    try:
        expected_email: str | None = normalize_email(sent_email)
    except InvalidEmail:
        expected_email = None
    assert queued.email == expected_email
    blank = sent_email is None or (isinstance(sent_email, str) and not sent_email.strip())
    assert queued.email_hint_invalid is (expected_email is None and not blank)


@pytest.mark.parametrize("email", UNUSABLE_EMAILS.values(), ids=UNUSABLE_EMAILS.keys())
def test_webhook_intake_unusable_email_is_queued_as_null_and_flagged(email: Any) -> None:
    sqs = FakeSqs()
    document = {"type": "campaign.pending", "account": {"campaign_id": 4711, "email": email}}

    _receive(_intake(sqs), json.dumps(document))

    (call,) = sqs.sent
    body = json.loads(call["MessageBody"])
    assert (body["email"], body["email_hint_invalid"]) == (None, True)
    assert body["campaign_id"] == "4711"
    assert body["payload"]["account"]["email"] == email


# --- every queued field is bounded: the largest webhook fits in one SQS message ------------


@pytest.mark.parametrize("filler", sorted(FILLERS))
def test_webhook_intake_largest_accepted_webhook_fits_in_one_sqs_message(filler: str) -> None:
    sqs = FakeSqs()
    body = largest_accepted_webhook(filler)

    receipt = _receive(_intake(sqs), body, request_id="r" * 1000)

    (call,) = sqs.sent
    assert sqs_message_size(call) < SQS_MAX_MESSAGE_BYTES
    assert receipt.message.request_id == "r" * MAX_REQUEST_ID_LENGTH
    assert len(receipt.message.event_type) == MAX_EVENT_TYPE_LENGTH


def test_webhook_intake_largest_webhook_is_made_of_the_filler_that_grows_most() -> None:
    """json re-serializes a float like `9e15` as `9000000000000000.0` (3.8x with its comma, the
    most any number of up to six characters grows; longer ones grow less), strings keep their
    size except U+FFFE/U+FFFF (2x). So the default filler gives the largest message."""
    sizes = {}
    for filler in FILLERS:
        sqs = FakeSqs()
        _receive(_intake(sqs), largest_accepted_webhook(filler), request_id="r" * 1000)
        sizes[filler] = sqs_message_size(sqs.sent[0])

    assert max(sizes, key=sizes.__getitem__) == WORST_FILLER
    assert sizes[WORST_FILLER] < SQS_MAX_MESSAGE_BYTES


def test_sqs_message_size_counts_body_and_attribute_names_types_and_values() -> None:
    request = {
        "MessageBody": "é",
        "MessageAttributes": {"ab": {"DataType": "String", "StringValue": "\U0001f600"}},
    }
    assert sqs_message_size(request) == 2 + 2 + 6 + 4


@pytest.mark.parametrize(
    "failure",
    [
        ClientError(
            {"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue", "Message": "gone"}},
            "SendMessage",
        ),
        EndpointConnectionError(endpoint_url="https://sqs.eu-west-1.amazonaws.com"),
    ],
    ids=["client-error", "connection-error"],
)
def test_webhook_intake_sqs_failure_raises_queue_unavailable(failure: Exception) -> None:
    sqs = FakeSqs()
    sqs.failure = failure
    body = PAYLOADS.joinpath("campaign-pending.json").read_text()
    with pytest.raises(QueueUnavailable) as raised:
        _receive(_intake(sqs), body)
    assert raised.value.__cause__ is failure
    assert "Lovelace" not in str(raised.value)


# --- QueuedWebhook: the queue message, field by field ---------------------------------------


def _queued(name: str, **overrides: Any) -> QueuedWebhook:
    raw = PAYLOADS.joinpath(name).read_bytes()
    arguments: dict[str, Any] = {"received_at": RECEIVED, "request_id": "request-7"}
    arguments.update(overrides)
    return QueuedWebhook.from_envelope(parse_webhook(raw), json.loads(raw), **arguments)


def test_queued_webhook_legacy_pending_payload_fields_are_normalized() -> None:
    raw = PAYLOADS.joinpath("campaign-pending-legacy.json").read_bytes()
    message = _queued("campaign-pending-legacy.json")

    assert message.schema == 1
    assert message.event_type == "campaign.pending"
    assert message.campaign_id == "4714"  # sent as a string, kept as the string key
    assert message.email == "k.johnson@northwind-traders.com"  # trimmed, lower-cased
    assert message.dedup_key == "campaign.pending:4714"
    assert message.received_at == "2025-11-24T09:15:02.123Z"
    assert message.request_id == "request-7"
    assert message.payload == json.loads(raw)  # untouched: lalst_name, spaces, meta string


def test_queued_webhook_integer_campaign_id_becomes_string() -> None:
    message = _queued("campaign-created.json")
    assert message.campaign_id == "4712"
    assert message.dedup_key == "campaign.created:4712"
    assert message.payload["account"]["campaign_id"] == 4712


def test_queued_webhook_unknown_type_is_kept_as_sent() -> None:
    message = _queued("unknown-event-type.json")
    assert message.event_type == "campaign.connection_problem"
    assert message.dedup_key == "campaign.connection_problem:4715"
    assert message.payload["reason"] == "imap_authentication_failed"


def test_queued_webhook_without_campaign_id_dedups_on_email() -> None:
    body = {"type": "campaign.pending", "account": {"email": " Ada@Contoso.com "}}
    message = QueuedWebhook.from_envelope(
        parse_webhook(json.dumps(body)), body, received_at=RECEIVED, request_id="r"
    )
    assert message.campaign_id is None
    assert message.email == "ada@contoso.com"
    assert message.dedup_key == "campaign.pending:ada@contoso.com"


def test_queued_webhook_received_at_is_utc_with_milliseconds() -> None:
    local = datetime(2025, 11, 24, 10, 15, 2, 999999, tzinfo=timezone(timedelta(hours=1)))
    assert _queued("campaign-pending.json", received_at=local).received_at == (
        "2025-11-24T09:15:02.999Z"
    )


def test_queued_webhook_message_body_has_exactly_the_schema_fields() -> None:
    message = _queued("campaign-pending.json")
    document = json.loads(message.message_body())
    assert document == {
        "schema": 1,
        "event_type": "campaign.pending",
        "campaign_id": "4711",
        "email": "ada@contoso.com",
        "email_hint_invalid": False,
        "dedup_key": "campaign.pending:4711",
        "received_at": "2025-11-24T09:15:02.123Z",
        "request_id": "request-7",
        "payload": json.loads(PAYLOADS.joinpath("campaign-pending.json").read_bytes()),
    }


def test_queued_webhook_message_body_escapes_only_characters_sqs_refuses() -> None:
    body = {
        "type": "campaign.pending",
        "account": {"campaign_id": 1, "first_name": "Zoë \U0001f600 \x7f \ufffe \uffff \ud800"},
    }
    message = QueuedWebhook.from_envelope(
        parse_webhook(json.dumps(body)), body, received_at=RECEIVED, request_id="r"
    )
    text = message.message_body()
    # What SQS accepts stays as sent (one byte for DEL, not six), the rest is escaped.
    assert "Zoë \U0001f600 \x7f \\ufffe \\uffff \\ud800" in text
    assert not [c for c in text if "\ud800" <= c <= "\udfff" or c in "\ufffe\uffff"]
    assert json.loads(text)["payload"] == body


def test_queued_webhook_email_hint_invalid_round_trips_and_defaults_to_false() -> None:
    body = {"type": "campaign.pending", "account": {"campaign_id": 1, "email": "x@y"}}
    message = QueuedWebhook.from_envelope(
        parse_webhook(json.dumps(body)), body, received_at=RECEIVED, request_id="r"
    )
    document = json.loads(message.message_body())
    older = json.dumps({k: v for k, v in document.items() if k != "email_hint_invalid"})

    assert message.email_hint_invalid is True
    assert QueuedWebhook.from_message_body(message.message_body()) == message
    assert QueuedWebhook.from_message_body(older).email_hint_invalid is False


def test_queued_webhook_message_attributes_carry_type_and_dedup_key() -> None:
    assert _queued("campaign-deleted.json").message_attributes() == {
        "event_type": {"DataType": "String", "StringValue": "campaign.deleted"},
        "dedup_key": {"DataType": "String", "StringValue": "campaign.deleted:4713"},
    }


def test_queued_webhook_message_attributes_replace_characters_sqs_refuses() -> None:
    body = {"type": "campaign.\ufffe\x01odd", "account": {"campaign_id": 9}}
    message = QueuedWebhook.from_envelope(
        parse_webhook(json.dumps(body)), body, received_at=RECEIVED, request_id="r"
    )
    attributes = message.message_attributes()
    assert attributes["event_type"]["StringValue"] == "campaign.\ufffd\ufffdodd"
    assert attributes["dedup_key"]["StringValue"] == "campaign.\ufffd\ufffdodd:9"
    assert message.event_type == "campaign.\ufffe\x01odd"  # the body keeps it, escaped


def test_queued_webhook_message_body_round_trips() -> None:
    message = _queued("campaign-pending-legacy.json")
    assert QueuedWebhook.from_message_body(message.message_body()) == message


@pytest.mark.parametrize(
    "body", ['{"schema": 2}', "[]", '{"event_type": "campaign.pending"}'], ids=str
)
def test_queued_webhook_other_schema_is_refused(body: str) -> None:
    with pytest.raises(ValueError, match="schema 1"):
        QueuedWebhook.from_message_body(body)


# --- answer_for: the one error-to-status map ------------------------------------------------


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (UnknownWebhookToken(), 404, "NOT_FOUND"),
        (BadRequestBody("body is not valid base64"), 400, "BAD_REQUEST"),
        (WebhookNotJson("body is not valid JSON"), 400, "BAD_REQUEST"),
        (BodyTooLarge("body is larger than 65536 bytes"), 413, "PAYLOAD_TOO_LARGE"),
        (WebhookInvalid("type is required", ("type",)), 422, "VALIDATION_FAILED"),
        (QueueUnavailable("SendMessage failed"), 503, "QUEUE_UNAVAILABLE"),
        (WebhookTokenUnavailable("secret could not be read"), 503, "SERVICE_UNAVAILABLE"),
        (WebhookTokenMisconfigured("current must be a string"), 503, "SERVICE_UNAVAILABLE"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else None,
)
def test_answer_for_known_error_maps_to_status_and_code(
    error: Exception, status: int, code: str
) -> None:
    answer = answer_for(error)
    assert answer is not None
    assert (answer.status, answer.body["code"]) == (status, code)
    assert set(answer.body) == {"code", "message"}


def test_answer_for_unknown_token_says_nothing_more_than_not_found() -> None:
    answer = answer_for(UnknownWebhookToken())
    assert answer is not None
    assert answer.body == {"code": "NOT_FOUND", "message": "Not Found"}


def test_answer_for_invalid_body_names_the_field() -> None:
    with pytest.raises(WebhookInvalid) as raised:
        parse_webhook('{"account": {"campaign_id": 1}}')
    answer = answer_for(raised.value)
    assert answer is not None
    assert answer.body["message"] == "type is required"


def test_answer_for_unexpected_error_is_none() -> None:
    assert answer_for(KeyError("boom")) is None
