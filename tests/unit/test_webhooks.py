"""Unit tests for the tolerant Mailivery webhook envelope (contract §4). No I/O except reading
the example bodies in events/webhook-payloads."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, event, given, settings
from hypothesis import strategies as st

from tests.properties import examples
from tests.webhook_bodies import UNUSABLE_EMAILS
from warmgate.domain.emails import normalize_email
from warmgate.domain.webhooks import (
    MAX_EVENT_TYPE_LENGTH,
    EventType,
    WebhookAccount,
    WebhookEnvelope,
    WebhookInvalid,
    WebhookNotJson,
    WebhookRejected,
    parse_webhook,
)

PAYLOADS = Path(__file__).resolve().parents[2] / "events" / "webhook-payloads"


def _payload_bytes(name: str) -> bytes:
    return (PAYLOADS / name).read_bytes()


def _body(document: Any) -> str:
    return json.dumps(document)


def _valid_document(**account: Any) -> dict[str, Any]:
    fields: dict[str, Any] = {"campaign_id": 4711, "email": "ada@contoso.com"}
    fields.update(account)
    return {"type": "campaign.pending", "action": "pending", "account": fields}


# --- example payloads (contract §4) ---------------------------------------------------------


def test_payload_directory_has_every_documented_example() -> None:
    names = {path.name for path in PAYLOADS.glob("*.json")}
    assert {
        "campaign-pending.json",
        "campaign-created.json",
        "campaign-updated.json",
        "campaign-deleted.json",
        "campaign-pending-legacy.json",
        "unknown-event-type.json",
    } <= names


@pytest.mark.parametrize("path", sorted(PAYLOADS.glob("*.json")), ids=lambda p: p.name)
def test_parse_webhook_example_payload_parses(path: Path) -> None:
    envelope = parse_webhook(path.read_bytes())

    assert envelope.type == json.loads(path.read_bytes())["type"]
    assert envelope.campaign_id is not None or envelope.normalized_email is not None


def test_parse_webhook_documented_pending_example_normalizes_every_field() -> None:
    envelope = parse_webhook(_payload_bytes("campaign-pending.json"))

    assert envelope.type == "campaign.pending"
    assert envelope.event_type is EventType.PENDING
    assert envelope.action == "pending"
    account = envelope.account
    assert account.campaign_id == "4711"
    assert envelope.campaign_id == "4711"
    assert account.first_name == "Ada"
    assert account.last_name == "Lovelace"
    assert account.email == "Ada@Contoso.com"  # raw, as sent
    assert account.normalized_email == "ada@contoso.com"
    assert envelope.normalized_email == "ada@contoso.com"
    assert account.provider_type == "office"
    assert account.type is None
    assert account.tags == ["tenant-42", "sales"]
    assert account.meta == {"tags": "tenant-42, sales"}
    assert envelope.dedup_key == "campaign.pending:4711"


def test_parse_webhook_created_example_gmail_with_null_meta_parses() -> None:
    envelope = parse_webhook(_payload_bytes("campaign-created.json"))

    assert envelope.event_type is EventType.CREATED
    assert envelope.campaign_id == "4712"
    assert envelope.account.provider_type == "gmail"
    assert envelope.account.meta is None
    assert envelope.account.tags == ["tenant-7"]
    assert envelope.normalized_email == "grace.hopper@gmail.com"
    assert envelope.account.last_name == "Hopper"


def test_parse_webhook_updated_example_empty_meta_no_tags_parses() -> None:
    envelope = parse_webhook(_payload_bytes("campaign-updated.json"))

    assert envelope.event_type is EventType.UPDATED
    assert envelope.campaign_id == "4711"
    assert envelope.account.meta is None
    assert envelope.account.tags == []
    assert envelope.account.provider_type is None
    assert envelope.normalized_email == "ada@contoso.com"


def test_parse_webhook_deleted_example_smtp_type_is_kept() -> None:
    envelope = parse_webhook(_payload_bytes("campaign-deleted.json"))

    assert envelope.event_type is EventType.DELETED
    assert envelope.campaign_id == "4713"
    assert envelope.account.type == "smtp"
    assert envelope.account.provider_type is None
    assert envelope.account.meta is None
    assert envelope.normalized_email == "alan.turing@fabrikam.co.uk"
    assert envelope.dedup_key == "campaign.deleted:4713"


def test_parse_webhook_legacy_example_quirks_are_normalized() -> None:
    envelope = parse_webhook(_payload_bytes("campaign-pending-legacy.json"))
    account = envelope.account

    assert account.campaign_id == "4714"
    assert account.last_name == "Johnson"  # from `lalst_name`
    assert account.email == "  K.Johnson@Northwind-Traders.com "
    assert account.normalized_email == "k.johnson@northwind-traders.com"
    assert account.tags == ["97694201", "worthcoding"]
    assert account.meta == {"meta": "4f2a9c1e", "tags": "97694201, worthcoding"}


def test_parse_webhook_unknown_type_is_accepted_and_extras_preserved() -> None:
    envelope = parse_webhook(_payload_bytes("unknown-event-type.json"))

    assert envelope.type == "campaign.connection_problem"
    assert envelope.event_type == "campaign.connection_problem"
    assert not isinstance(envelope.event_type, EventType)
    assert envelope.action == "paused"
    assert envelope.model_extra == {
        "reason": "imap_authentication_failed",
        "occurred_at": "2025-11-24T09:15:02Z",
    }
    assert envelope.account.model_extra == {"status": "paused", "warmup_enabled": False}
    assert envelope.account.meta == {"tenant": "tenant-42", "tags": "tenant-42"}
    assert envelope.dedup_key == "campaign.connection_problem:4715"


# --- field normalization ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (4711, "4711"),
        ("4711", "4711"),
        ("  4711 ", "4711"),
        ("04711", "04711"),  # kept as sent: the worker compares it with the re-read id
        (-5, "-5"),
        ("c_1-X", "c_1-X"),
        ("9" * 64, "9" * 64),
        (10**63, "1" + "0" * 63),
        ("", None),
        ("   ", None),
        (None, None),
    ],
)
def test_account_campaign_id_int_or_string_becomes_stripped_string(
    raw: Any, expected: str | None
) -> None:
    account = WebhookAccount.model_validate({"campaign_id": raw, "email": "a@b.co"})

    assert account.campaign_id == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (["a", " b", "b ", "", "  "], ["a", "b", "b"]),
        ("a, b,,c ", ["a", "b", "c"]),
        (None, []),
        ([97694201, " worthcoding"], ["97694201", "worthcoding"]),
        ([None, {"x": 1}, True, "kept"], ["kept"]),
    ],
)
def test_account_tags_any_documented_shape_becomes_stripped_list(
    raw: Any, expected: list[str]
) -> None:
    account = WebhookAccount.model_validate({"campaign_id": 1, "tags": raw})

    assert account.tags == expected


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        (None, None),
        ("", None),
        ("  ", None),
        (
            {"tags": "a,b", "n": 3, "flag": True, "gone": None},
            {"tags": "a,b", "n": "3", "flag": "true"},
        ),
        (
            "meta=4f2a&tags=97694201,%20worthcoding",
            {"meta": "4f2a", "tags": "97694201, worthcoding"},
        ),
        ("tags=a&tags=b", {"tags": "a,b"}),
        ({"tags": ["a", 7], "nested": {"k": [1]}}, {"tags": "a,7", "nested": '{"k":[1]}'}),
        ('{"source": "crm"}', {"source": "crm"}),
        (12, None),
    ],
)
def test_account_meta_any_documented_shape_becomes_dict_or_none(
    raw: Any, expected: dict[str, str] | None
) -> None:
    account = WebhookAccount.model_validate({"campaign_id": 1, "meta": raw})

    assert account.meta == expected


def test_account_tags_absent_are_taken_from_query_string_meta() -> None:
    envelope = parse_webhook(_body(_valid_document(meta="meta=4f2a&tags=97694201,%20worthcoding")))

    assert envelope.account.tags == ["97694201", "worthcoding"]


def test_account_tags_absent_are_taken_from_object_meta_list() -> None:
    envelope = parse_webhook(_body(_valid_document(tags=None, meta={"tags": [" a", "b "]})))

    assert envelope.account.tags == ["a", "b"]


def test_account_tags_present_win_over_meta_tags() -> None:
    envelope = parse_webhook(_body(_valid_document(tags=["own"], meta="tags=from-meta")))

    assert envelope.account.tags == ["own"]


def test_account_last_name_present_wins_over_lalst_name() -> None:
    account = WebhookAccount.model_validate(
        {"campaign_id": 1, "last_name": "Right", "lalst_name": "Wrong"}
    )

    assert account.last_name == "Right"


def test_account_names_odd_shapes_are_dropped_not_rejected() -> None:
    envelope = parse_webhook(_body(_valid_document(first_name={"x": 1}, last_name="  ")))

    assert envelope.account.first_name is None
    assert envelope.account.last_name is None


def test_account_email_only_identity_dedups_on_normalized_email() -> None:
    envelope = parse_webhook(
        _body({"type": "campaign.pending", "account": {"email": " Ada@Contoso.COM"}})
    )

    assert envelope.campaign_id is None
    assert envelope.action is None
    assert envelope.dedup_key == "campaign.pending:ada@contoso.com"


def test_account_campaign_id_only_identity_has_no_email() -> None:
    envelope = parse_webhook(_body({"type": "campaign.deleted", "account": {"campaign_id": 9}}))

    assert envelope.normalized_email is None
    assert envelope.dedup_key == "campaign.deleted:9"


def test_envelope_type_is_stripped_and_matched_to_known_types() -> None:
    document = _valid_document()
    document["type"] = "  campaign.updated "

    envelope = parse_webhook(_body(document))

    assert envelope.type == "campaign.updated"
    assert envelope.event_type is EventType.UPDATED


def test_parse_webhook_utf8_bom_and_str_bodies_parse() -> None:
    raw = _body(_valid_document())

    assert parse_webhook(b"\xef\xbb\xbf" + raw.encode()).campaign_id == "4711"
    assert parse_webhook(raw).campaign_id == "4711"


# --- rejections -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "body",
    [
        b"",
        b"not json",
        b"{",
        b"[1, 2]",
        b'"campaign.pending"',
        b"42",
        b"null",
        b"\xff\xfe{}",
        "[" * 100_000,
    ],
    ids=["empty", "text", "truncated", "array", "string", "number", "null", "bad-utf8", "deep"],
)
def test_parse_webhook_not_a_json_object_raises_not_json(body: bytes | str) -> None:
    with pytest.raises(WebhookNotJson) as caught:
        parse_webhook(body)

    assert isinstance(caught.value, WebhookRejected)
    assert isinstance(caught.value, ValueError)
    assert caught.value.reason == str(caught.value)
    assert caught.value.reason.startswith("body ")


def _without(document: dict[str, Any], key: str) -> dict[str, Any]:
    return {k: v for k, v in document.items() if k != key}


@pytest.mark.parametrize(
    ("document", "field", "message"),
    [
        (_without(_valid_document(), "type"), "type", "type is required"),
        ({**_valid_document(), "type": ""}, "type", "type must not be empty"),
        ({**_valid_document(), "type": "   "}, "type", "type must not be empty"),
        ({**_valid_document(), "type": 7}, "type", "type must be a string"),
        (_without(_valid_document(), "account"), "account", "account is required"),
        (
            {**_valid_document(), "account": "ada@contoso.com"},
            "account",
            "account must be an object",
        ),
        ({**_valid_document(), "account": [1]}, "account", "account must be an object"),
        (
            {"type": "campaign.pending", "account": {"first_name": "Ada"}},
            "account",
            "account.email or account.campaign_id is required",
        ),
        (
            {"type": "campaign.pending", "account": {"email": " ", "campaign_id": ""}},
            "account",
            "account.email or account.campaign_id is required",
        ),
        (
            {"type": "campaign.pending", "account": {"email": "not-an-address"}},
            "account",
            "account.campaign_id is required when account.email is not usable: "
            "email is not a plausible mailbox address",
        ),
        (
            {"type": "campaign.pending", "account": {"email": ["a@b.co"], "campaign_id": None}},
            "account",
            "account.campaign_id is required when account.email is not usable: "
            "email must be a string",
        ),
        (
            {**_valid_document(), "type": "x" * (MAX_EVENT_TYPE_LENGTH + 1)},
            "type",
            "type is longer than 128 characters",
        ),
        (
            _valid_document(campaign_id=".."),
            "account.campaign_id",
            "account.campaign_id may contain only ASCII letters, digits, '_' and '-'",
        ),
        (
            _valid_document(campaign_id="4711/start-warmup"),
            "account.campaign_id",
            "account.campaign_id may contain only ASCII letters, digits, '_' and '-'",
        ),
        (
            _valid_document(campaign_id="47 11"),
            "account.campaign_id",
            "account.campaign_id may contain only ASCII letters, digits, '_' and '-'",
        ),
        (
            _valid_document(campaign_id="\uff14711"),  # FULLWIDTH DIGIT FOUR
            "account.campaign_id",
            "account.campaign_id may contain only ASCII letters, digits, '_' and '-'",
        ),
        (
            _valid_document(campaign_id="x" * 65),
            "account.campaign_id",
            "account.campaign_id is longer than 64 characters",
        ),
        (
            _valid_document(campaign_id=10**64),
            "account.campaign_id",
            "account.campaign_id is longer than 64 characters",
        ),
        (
            _valid_document(campaign_id=True),
            "account.campaign_id",
            "account.campaign_id must be an integer or a string, not a boolean",
        ),
        (
            _valid_document(campaign_id=47.11),
            "account.campaign_id",
            "account.campaign_id must be an integer or a string, not a decimal number",
        ),
        (
            _valid_document(campaign_id={"id": 4711}),
            "account.campaign_id",
            "account.campaign_id must be an integer or a string",
        ),
    ],
    ids=[
        "type-missing",
        "type-empty",
        "type-blank",
        "type-number",
        "account-missing",
        "account-string",
        "account-array",
        "no-identity",
        "blank-identity",
        "no-id-email-implausible",
        "no-id-email-array",
        "type-too-long",
        "campaign-id-dot-dot",
        "campaign-id-slash",
        "campaign-id-space",
        "campaign-id-full-width",
        "campaign-id-65-characters",
        "campaign-id-65-digits",
        "campaign-id-bool",
        "campaign-id-float",
        "campaign-id-object",
    ],
)
def test_parse_webhook_missing_or_malformed_field_raises_invalid_naming_field(
    document: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(WebhookInvalid) as caught:
        parse_webhook(_body(document))

    assert caught.value.reason == message
    assert caught.value.fields == (field,)
    assert isinstance(caught.value, WebhookRejected)


@pytest.mark.parametrize("email", UNUSABLE_EMAILS.values(), ids=UNUSABLE_EMAILS.keys())
def test_parse_webhook_unusable_email_with_campaign_id_is_accepted_and_flagged(
    email: Any,
) -> None:
    envelope = parse_webhook(_body(_valid_document(email=email)))

    assert envelope.campaign_id == "4711"
    assert envelope.normalized_email is None
    assert envelope.email_hint_invalid is True
    assert envelope.account.email == email  # kept as sent
    assert envelope.dedup_key == "campaign.pending:4711"


@pytest.mark.parametrize(
    ("email", "normalized"),
    [
        ("Ivan@XN--E1AFMKFD.XN--P1AI", "ivan@xn--e1afmkfd.xn--p1ai"),
        (" Ada@Contoso.com ", "ada@contoso.com"),
        (None, None),
        ("  ", None),
    ],
)
def test_parse_webhook_usable_or_absent_email_is_not_flagged(
    email: str | None, normalized: str | None
) -> None:
    envelope = parse_webhook(_body(_valid_document(email=email)))

    assert envelope.normalized_email == normalized
    assert envelope.email_hint_invalid is False


def test_parse_webhook_type_of_exactly_128_characters_is_accepted() -> None:
    document = {**_valid_document(), "type": "x" * MAX_EVENT_TYPE_LENGTH}

    assert parse_webhook(_body(document)).type == "x" * MAX_EVENT_TYPE_LENGTH


def test_parse_webhook_several_problems_are_all_named() -> None:
    with pytest.raises(WebhookInvalid) as caught:
        parse_webhook(_body({"type": "", "account": {"campaign_id": True}}))

    assert caught.value.fields == ("type", "account.campaign_id")
    assert "type must not be empty" in caught.value.reason
    assert "account.campaign_id must be" in caught.value.reason


def test_parse_webhook_rejection_does_not_echo_personal_data() -> None:
    secret_name = "Zyxwvutsrq"
    document = {
        "type": "campaign.pending",
        "account": {"email": "Zyxwvutsrq at example", "first_name": secret_name},
    }

    with pytest.raises(WebhookInvalid) as caught:
        parse_webhook(_body(document))

    assert secret_name.lower() not in str(caught.value).lower()
    # pydantic's ValidationError prints input values: it must not ride along in the traceback.
    assert caught.value.__cause__ is None
    assert caught.value.__context__ is None


def test_parse_webhook_unparsable_body_rejection_suppresses_json_error() -> None:
    with pytest.raises(WebhookNotJson) as caught:
        parse_webhook(b'{"type": "campaign.pending", "account": {"email": "ada@contoso.com"')

    assert "ada" not in caught.value.reason
    assert caught.value.__suppress_context__ is True


# --- properties -------------------------------------------------------------------------------

_json_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
_json_values = st.recursive(
    _json_scalars,
    lambda children: (
        st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=10), children, max_size=4)
    ),
    max_leaves=20,
)
# Plausible values first, so a good share of generated objects gets past the first error and
# reaches every validator; arbitrary JSON second, so every field also sees every shape.
_field_values = st.one_of(
    st.sampled_from(
        [
            "campaign.pending",
            "campaign.deleted",
            "",
            "  ",
            None,
            4711,
            " 4711 ",
            "ada@contoso.com",
            " Ada@Contoso.com ",
            "x@y",
            "meta=4f2a&tags=a,%20b",
            ["a", " b"],
        ]
    ),
    _json_values,
)
_known_type_names = st.sampled_from(["campaign.pending", "campaign.updated", "x.unknown"])
_types = st.one_of(_known_type_names, _known_type_names.map(lambda t: f" {t} "), _field_values)
_campaign_ids = st.one_of(st.sampled_from([4711, " 4711 ", "c-1"]), _field_values)
_emails = st.one_of(st.sampled_from(["ada@contoso.com", " Ada@Contoso.com "]), _field_values)
_account_descriptive = {
    **dict.fromkeys(
        ("first_name", "last_name", "lalst_name", "provider_type", "type", "tags", "meta"),
        _field_values,
    ),
    "extra": _json_values,
}
# Mostly accounts that carry an identity, so most examples reach the later validators.
_account_like = st.one_of(
    st.fixed_dictionaries(
        {"campaign_id": _campaign_ids}, optional={"email": _emails, **_account_descriptive}
    ),
    st.fixed_dictionaries(
        {"email": _emails}, optional={"campaign_id": _campaign_ids, **_account_descriptive}
    ),
    st.fixed_dictionaries(
        {}, optional={"campaign_id": _campaign_ids, "email": _emails, **_account_descriptive}
    ),
    _json_values,
)
# Objects shaped like an envelope (missing keys come from the arbitrary-JSON test).
_envelope_like = st.fixed_dictionaries(
    {"type": _types, "account": _account_like},
    optional={"action": _field_values, "extra": _json_values},
)


def _parse_outcome(body: bytes | str) -> WebhookEnvelope | WebhookRejected:
    try:
        return parse_webhook(body)
    except WebhookRejected as rejected:
        return rejected


@given(st.binary(max_size=256))
def test_parse_webhook_arbitrary_bytes_only_raise_rejected(body: bytes) -> None:
    outcome = _parse_outcome(body)

    assert isinstance(outcome, WebhookEnvelope | WebhookRejected)


@given(st.text(max_size=256))
def test_parse_webhook_arbitrary_text_only_raise_rejected(body: str) -> None:
    outcome = _parse_outcome(body)

    assert isinstance(outcome, WebhookEnvelope | WebhookRejected)


def _assert_rejected_or_identified(document: Any) -> WebhookEnvelope | WebhookRejected:
    outcome = _parse_outcome(json.dumps(document))
    event(type(outcome).__name__)
    if isinstance(outcome, WebhookRejected):
        assert outcome.reason
        assert isinstance(outcome, WebhookNotJson) == (not isinstance(document, dict))
    else:
        assert isinstance(document, dict)
        assert outcome.campaign_id is not None or outcome.normalized_email is not None
        assert outcome.dedup_key.startswith(f"{outcome.type}:")
    return outcome


@settings(suppress_health_check=[HealthCheck.too_slow])
@given(_json_values)
def test_parse_webhook_arbitrary_json_only_raise_rejected_with_reason(document: Any) -> None:
    _assert_rejected_or_identified(document)


@settings(max_examples=examples(300), suppress_health_check=[HealthCheck.too_slow])
@given(_envelope_like)
def test_parse_webhook_envelope_like_json_accepted_or_rejected_with_reason(
    document: dict[str, Any],
) -> None:
    outcome = _assert_rejected_or_identified(document)

    if isinstance(outcome, WebhookEnvelope):
        assert all(tag == tag.strip() and tag for tag in outcome.account.tags)
        assert outcome.account.meta is None or all(
            isinstance(v, str) for v in outcome.account.meta.values()
        )


_atext = st.text(
    alphabet="abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789_+-",
    min_size=1,
    max_size=12,
)
_label = st.from_regex(r"[a-zA-Z0-9](?:[a-zA-Z0-9-]{0,10}[a-zA-Z0-9])?", fullmatch=True)
_valid_emails = st.builds(
    lambda local, labels, tld, pad_left, pad_right: (
        f"{pad_left}{'.'.join(local)}@{'.'.join(labels)}.{tld}{pad_right}"
    ),
    st.lists(_atext, min_size=1, max_size=3),
    st.lists(_label, min_size=1, max_size=3),
    st.from_regex(r"[a-zA-Z]{2,10}", fullmatch=True),
    st.sampled_from(["", " ", "\t"]),
    st.sampled_from(["", " ", "\n"]),
)
_valid_campaign_ids = st.one_of(
    st.integers(min_value=0, max_value=2**63),
    st.from_regex(r"[A-Za-z0-9-]{1,20}", fullmatch=True).map(lambda s: f" {s} "),
)
_known_or_unknown_types = st.one_of(
    st.sampled_from([t.value for t in EventType]),
    st.from_regex(r"campaign\.[a-z_]{1,20}", fullmatch=True),
)


@given(
    event_type=_known_or_unknown_types,
    campaign_id=st.one_of(st.none(), _valid_campaign_ids),
    email=st.one_of(st.none(), _valid_emails),
    tags=st.lists(st.text(alphabet="abc- ", max_size=8), max_size=4),
    extra=st.dictionaries(
        st.from_regex(r"x_[a-z]{1,8}", fullmatch=True), _json_scalars, max_size=3
    ),
)
def test_parse_webhook_valid_generated_envelope_round_trips(
    event_type: str,
    campaign_id: int | str | None,
    email: str | None,
    tags: list[str],
    extra: dict[str, Any],
) -> None:
    account: dict[str, Any] = {"tags": tags, **extra}
    if campaign_id is not None:
        account["campaign_id"] = campaign_id
    if email is not None:
        account["email"] = email
    document = {"type": event_type, "action": event_type.split(".")[1], "account": account}

    if campaign_id is None and email is None:
        with pytest.raises(WebhookInvalid):
            parse_webhook(_body(document))
        return

    envelope = parse_webhook(_body(document))

    expected_id = None if campaign_id is None else str(campaign_id).strip()
    assert envelope.campaign_id == expected_id
    assert envelope.account.tags == [t.strip() for t in tags if t.strip()]
    assert envelope.account.model_extra == extra
    if email is None:
        assert envelope.normalized_email is None
    else:
        assert envelope.normalized_email == email.strip().lower()
        assert normalize_email(envelope.normalized_email) == envelope.normalized_email
    known = event_type in {t.value for t in EventType}
    assert isinstance(envelope.event_type, EventType) == known
    assert envelope.dedup_key == f"{event_type}:{expected_id or envelope.normalized_email}"
    # What the receiver puts on the queue parses back to the same envelope.
    again = parse_webhook(envelope.model_dump_json())
    assert again == envelope
    assert again.dedup_key == envelope.dedup_key
