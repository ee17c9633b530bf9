"""WebhookFunction inside one process against moto: WorkQueue/WorkDLQ built from template.yaml,
the token secret in moto Secrets Manager, every documented webhook (events/webhook-*.json), junk,
wrong tokens, rotation, and SQS failing then recovering."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from botocore.exceptions import EndpointConnectionError

from bench.aws_calls import AwsCalls
from devstack.template import create_queues, load_template, resource
from tests.webhook_bodies import UNUSABLE_EMAILS, largest_accepted_webhook
from warmgate.adapters import aws

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
TOKEN = "local-webhook-token"  # the token in every events/webhook-*.json
SECRET_NAME = "warmgate/test/webhook-token"
MAX_BODY = 64 * 1024

# What each documented example must become on the queue: (event_type, campaign_id, email).
EXPECTED_MESSAGES = {
    "webhook-campaign-pending.json": ("campaign.pending", "4711", "ada@contoso.com"),
    "webhook-campaign-pending-legacy.json": (
        "campaign.pending",
        "4714",
        "k.johnson@northwind-traders.com",
    ),
    "webhook-campaign-created.json": ("campaign.created", "4712", "grace.hopper@gmail.com"),
    "webhook-campaign-updated.json": ("campaign.updated", "4711", "ada@contoso.com"),
    "webhook-campaign-deleted.json": ("campaign.deleted", "4713", "alan.turing@fabrikam.co.uk"),
    "webhook-unknown-event-type.json": (
        "campaign.connection_problem",
        "4715",
        "hedy.lamarr@adatum.onmicrosoft.com",
    ),
}

Handler = Callable[[dict[str, Any]], tuple[int, dict[str, Any]]]


@pytest.fixture
def secrets(mocked_aws: None) -> Any:
    return boto3.client("secretsmanager")


@pytest.fixture
def token_secret(secrets: Any) -> Callable[[str], None]:
    """Creates the webhook token secret holding TOKEN; call it to store another value."""
    secrets.create_secret(Name=SECRET_NAME, SecretString=TOKEN)

    def store(value: str) -> None:
        secrets.put_secret_value(SecretId=SECRET_NAME, SecretString=value)

    return store


@pytest.fixture
def environment(work_queues: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    env = {
        "WARMGATE_STAGE": "dev",  # as deployed: the token comes from Secrets Manager
        "WORK_QUEUE_URL": work_queues["WorkQueue"],
        "WEBHOOK_TOKEN_SECRET": SECRET_NAME,
        "SECRET_MAX_AGE_SECONDS": "300",
        "POWERTOOLS_METRICS_NAMESPACE": "warmgate-test",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("MAILIVERY_API_KEY", raising=False)
    monkeypatch.delenv("POWERTOOLS_LOGGER_LOG_EVENT", raising=False)
    return env


@pytest.fixture
def webhook_module(
    environment: dict[str, str],
    token_secret: Callable[[str], None],
    load_handler: Callable[[str], ModuleType],
) -> ModuleType:
    return load_handler("webhook")


@pytest.fixture
def call(webhook_module: ModuleType, lambda_context: Any) -> Handler:
    def invoke(event: dict[str, Any]) -> tuple[int, dict[str, Any]]:
        response = webhook_module.lambda_handler(event, lambda_context)
        assert response["headers"] == {"content-type": "application/json"}
        return response["statusCode"], json.loads(response["body"])

    return invoke


def queued(queue_url: str) -> list[dict[str, Any]]:
    """Every message on the queue (received once, so each can only be seen once)."""
    sqs = boto3.client("sqs")
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=queue_url,
            MaxNumberOfMessages=10,
            MessageAttributeNames=["All"],
            WaitTimeSeconds=0,
        ).get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)


def event_with(
    load_event: Callable[[str], dict[str, Any]],
    body: str | None = None,
    *,
    name: str = "webhook-campaign-pending.json",
    **changes: Any,
) -> dict[str, Any]:
    event = load_event(name)
    if body is not None:
        event["body"] = body
    event.update(changes)
    return event


def with_token(event: dict[str, Any], token: str | None) -> dict[str, Any]:
    path = f"/webhooks/mailivery/{token}"
    event["rawPath"] = path
    event["requestContext"]["http"]["path"] = path
    if token is None:
        event.pop("pathParameters", None)
    else:
        event["pathParameters"] = {"token": token}
    return event


# --- the documented examples ----------------------------------------------------------------


def test_webhook_events_cover_every_documented_payload() -> None:
    payloads = {path.name for path in (EVENTS / "webhook-payloads").glob("*.json")}
    events = {path.name for path in EVENTS.glob("webhook-*.json")}
    assert events == {f"webhook-{name}" for name in payloads}
    assert events == set(EXPECTED_MESSAGES)


@pytest.mark.parametrize("name", sorted(EXPECTED_MESSAGES))
def test_webhook_event_file_wraps_its_payload_verbatim(name: str) -> None:
    event = json.loads((EVENTS / name).read_text())
    payload = (EVENTS / "webhook-payloads" / name.removeprefix("webhook-")).read_text()
    assert event["body"] == payload
    assert event["isBase64Encoded"] is False
    assert event["routeKey"] == "POST /webhooks/mailivery/{token}"
    assert event["pathParameters"] == {"token": TOKEN}
    assert "authorizer" not in event["requestContext"]


@pytest.mark.parametrize("name", sorted(EXPECTED_MESSAGES))
def test_webhook_function_documented_event_queues_one_normalized_message(
    name: str,
    call: Handler,
    load_event: Callable[[str], dict[str, Any]],
    work_queues: dict[str, str],
) -> None:
    event = load_event(name)
    event_type, campaign_id, email = EXPECTED_MESSAGES[name]
    before = datetime.now(UTC)

    status, body = call(event)

    after = datetime.now(UTC)
    assert (status, body) == (202, {"status": "accepted"})
    messages = queued(work_queues["WorkQueue"])
    assert len(messages) == 1
    message = json.loads(messages[0]["Body"])
    assert set(message) == {
        "schema",
        "event_type",
        "campaign_id",
        "email",
        "email_hint_invalid",
        "dedup_key",
        "received_at",
        "request_id",
        "payload",
    }
    assert message["schema"] == 1
    assert message["event_type"] == event_type
    assert message["campaign_id"] == campaign_id
    assert message["email"] == email
    assert message["email_hint_invalid"] is False
    assert message["dedup_key"] == f"{event_type}:{campaign_id}"
    assert message["received_at"].endswith("Z")
    received = datetime.fromisoformat(message["received_at"])
    assert before - timedelta(milliseconds=1) <= received <= after
    assert message["request_id"] == event["requestContext"]["requestId"]
    assert message["payload"] == json.loads(event["body"])
    assert messages[0]["MessageAttributes"] == {
        "event_type": {"DataType": "String", "StringValue": event_type},
        "dedup_key": {"DataType": "String", "StringValue": f"{event_type}:{campaign_id}"},
    }
    assert queued(work_queues["WorkDLQ"]) == []


def test_webhook_function_warm_accepted_webhook_makes_one_aws_call(
    environment: dict[str, str],
    token_secret: Callable[[str], None],
    load_handler: Callable[[str], ModuleType],
    load_event: Callable[[str], dict[str, Any]],
    lambda_context: Any,
) -> None:
    """The hot path, pinned: once the token is cached, SendMessage and nothing else."""
    with AwsCalls(aws.session()) as calls:
        webhook = load_handler("webhook")  # after the counter: its clients carry the hooks
        event = load_event("webhook-campaign-pending.json")
        assert webhook.lambda_handler(event, lambda_context)["statusCode"] == 202  # cold
        with calls.scope("warm") as warm:
            assert webhook.lambda_handler(event, lambda_context)["statusCode"] == 202

    assert dict(warm.calls) == {"sqs.SendMessage": 1}


def test_webhook_function_base64_body_is_decoded_and_queued(
    call: Handler, load_event: Callable[[str], dict[str, Any]], work_queues: dict[str, str]
) -> None:
    event = load_event("webhook-campaign-pending-legacy.json")
    payload = event["body"]
    event["body"] = base64.b64encode(payload.encode()).decode()
    event["isBase64Encoded"] = True

    assert call(event) == (202, {"status": "accepted"})

    messages = queued(work_queues["WorkQueue"])
    assert len(messages) == 1
    assert json.loads(messages[0]["Body"])["payload"] == json.loads(payload)


def test_webhook_function_body_of_exactly_64_kib_is_accepted(
    call: Handler, load_event: Callable[[str], dict[str, Any]], work_queues: dict[str, str]
) -> None:
    body = padded_pending_body(MAX_BODY)
    assert call(event_with(load_event, body)) == (202, {"status": "accepted"})
    assert len(queued(work_queues["WorkQueue"])) == 1


@pytest.mark.parametrize("email", UNUSABLE_EMAILS.values(), ids=UNUSABLE_EMAILS.keys())
def test_webhook_function_unusable_email_with_campaign_id_is_queued_with_flag(
    email: Any,
    call: Handler,
    load_event: Callable[[str], dict[str, Any]],
    work_queues: dict[str, str],
    powertools_log: Any,
) -> None:
    event = load_event("webhook-campaign-pending.json")
    document = json.loads(event["body"])
    document["account"]["email"] = email
    event["body"] = json.dumps(document)

    assert call(event) == (202, {"status": "accepted"})

    (message,) = queued(work_queues["WorkQueue"])
    body = json.loads(message["Body"])
    assert (body["campaign_id"], body["email"], body["email_hint_invalid"]) == ("4711", None, True)
    assert body["payload"] == document
    (line,) = [json.loads(text) for text in powertools_log.getvalue().splitlines()]
    assert (line["message"], line["email_hint_invalid"]) == ("webhook accepted", True)
    assert "contoso" not in powertools_log.getvalue().lower()  # the address is not logged


def test_webhook_function_largest_accepted_webhook_is_queued(
    call: Handler, load_event: Callable[[str], dict[str, Any]], work_queues: dict[str, str]
) -> None:
    body = largest_accepted_webhook()

    assert call(event_with(load_event, body)) == (202, {"status": "accepted"})

    (message,) = queued(work_queues["WorkQueue"])
    assert json.loads(message["Body"])["payload"] == json.loads(body)


def padded_pending_body(size: int) -> str:
    document: dict[str, Any] = {
        "type": "campaign.pending",
        "account": {"campaign_id": 1, "email": "a@b.co"},
        "padding": "",
    }
    document["padding"] = "x" * (size - len(json.dumps(document)))
    body = json.dumps(document)
    assert len(body.encode()) == size
    return body


# --- junk -----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("body", "is_base64", "status", "code", "message"),
    [
        ("this is not json", False, 400, "BAD_REQUEST", "body is not valid JSON"),
        ("", False, 400, "BAD_REQUEST", "body is not valid JSON"),
        ("eyJ0eXBlIjo*", True, 400, "BAD_REQUEST", "body is not valid base64"),
        ('[{"type": "campaign.pending"}]', False, 400, "BAD_REQUEST", "must be a JSON object"),
        (
            '{"action": "pending", "account": {"campaign_id": 4711}}',
            False,
            422,
            "VALIDATION_FAILED",
            "type is required",
        ),
        (
            '{"type": "campaign.pending", "account": {"first_name": "Ada"}}',
            False,
            422,
            "VALIDATION_FAILED",
            "account.email or account.campaign_id is required",
        ),
        (
            '{"type": "campaign.pending"}',
            False,
            422,
            "VALIDATION_FAILED",
            "account is required",
        ),
        (
            '{"type": "campaign.pending", "account": {"email": "ada@\uff20contoso.com"}}',
            False,
            422,
            "VALIDATION_FAILED",
            "account.campaign_id is required when account.email is not usable",
        ),
        (
            '{"type": "campaign.pending", "account": {"campaign_id": ".."}}',
            False,
            422,
            "VALIDATION_FAILED",
            "account.campaign_id may contain only ASCII letters, digits, '_' and '-'",
        ),
        (
            json.dumps({"type": "campaign.pending", "account": {"campaign_id": "1" * 65}}),
            False,
            422,
            "VALIDATION_FAILED",
            "account.campaign_id is longer than 64 characters",
        ),
        (
            json.dumps({"type": "t" * 129, "account": {"campaign_id": 1}}),
            False,
            422,
            "VALIDATION_FAILED",
            "type is longer than 128 characters",
        ),
        (padded_pending_body(MAX_BODY + 1), False, 413, "PAYLOAD_TOO_LARGE", "65536 bytes"),
        (
            base64.b64encode(padded_pending_body(MAX_BODY + 1).encode()).decode(),
            True,
            413,
            "PAYLOAD_TOO_LARGE",
            "65536 bytes",
        ),
    ],
    ids=[
        "not-json",
        "empty",
        "bad-base64",
        "array",
        "missing-type",
        "missing-account-identity",
        "missing-account",
        "no-id-unusable-email",
        "campaign-id-dot-dot",
        "campaign-id-65-characters",
        "type-129-characters",
        "over-64-kib",
        "over-64-kib-base64",
    ],
)
def test_webhook_function_junk_body_is_refused_and_queue_stays_empty(
    body: str,
    is_base64: bool,
    status: int,
    code: str,
    message: str,
    call: Handler,
    load_event: Callable[[str], dict[str, Any]],
    work_queues: dict[str, str],
) -> None:
    answer_status, answer = call(event_with(load_event, body, isBase64Encoded=is_base64))

    assert answer_status == status
    assert answer["code"] == code
    assert message in answer["message"]
    assert set(answer) == {"code", "message"}
    assert queued(work_queues["WorkQueue"]) == []


def test_webhook_function_missing_body_is_refused_with_400(
    call: Handler, load_event: Callable[[str], dict[str, Any]], work_queues: dict[str, str]
) -> None:
    event = load_event("webhook-campaign-pending.json")
    del event["body"]
    assert call(event)[0] == 400
    assert queued(work_queues["WorkQueue"]) == []


# --- authentication -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "token",
    ["wrong-webhook-token", "", None, "local-webhook-toke", "local-webhook-token ", "ĺocal"],
    ids=["wrong", "empty", "missing", "prefix", "trailing-space", "non-ascii"],
)
def test_webhook_function_bad_token_is_404_queue_empty_and_nothing_logged(
    token: str | None,
    call: Handler,
    load_event: Callable[[str], dict[str, Any]],
    work_queues: dict[str, str],
    powertools_log: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    event = with_token(load_event("webhook-campaign-pending.json"), token)

    assert call(event) == (404, {"code": "NOT_FOUND", "message": "Not Found"})

    assert queued(work_queues["WorkQueue"]) == []
    captured = capsys.readouterr()
    output = powertools_log.getvalue() + captured.out + captured.err
    lines = [json.loads(line) for line in powertools_log.getvalue().splitlines()]
    assert [line["message"] for line in lines] == ["webhook rejected: bad token"]
    assert lines[0]["correlation_id"] == event["requestContext"]["requestId"]
    for secret_or_personal in (TOKEN, "/webhooks/mailivery", "Lovelace", "Contoso", "4711"):
        assert secret_or_personal not in output
    if token:
        assert token not in output


def test_webhook_function_accepted_call_logs_no_token_or_personal_data(
    call: Handler,
    load_event: Callable[[str], dict[str, Any]],
    powertools_log: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    assert call(load_event("webhook-campaign-pending.json"))[0] == 202

    captured = capsys.readouterr()
    output = powertools_log.getvalue() + captured.out + captured.err
    assert "webhook accepted" in output
    for secret_or_personal in (TOKEN, "/webhooks/mailivery", "Lovelace", "Contoso"):
        assert secret_or_personal not in output


def test_webhook_function_rotation_accepts_current_and_previous_token(
    environment: dict[str, str],
    token_secret: Callable[[str], None],
    load_handler: Callable[[str], ModuleType],
    lambda_context: Any,
    load_event: Callable[[str], dict[str, Any]],
    work_queues: dict[str, str],
) -> None:
    new_token = "rotated-webhook-token-0123456789"
    token_secret(json.dumps({"current": new_token, "previous": TOKEN}))
    module = load_handler("webhook")

    def status(token: str) -> int:
        event = with_token(load_event("webhook-campaign-pending.json"), token)
        result: int = module.lambda_handler(event, lambda_context)["statusCode"]
        return result

    assert status(TOKEN) == 202
    assert status(new_token) == 202
    assert status("some-other-token-0123456789") == 404
    assert len(queued(work_queues["WorkQueue"])) == 2


def test_webhook_function_token_rotated_after_cold_start_is_picked_up_on_a_miss(
    webhook_module: ModuleType,
    call: Handler,
    token_secret: Callable[[str], None],
    load_event: Callable[[str], dict[str, Any]],
    work_queues: dict[str, str],
) -> None:
    new_token = "rotated-webhook-token-0123456789"
    assert call(load_event("webhook-campaign-pending.json"))[0] == 202  # caches TOKEN
    token_secret(new_token)
    fresh_event = with_token(load_event("webhook-campaign-pending.json"), new_token)

    assert call(fresh_event)[0] == 404  # read less than a minute ago: no re-read yet
    webhook_module.intake.tokens.refresh_after_miss_seconds = 0
    assert call(fresh_event)[0] == 202
    assert call(load_event("webhook-campaign-pending.json"))[0] == 404  # old token gone
    assert len(queued(work_queues["WorkQueue"])) == 2


def test_webhook_function_token_secret_unreadable_is_503_and_queue_empty(
    environment: dict[str, str],
    secrets: Any,
    load_handler: Callable[[str], ModuleType],
    lambda_context: Any,
    load_event: Callable[[str], dict[str, Any]],
    work_queues: dict[str, str],
) -> None:
    module = load_handler("webhook")  # no secret was created
    response = module.lambda_handler(load_event("webhook-campaign-pending.json"), lambda_context)
    assert response["statusCode"] == 503
    assert json.loads(response["body"])["code"] == "SERVICE_UNAVAILABLE"
    assert queued(work_queues["WorkQueue"]) == []


def test_webhook_function_token_secret_too_short_is_503_and_not_logged(
    environment: dict[str, str],
    token_secret: Callable[[str], None],
    load_handler: Callable[[str], ModuleType],
    lambda_context: Any,
    load_event: Callable[[str], dict[str, Any]],
    work_queues: dict[str, str],
    powertools_log: Any,
) -> None:
    token_secret("guessable")  # an operator's mistake: every call is refused until fixed
    module = load_handler("webhook")
    event = with_token(load_event("webhook-campaign-pending.json"), "guessable")

    response = module.lambda_handler(event, lambda_context)

    assert response["statusCode"] == 503
    assert json.loads(response["body"])["code"] == "SERVICE_UNAVAILABLE"
    assert "at least 16 characters" in powertools_log.getvalue()
    assert "guessable" not in powertools_log.getvalue()
    assert queued(work_queues["WorkQueue"]) == []


# --- SQS failing, then recovering -----------------------------------------------------------


def test_webhook_function_queue_gone_is_503_then_retry_after_recovery_queues_once(
    call: Handler,
    load_event: Callable[[str], dict[str, Any]],
    work_queues: dict[str, str],
    powertools_log: Any,
) -> None:
    sqs = boto3.client("sqs")
    event = load_event("webhook-campaign-pending.json")
    sqs.delete_queue(QueueUrl=work_queues["WorkQueue"])

    status, body = call(event)

    assert status == 503
    assert body["code"] == "QUEUE_UNAVAILABLE"
    assert "webhook not queued" in powertools_log.getvalue()
    assert "Lovelace" not in powertools_log.getvalue()

    recreated = create_queues(sqs)  # SQS is back (same name, same URL)
    assert recreated["WorkQueue"] == work_queues["WorkQueue"]
    assert call(event) == (202, {"status": "accepted"})  # Mailivery retries the same call
    messages = queued(work_queues["WorkQueue"])
    assert len(messages) == 1
    assert json.loads(messages[0]["Body"])["request_id"] == event["requestContext"]["requestId"]


def test_webhook_function_sqs_unreachable_is_503_after_bounded_retries_then_202(
    webhook_module: ModuleType,
    call: Handler,
    load_event: Callable[[str], dict[str, Any]],
    work_queues: dict[str, str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    attempts: list[str] = []
    monkeypatch.setattr("botocore.endpoint.time.sleep", lambda seconds: None)  # retry backoff

    def unreachable(request: Any, **kwargs: Any) -> None:
        attempts.append(request.url)
        raise EndpointConnectionError(endpoint_url=request.url)

    events = webhook_module.sqs.meta.events
    events.register("before-send.sqs.SendMessage", unreachable, unique_id="unreachable")
    event = load_event("webhook-campaign-updated.json")

    status, body = call(event)

    assert (status, body["code"]) == (503, "QUEUE_UNAVAILABLE")
    assert len(attempts) == 3  # SQS_CLIENT_CONFIG: three attempts, then the caller retries
    assert queued(work_queues["WorkQueue"]) == []

    events.unregister("before-send.sqs.SendMessage", unique_id="unreachable")
    assert call(event) == (202, {"status": "accepted"})
    assert len(queued(work_queues["WorkQueue"])) == 1


# --- the queues as the template defines them ------------------------------------------------


def test_work_queue_redrive_policy_points_to_work_dlq_after_five_receives(
    work_queues: dict[str, str],
) -> None:
    sqs = boto3.client("sqs")
    dlq_arn = sqs.get_queue_attributes(
        QueueUrl=work_queues["WorkDLQ"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]
    attributes = sqs.get_queue_attributes(
        QueueUrl=work_queues["WorkQueue"], AttributeNames=["All"]
    )["Attributes"]

    assert json.loads(attributes["RedrivePolicy"]) == {
        "deadLetterTargetArn": dlq_arn,
        "maxReceiveCount": 5,
    }
    assert attributes["SqsManagedSseEnabled"] == "true"
    dlq = sqs.get_queue_attributes(QueueUrl=work_queues["WorkDLQ"], AttributeNames=["All"])
    assert dlq["Attributes"]["MessageRetentionPeriod"] == str(14 * 24 * 3600)
    assert dlq["Attributes"]["SqsManagedSseEnabled"] == "true"


def test_work_queue_visibility_timeout_covers_six_worker_timeouts_and_batching_window() -> None:
    template = load_template()
    worker = template["Resources"].get("WorkerFunction", {}).get("Properties", {})
    timeout = worker.get("Timeout", template["Globals"]["Function"]["Timeout"])
    windows = [
        event["Properties"].get("MaximumBatchingWindowInSeconds", 0)
        for event in worker.get("Events", {}).values()
        if event.get("Type") == "SQS"
    ]
    # Until the worker exists, assume the 20 s window the comment in template.yaml reserves.
    batching_window = max(windows, default=20)
    visibility = resource("WorkQueue")["Properties"]["VisibilityTimeout"]
    assert visibility >= 6 * timeout + batching_window


def test_work_dlq_alarm_fires_on_any_visible_message() -> None:
    alarm = resource("WorkDlqAlarm")["Properties"]
    assert alarm["MetricName"] == "ApproximateNumberOfMessagesVisible"
    assert alarm["Dimensions"] == [
        {"Name": "QueueName", "Value": {"Fn::GetAtt": ["WorkDLQ", "QueueName"]}}
    ]
    assert (alarm["ComparisonOperator"], alarm["Threshold"]) == ("GreaterThanThreshold", 0)


def test_webhook_function_template_route_has_no_authorizer_and_least_privilege() -> None:
    props = resource("WebhookFunction")["Properties"]
    (route,) = props["Events"].values()
    assert route["Type"] == "HttpApi"
    assert route["Properties"]["Path"] == "/webhooks/mailivery/{token}"
    assert route["Properties"]["Method"] == "POST"
    assert route["Properties"]["Auth"] == {"Authorizer": "NONE"}
    assert props["Role"] == {"Fn::GetAtt": ["WebhookFunctionRole", "Arn"]}
    role = resource("WebhookFunctionRole")["Properties"]
    statements = [s for p in role["Policies"] for s in p["PolicyDocument"]["Statement"]]
    assert {(json.dumps(s["Action"]), json.dumps(s["Resource"])) for s in statements} == {
        (
            json.dumps(["logs:CreateLogStream", "logs:PutLogEvents"]),
            json.dumps({"Fn::GetAtt": ["WebhookLogGroup", "Arn"]}),
        ),
        (json.dumps("sqs:SendMessage"), json.dumps({"Fn::GetAtt": ["WorkQueue", "Arn"]})),
        (json.dumps("secretsmanager:GetSecretValue"), json.dumps({"Ref": "WebhookTokenSecret"})),
    }
    assert props["LoggingConfig"] == {"LogGroup": {"Ref": "WebhookLogGroup"}}


# --- the hot path's import graph ------------------------------------------------------------


@pytest.mark.slow
def test_webhook_function_import_graph_leaves_out_heavy_modules(
    tmp_path: Path,
) -> None:
    forbidden = (
        "httpx",
        "warmgate.api.http",
        "warmgate.services.onboarding",
        "warmgate.adapters.mailivery",
        "warmgate.adapters.dynamodb",
        "aws_xray_sdk",
        "aws_lambda_powertools.event_handler",
        "aws_lambda_powertools.utilities.parser",
        "aws_lambda_powertools.utilities.validation",
    )
    script = (
        "import json, sys\nimport functions.webhook.app\nprint(json.dumps(sorted(sys.modules)))\n"
    )
    env = {
        **os.environ,
        "PYTHONPATH": os.pathsep.join([str(ROOT / "layers" / "common"), str(ROOT)]),
        "AWS_DEFAULT_REGION": "eu-west-1",
        "WORK_QUEUE_URL": "https://sqs.eu-west-1.amazonaws.com/123456789012/q",
        "WEBHOOK_TOKEN_SECRET": SECRET_NAME,
        "WARMGATE_STAGE": "dev",
    }
    env.pop("MAILIVERY_API_KEY", None)
    result = subprocess.run(  # noqa: S603 - our own interpreter, a fixed script
        [sys.executable, "-c", script],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    modules = json.loads(result.stdout)
    loaded = [m for m in modules if any(m == f or m.startswith(f + ".") for f in forbidden)]
    assert loaded == []
