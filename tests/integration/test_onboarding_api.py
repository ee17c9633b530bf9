"""OnboardingFunction end to end inside one process: moto DynamoDB (table from template.yaml)
and the Mailivery sandbox over real HTTP on 127.0.0.1."""

from __future__ import annotations

import base64
import copy
import json
import threading
import time
from collections.abc import Iterator
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devstack.sandbox import MailiverySandbox, SandboxControl
from devstack.template import create_queues, create_table
from devstack.testkit import LambdaContext, load_function
from tests.integration.harness import API_KEY, TABLE, read_event

CONSENT_PATH = "/api/v1/campaigns/ms-graph"


@pytest.fixture
def sandbox() -> Iterator[MailiverySandbox]:
    with MailiverySandbox(
        api_keys=(API_KEY, "not-allowlisted-key"), allowlisted_keys=(API_KEY,)
    ) as running:
        yield running


@pytest.fixture
def control(sandbox: MailiverySandbox) -> Iterator[SandboxControl]:
    with SandboxControl(sandbox.url) as client:
        yield client


@pytest.fixture
def environment(sandbox: MailiverySandbox, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "WARMGATE_STAGE": "local",
        "MAILBOX_TABLE_NAME": TABLE,
        "MAILIVERY_BASE_URL": sandbox.api_base_url,
        "MAILIVERY_API_KEY": API_KEY,
        "MAILIVERY_READ_TIMEOUT_SECONDS": "1",
        "POWERTOOLS_METRICS_NAMESPACE": "warmgate-test",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    return env


@pytest.fixture
def aws(environment: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    with mock_aws():
        dynamodb = boto3.client("dynamodb")
        create_table(dynamodb, "MailboxTable", TABLE)
        monkeypatch.setenv("WORK_QUEUE_URL", create_queues(boto3.client("sqs"))["WorkQueue"])
        yield dynamodb


@pytest.fixture
def onboarding(aws: Any) -> ModuleType:
    return load_function("onboarding")


def invoke(module: ModuleType, event: dict[str, Any]) -> tuple[int, dict[str, Any], dict[str, str]]:
    response = module.lambda_handler(event, LambdaContext())
    return response["statusCode"], json.loads(response["body"]), response.get("headers", {})


def post(module: ModuleType, **changes: Any) -> tuple[int, dict[str, Any], dict[str, str]]:
    event = read_event("onboarding-request-consent.json")
    body = json.loads(event["body"])
    body.update(changes)
    event["body"] = json.dumps({k: v for k, v in body.items() if v is not None})
    return invoke(module, event)


OTHER_ROLE = "arn:aws:sts::123456789012:assumed-role/another-backend/session-1"


def request_event() -> dict[str, Any]:
    return read_event("onboarding-request-consent.json")


def as_principal(event: dict[str, Any], arn: str) -> dict[str, Any]:
    event["requestContext"]["authorizer"]["iam"]["userArn"] = arn
    return event


def failing_link_saves(
    onboarding: ModuleType, monkeypatch: pytest.MonkeyPatch, failures: int
) -> list[int]:
    """The first save of a consent URL fails `failures` times (a DynamoDB outage); returns a
    one-element list counting the attempts. No real sleeping between them."""
    service = onboarding.service
    repository = service._repository
    save = repository.save
    attempts = [0]

    def flaky(record: Any, *, read_version: int | None) -> Any:
        if record.consent_url is not None:
            attempts[0] += 1
            if attempts[0] <= failures:
                raise RuntimeError("DynamoDB unavailable")
        return save(record, read_version=read_version)

    monkeypatch.setattr(repository, "save", flaky)
    monkeypatch.setattr(service, "_sleep", lambda seconds: None)
    return attempts


def item(aws: Any, email: str = "ada.lovelace@contoso.com") -> dict[str, Any] | None:
    found = aws.get_item(
        TableName=TABLE, Key={"pk": {"S": f"mailbox#{email}"}}, ConsistentRead=True
    )
    result: dict[str, Any] | None = found.get("Item")
    return result


def mailbox_items(aws: Any) -> int:
    """Mailbox records only (the table also holds the shared request budget)."""
    return int(
        aws.scan(
            TableName=TABLE,
            FilterExpression="begins_with(pk, :mailbox)",
            ExpressionAttributeValues={":mailbox": {"S": "mailbox#"}},
        )["Count"]
    )


def consent_calls(control: SandboxControl, *, at_least: int = 0) -> list[dict[str, Any]]:
    """The sandbox logs a call once it has answered it: a hung call appears late (bounded)."""
    deadline = time.monotonic() + 5
    while True:
        calls = [c for c in control.calls() if c["path"] == CONSENT_PATH]
        if len(calls) >= at_least or time.monotonic() > deadline:
            return calls
        time.sleep(0.05)


# --- happy path and replay ---------------------------------------------------------------------


def test_request_consent_new_mailbox_returns_201_and_records_expectation(
    onboarding: ModuleType, aws: Any, control: SandboxControl
) -> None:
    status, body, _ = post(onboarding)

    assert status == 201
    assert body["email"] == "ada.lovelace@contoso.com"
    assert body["state"] == "consent_requested"
    assert body["consent_url"].startswith("https://login.microsoftonline.com/")
    assert body["expires_at"].endswith("Z")
    stored = item(aws)
    assert stored is not None
    assert stored["state"] == {"S": "consent_requested"}
    assert stored["consent_url"] == {"S": body["consent_url"]}
    assert stored["requested_by"] == {"S": "user-8841"}
    assert stored["requested_by_principal"]["S"].startswith("arn:aws:sts::123456789012:")
    assert stored["tags"] == {"L": [{"S": "tenant-42"}, {"S": "sales"}]}
    assert "purge_at" in stored
    calls = consent_calls(control)
    assert len(calls) == 1
    assert calls[0]["request_id"]
    assert calls[0]["body"]["email"] == "ada.lovelace@contoso.com"


def test_request_consent_same_request_replayed_returns_200_without_vendor_call(
    onboarding: ModuleType, control: SandboxControl
) -> None:
    _, first, _ = post(onboarding)
    status, second, _ = post(onboarding)

    assert status == 200
    assert second["consent_url"] == first["consent_url"]
    assert len(consent_calls(control)) == 1


def test_request_consent_email_differs_only_in_case_is_same_mailbox(
    onboarding: ModuleType, control: SandboxControl
) -> None:
    post(onboarding)
    status, _, _ = post(onboarding, email="  ADA.LOVELACE@contoso.COM ")
    assert status == 200
    assert len(consent_calls(control)) == 1


def test_request_consent_other_principal_while_live_returns_409(
    onboarding: ModuleType, control: SandboxControl
) -> None:
    post(onboarding)
    status, body, _ = invoke(onboarding, as_principal(request_event(), OTHER_ROLE))
    assert (status, body["code"]) == (409, "REQUESTED_BY_ANOTHER")
    assert len(consent_calls(control)) == 1


def test_request_consent_same_principal_other_label_is_a_mismatch_not_another_owner(
    onboarding: ModuleType,
) -> None:
    """`requested_by` is a free label: the owner is the IAM principal."""
    post(onboarding)
    status, body, _ = post(onboarding, requested_by="user-9999")
    assert (status, body["code"]) == (409, "REQUEST_MISMATCH")


def test_request_consent_another_session_of_the_same_role_is_the_same_owner(
    onboarding: ModuleType, control: SandboxControl
) -> None:
    post(onboarding)
    event = as_principal(
        request_event(),
        "arn:aws:sts::123456789012:assumed-role/integrator-backend/another-task-session",
    )
    status, body, _ = invoke(onboarding, event)
    assert status == 200, body  # the same request replayed by another session of the role
    assert len(consent_calls(control)) == 1


def test_withdraw_by_another_principal_is_403_and_by_an_admin_200(
    onboarding: ModuleType, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    post(onboarding)
    withdraw = read_event("onboarding-withdraw-mailbox.json")

    status, body, _ = invoke(onboarding, as_principal(copy.deepcopy(withdraw), OTHER_ROLE))
    assert (status, body["code"]) == (403, "FORBIDDEN")
    assert item(aws)["state"]["S"] == "consent_requested"  # type: ignore[index]

    admin = "arn:aws:sts::123456789012:assumed-role/warmgate-operators"
    monkeypatch.setenv("ADMIN_PRINCIPALS", f"{admin}, arn:aws:iam::123456789012:user/ops")
    as_admin = load_function("onboarding")
    status, body, _ = invoke(as_admin, as_principal(withdraw, f"{admin}/alice"))
    assert (status, body["state"]) == (200, "withdrawn")


def test_consent_link_is_answered_even_when_saving_it_keeps_failing(
    onboarding: ModuleType, aws: Any, monkeypatch: pytest.MonkeyPatch, control: SandboxControl
) -> None:
    saves = failing_link_saves(onboarding, monkeypatch, failures=99)

    status, body, _ = post(onboarding)

    assert status == 201
    assert body["consent_url"].startswith("https://login.microsoftonline.com/")
    assert saves == [4]  # every attempt was made, jittered, none succeeded
    assert len(consent_calls(control)) == 1
    record = item(aws)
    assert record is not None
    assert "consent_url" not in record  # in flight: a replay waits
    status, body, headers = post(onboarding)
    assert (status, body["code"], headers["Retry-After"]) == (
        409,
        "CONSENT_REQUEST_IN_PROGRESS",
        "2",
    )
    assert len(consent_calls(control)) == 1


def test_consent_link_save_retried_after_a_transient_failure(
    onboarding: ModuleType, aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    saves = failing_link_saves(onboarding, monkeypatch, failures=2)

    status, body, _ = post(onboarding)

    assert status == 201
    assert saves == [3]
    record = item(aws)
    assert record is not None
    assert record["consent_url"]["S"] == body["consent_url"]


def test_request_consent_failing_before_mailivery_is_called_allows_a_retry_at_once(
    onboarding: ModuleType, aws: Any, monkeypatch: pytest.MonkeyPatch, control: SandboxControl
) -> None:
    client = onboarding.service._mailivery
    fetch_key, failures = client._api_key, [1]

    def secret_unavailable() -> str:
        if failures[0]:
            failures[0] -= 1
            raise RuntimeError("Secrets Manager: InternalServiceError")
        return str(fetch_key())

    monkeypatch.setattr(client, "_api_key", secret_unavailable)

    status, body, _ = post(onboarding)
    assert (status, body["code"]) == (500, "INTERNAL_ERROR")
    assert item(aws)["state"] == {"S": "request_failed"}  # type: ignore[index]
    assert consent_calls(control) == []

    status, body, _ = post(onboarding)  # the integrator's retry: no minute in flight

    assert status == 201, body
    assert len(consent_calls(control)) == 1


def test_consent_link_saved_but_its_answer_lost_is_answered_once_not_as_withdrawn(
    onboarding: ModuleType, aws: Any, monkeypatch: pytest.MonkeyPatch, control: SandboxControl
) -> None:
    repository = onboarding.service._repository
    save = repository.save
    lost = [0]

    def answer_lost(record: Any, *, read_version: int | None) -> Any:
        stored = save(record, read_version=read_version)
        if record.consent_url is not None and not lost[0]:  # written, then the answer is lost
            lost[0] += 1
            raise RuntimeError("read timeout after DynamoDB applied the write")
        return stored

    monkeypatch.setattr(repository, "save", answer_lost)
    monkeypatch.setattr(onboarding.service, "_sleep", lambda seconds: None)

    status, body, _ = post(onboarding)

    assert (status, lost) == (201, [1])
    record = item(aws)
    assert record is not None
    assert record["consent_url"]["S"] == body["consent_url"]
    assert len(consent_calls(control)) == 1


def test_request_consent_same_requester_other_details_returns_409(onboarding: ModuleType) -> None:
    post(onboarding)
    status, body, _ = post(onboarding, first_name="Augusta")
    assert (status, body["code"]) == (409, "REQUEST_MISMATCH")


# --- vendor errors -----------------------------------------------------------------------------


def _assert_request_failed(aws: Any, code: str) -> None:
    stored = item(aws)
    assert stored is not None
    assert stored["state"] == {"S": "request_failed"}
    assert stored["last_error"]["M"]["code"] == {"S": code}
    assert stored["last_error"]["M"]["request_id"]["S"]
    assert "consent_url" not in stored


def test_request_consent_account_not_allowlisted_returns_503_feature_disabled(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILIVERY_API_KEY", "not-allowlisted-key")
    status, body, _ = post(load_function("onboarding"))

    assert (status, body["code"]) == (503, "MS_GRAPH_FEATURE_DISABLED")
    assert "allowlist" in body["message"]
    _assert_request_failed(aws, "MS_GRAPH_FEATURE_DISABLED")


def test_request_consent_vendor_rate_limited_returns_503_with_retry_after(
    onboarding: ModuleType, aws: Any, control: SandboxControl
) -> None:
    control.set_rate_limit(1)
    post(onboarding, email="first@contoso.com")

    status, body, headers = post(onboarding)

    assert (status, body["code"]) == (503, "MAILIVERY_RATE_LIMITED")
    assert int(headers["Retry-After"]) >= 1
    _assert_request_failed(aws, "RATE_LIMIT_EXCEEDED")


def test_request_consent_vendor_5xx_returns_502_and_is_not_retried(
    onboarding: ModuleType, aws: Any, control: SandboxControl
) -> None:
    control.set_faults(error_rate=1.0, error_statuses=[500], count=1)

    status, body, _ = post(onboarding)

    assert (status, body["code"]) == (502, "MAILIVERY_UNAVAILABLE")
    assert len(consent_calls(control)) == 1
    _assert_request_failed(aws, "SERVER_ERROR")


def test_request_consent_vendor_timeout_returns_502_and_is_not_retried(
    onboarding: ModuleType, aws: Any, control: SandboxControl
) -> None:
    control.set_faults(timeout_rate=1.0, hang_ms=1500, count=1)

    status, body, _ = post(onboarding)

    assert (status, body["code"]) == (502, "MAILIVERY_TIMEOUT")
    assert len(consent_calls(control, at_least=1)) == 1
    time.sleep(0.6)  # past the hang: a retry would have been logged by now
    assert len(consent_calls(control)) == 1
    _assert_request_failed(aws, "Timeout")


@pytest.mark.parametrize("fault", ["html_rate", "empty_rate", "garbage_rate"])
def test_request_consent_vendor_unintelligible_answer_returns_502(
    onboarding: ModuleType, aws: Any, control: SandboxControl, fault: str
) -> None:
    control.set_faults(**{fault: 1.0}, count=1)
    status, body, _ = post(onboarding)
    assert (status, body["code"]) == (502, "MAILIVERY_UNAVAILABLE")
    assert item(aws)["state"] == {"S": "request_failed"}  # type: ignore[index]


def test_request_consent_vendor_unreachable_returns_502(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("MAILIVERY_BASE_URL", "http://127.0.0.1:9/api/v1")  # discard port
    status, body, _ = post(load_function("onboarding"))
    assert (status, body["code"]) == (502, "MAILIVERY_UNAVAILABLE")
    _assert_request_failed(aws, "Unreachable")


def test_request_consent_consent_url_on_foreign_host_returns_502(
    aws: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    with MailiverySandbox(api_keys=(API_KEY,), consent_host="login.evil.example") as foreign:
        monkeypatch.setenv("MAILIVERY_BASE_URL", foreign.api_base_url)
        status, body, _ = post(load_function("onboarding"))
    assert (status, body["code"]) == (502, "MAILIVERY_UNAVAILABLE")
    assert "host" in body["message"]
    _assert_request_failed(aws, "UnexpectedResponse")


def test_request_consent_vendor_rejects_mailbox_returns_422(
    onboarding: ModuleType, control: SandboxControl
) -> None:
    control.seed_campaign(email="ada.lovelace@contoso.com", first_name="Ada")
    control.set_options(existing_mailbox="reject")
    status, body, _ = post(onboarding)
    assert (status, body["code"]) == (422, "MAILIVERY_VALIDATION_FAILED")


def test_request_consent_after_vendor_failure_can_be_retried(
    onboarding: ModuleType, aws: Any, control: SandboxControl
) -> None:
    control.set_faults(error_rate=1.0, error_statuses=[503], count=1)
    assert post(onboarding)[0] == 502

    status, body, _ = post(onboarding)

    assert status == 201
    assert body["state"] == "consent_requested"
    history = [h["M"]["to"]["S"] for h in item(aws)["history"]["L"]]  # type: ignore[index]
    assert history == ["consent_requested", "request_failed", "consent_requested"]


# --- re-requests ------------------------------------------------------------------------------


def test_request_consent_after_expiry_other_requester_gets_new_link(
    onboarding: ModuleType, aws: Any, control: SandboxControl
) -> None:
    _, first, _ = post(onboarding)
    aws.update_item(  # time passes: the expectation's expiry is behind us
        TableName=TABLE,
        Key={"pk": {"S": "mailbox#ada.lovelace@contoso.com"}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"S": "2020-01-01T00:00:00Z"}},
    )

    status, second, _ = post(onboarding, requested_by="user-9999")

    assert status == 201
    assert second["consent_url"] != first["consent_url"]
    assert len(consent_calls(control)) == 2
    assert len(item(aws)["history"]["L"]) == 2  # type: ignore[index]


def test_request_consent_after_withdrawal_gets_new_link_and_keeps_history(
    onboarding: ModuleType, aws: Any
) -> None:
    post(onboarding)
    assert invoke(onboarding, read_event("onboarding-withdraw-mailbox.json"))[0] == 200

    status, _, _ = post(onboarding)

    assert status == 201
    history = [h["M"]["to"]["S"] for h in item(aws)["history"]["L"]]  # type: ignore[index]
    assert history == ["consent_requested", "withdrawn", "consent_requested"]


def test_request_consent_abandoned_in_flight_record_does_not_block(
    onboarding: ModuleType, aws: Any
) -> None:
    post(onboarding)
    aws.update_item(  # the function died between the claim and storing the URL, long ago
        TableName=TABLE,
        Key={"pk": {"S": "mailbox#ada.lovelace@contoso.com"}},
        UpdateExpression="REMOVE consent_url SET updated_at = :old",
        ExpressionAttributeValues={":old": {"S": "2020-01-01T00:00:00Z"}},
    )
    status, _, _ = post(onboarding, requested_by="user-9999")
    assert status == 201


def test_request_consent_mailbox_start_being_retried_returns_409(
    onboarding: ModuleType, aws: Any
) -> None:
    post(onboarding)
    aws.update_item(
        TableName=TABLE,
        Key={"pk": {"S": "mailbox#ada.lovelace@contoso.com"}},
        UpdateExpression="SET #s = :failed",
        ExpressionAttributeNames={"#s": "state"},
        ExpressionAttributeValues={":failed": {"S": "start_failed"}},
    )
    status, body, _ = post(onboarding, requested_by="user-9999")
    assert (status, body["code"]) == (409, "ALREADY_ONBOARDED")
    assert "start_failed (being retried)" in body["message"]


# --- bad input -----------------------------------------------------------------------------


def test_request_consent_malformed_json_returns_400(onboarding: ModuleType, aws: Any) -> None:
    event = read_event("onboarding-request-consent.json")
    event["body"] = '{"email": "ada@contoso.com",'
    status, body, _ = invoke(onboarding, event)
    assert (status, body["code"]) == (400, "BAD_REQUEST")
    assert mailbox_items(aws) == 0


@pytest.mark.parametrize("raw", ["[]", '"ada@contoso.com"', "null", ""])
def test_request_consent_body_not_object_returns_400(onboarding: ModuleType, raw: str) -> None:
    event = read_event("onboarding-request-consent.json")
    event["body"] = raw
    assert invoke(onboarding, event)[0] == 400


def test_request_consent_base64_body_is_decoded(onboarding: ModuleType) -> None:
    event = read_event("onboarding-request-consent.json")
    event["body"] = base64.b64encode(event["body"].encode()).decode()
    event["isBase64Encoded"] = True
    assert invoke(onboarding, event)[0] == 201


def test_request_consent_oversized_body_returns_413(onboarding: ModuleType, aws: Any) -> None:
    status, body, _ = post(onboarding, first_name="A" * 20_000)
    assert (status, body["code"]) == (413, "PAYLOAD_TOO_LARGE")
    assert mailbox_items(aws) == 0


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"email": "ada.lovelace@"}, "email"),
        ({"email": None}, "email"),
        ({"email": 42}, "email"),
        ({"email": "\u212aate@contoso.com"}, "email"),  # KELVIN SIGN: never folded to "k"
        ({"email": "ivan@\u043f\u0440\u0438\u043c\u0435\u0440.\u0440\u0444"}, "email"),
        ({"first_name": "  "}, "first_name"),
        ({"first_name": None}, "first_name"),
        ({"last_name": "L" * 101}, "last_name"),
        ({"requested_by": None}, "requested_by"),
        ({"tags": ["has space"]}, "tags.0"),
        ({"tags": ["a,b"]}, "tags.0"),
        ({"tags": "sales"}, "tags"),
        ({"email_per_day": "40"}, "email_per_day"),
        ({"email_per_day": 0}, "email_per_day"),
        ({"email_per_day": True}, "email_per_day"),
        ({"response_rate": 101}, "response_rate"),
        ({"warmup_audience": "b2b"}, "warmup_audience"),
    ],
)
def test_request_consent_invalid_field_returns_422_naming_it(
    onboarding: ModuleType, aws: Any, control: SandboxControl, changes: dict[str, Any], field: str
) -> None:
    status, body, _ = post(onboarding, **changes)
    assert (status, body["code"]) == (422, "VALIDATION_FAILED")
    assert body["message"].startswith(f"{field}:")
    assert mailbox_items(aws) == 0
    assert consent_calls(control) == []


def test_request_consent_sample_invalid_email_event_returns_422(onboarding: ModuleType) -> None:
    status, body, _ = invoke(
        onboarding, read_event("onboarding-request-consent-invalid-email.json")
    )
    assert status == 422
    assert "email" in body["message"]


# --- GET and DELETE ----------------------------------------------------------------------------


def test_get_mailbox_existing_returns_record_with_history(onboarding: ModuleType) -> None:
    _, created, _ = post(onboarding)
    status, body, _ = invoke(onboarding, read_event("onboarding-get-mailbox.json"))
    assert status == 200
    assert body["state"] == "consent_requested"
    assert body["consent_url"] == created["consent_url"]
    assert body["campaign_id"] is None
    assert body["last_error"] is None
    assert [h["to"] for h in body["history"]] == ["consent_requested"]


def test_get_mailbox_unknown_returns_404(onboarding: ModuleType) -> None:
    status, body, _ = invoke(onboarding, read_event("onboarding-get-mailbox.json"))
    assert (status, body["code"]) == (404, "NOT_FOUND")


def test_get_mailbox_implausible_email_returns_422(onboarding: ModuleType) -> None:
    event = read_event("onboarding-get-mailbox.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/mailboxes/not-an-email"
    event["pathParameters"] = {"email": "not-an-email"}
    assert invoke(onboarding, event)[0] == 422


def test_get_mailbox_path_the_resolver_cannot_match_returns_404_not_500(
    onboarding: ModuleType,
) -> None:
    # Found by schemathesis: Powertools' <email> pattern refuses control characters, and its
    # NotFoundError used to reach the catch-all handler as a 500.
    event = read_event("onboarding-get-mailbox.json")
    event["rawPath"] = event["requestContext"]["http"]["path"] = "/mailboxes/\u0084"
    event["pathParameters"] = {"email": "\u0084"}

    status, body, _ = invoke(onboarding, event)

    assert (status, body["code"]) == (404, "NOT_FOUND")


def test_get_mailbox_after_vendor_failure_shows_last_error(
    onboarding: ModuleType, control: SandboxControl
) -> None:
    control.set_faults(error_rate=1.0, error_statuses=[500], count=1)
    post(onboarding)
    _, body, _ = invoke(onboarding, read_event("onboarding-get-mailbox.json"))
    assert body["state"] == "request_failed"
    assert body["last_error"]["code"] == "SERVER_ERROR"
    assert body["consent_url"] is None


def test_withdraw_mailbox_live_expectation_becomes_withdrawn(onboarding: ModuleType) -> None:
    post(onboarding)
    status, body, _ = invoke(onboarding, read_event("onboarding-withdraw-mailbox.json"))
    assert (status, body["state"]) == (200, "withdrawn")
    assert body["consent_url"] is None


def test_withdraw_mailbox_unknown_returns_404(onboarding: ModuleType) -> None:
    assert invoke(onboarding, read_event("onboarding-withdraw-mailbox.json"))[0] == 404


def test_withdraw_mailbox_twice_answers_the_retry_as_the_first_without_a_write(
    onboarding: ModuleType,
) -> None:
    """A DELETE retried after its answer was lost (the soak found it answered 409) gets the
    same answer: the record as withdrawn the first time, not written again."""
    post(onboarding)
    first = invoke(onboarding, read_event("onboarding-withdraw-mailbox.json"))
    again = invoke(onboarding, read_event("onboarding-withdraw-mailbox.json"))
    assert first[0] == again[0] == 200
    assert again[1]["state"] == "withdrawn"
    assert again[1]["updated_at"] == first[1]["updated_at"]


def test_withdraw_mailbox_expired_request_returns_409(onboarding: ModuleType, aws: Any) -> None:
    post(onboarding)
    aws.update_item(  # time passes: the consent link is no longer live
        TableName=TABLE,
        Key={"pk": {"S": "mailbox#ada.lovelace@contoso.com"}},
        UpdateExpression="SET expires_at = :past",
        ExpressionAttributeValues={":past": {"S": "2020-01-01T00:00:00Z"}},
    )
    status, body, _ = invoke(onboarding, read_event("onboarding-withdraw-mailbox.json"))
    assert (status, body["code"]) == (409, "NOT_WITHDRAWABLE")


# --- concurrency -------------------------------------------------------------------------------


@pytest.mark.usefixtures("atomic_conditional_writes")
def test_request_consent_two_simultaneous_requests_one_vendor_call_one_record(
    onboarding: ModuleType, aws: Any, control: SandboxControl
) -> None:
    control.set_faults(latency_ms=300)  # the first caller is still waiting on Mailivery
    start = threading.Barrier(2)
    results: list[tuple[int, dict[str, Any], dict[str, str]]] = []

    def request() -> None:
        start.wait(timeout=5)
        results.append(
            invoke(onboarding, copy.deepcopy(read_event("onboarding-request-consent.json")))
        )

    threads = [threading.Thread(target=request) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=10)

    statuses = sorted(status for status, _, _ in results)
    assert statuses == [201, 409]
    loser = next(body for status, body, _ in results if status == 409)
    assert loser["code"] == "CONSENT_REQUEST_IN_PROGRESS"
    assert len(consent_calls(control)) == 1
    assert mailbox_items(aws) == 1
    assert post(onboarding)[0] == 200  # and the loser's retry gets the same link
