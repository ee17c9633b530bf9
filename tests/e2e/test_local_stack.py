"""The onboarding flow end to end through the local stack, over real HTTP only:
integrator → API (onboarding λ) → Mailivery sandbox → owner consents → webhook λ → WorkQueue →
worker λ → Mailivery → `GET /mailboxes/{email}`.

Every wait is a bounded poll that ends as soon as its condition holds.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

from devstack.sandbox import SandboxControl
from devstack.stack import (
    ACCOUNT_ID,
    FunctionLoadError,
    FunctionSpec,
    LocalFunction,
    LocalStack,
    ScheduleSource,
)
from tests.e2e.conftest import eventually, unique_email

pytestmark = pytest.mark.slow

ROOT = Path(__file__).resolve().parents[2]
LOCAL_DEVELOPER = f"arn:aws:iam::{ACCOUNT_ID}:user/local-developer"


# --- helpers ---------------------------------------------------------------------------------


def request_consent(api: httpx.Client, email: str, requested_by: str = "e2e") -> dict[str, Any]:
    response = api.post(
        "/mailboxes", json={"email": email, "first_name": "Ada", "requested_by": requested_by}
    )
    assert response.status_code == 201, response.text
    body: dict[str, Any] = response.json()
    return body


def mailbox(api: httpx.Client, email: str) -> dict[str, Any] | None:
    response = api.get(f"/mailboxes/{email}")
    if response.status_code == 404:
        return None
    assert response.status_code == 200, response.text
    record: dict[str, Any] = response.json()
    return record


def wait_for_state(api: httpx.Client, email: str, state: str) -> dict[str, Any]:
    return eventually(
        lambda: record if (record := mailbox(api, email)) and record["state"] == state else None,
        f"{email} to be {state}",
    )


def vendor_changes(control: SandboxControl, campaign_id: int) -> list[str]:
    """The state-changing Mailivery calls made for one campaign: start-warmup, resume-warmup …"""
    return [
        call["path"].rsplit("/", 1)[-1] if call["method"] == "PATCH" else call["method"]
        for call in control.calls()
        if call["method"] in ("PATCH", "DELETE") and f"/campaigns/{campaign_id}" in call["path"]
    ]


def campaign_status(control: SandboxControl, campaign_id: int) -> str | None:
    return next((c["status"] for c in control.campaigns() if c["id"] == campaign_id), None)


def queue_counts(sqs: Any, queue_url: str) -> tuple[int, int, int]:
    attributes = sqs.get_queue_attributes(
        QueueUrl=queue_url,
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return (
        int(attributes["ApproximateNumberOfMessages"]),
        int(attributes["ApproximateNumberOfMessagesNotVisible"]),
        int(attributes["ApproximateNumberOfMessagesDelayed"]),
    )


def wait_until_worked_off(sqs: Any, stack: LocalStack) -> None:
    """WorkQueue empty: nothing waiting, in flight or delayed, so the worker is done."""
    url = stack.queue_url("WorkQueue")
    eventually(lambda: True if queue_counts(sqs, url) == (0, 0, 0) else None, "WorkQueue empty")


def run_devstack(*args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and module
        [sys.executable, "-m", "devstack", *args],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


# --- the flow --------------------------------------------------------------------------------


def test_local_stack_expected_mailbox_consents_and_ends_warming(
    api: httpx.Client, control: SandboxControl
) -> None:
    email = unique_email("ada")

    answer = request_consent(api, email)
    assert answer["state"] == "consent_requested"
    assert answer["consent_url"].startswith("https://login.microsoftonline.com/")
    campaign = control.consent(url=answer["consent_url"])["campaign"]

    record = wait_for_state(api, email, "warming")
    assert record["campaign_id"] == str(campaign["id"])
    assert [step["to"] for step in record["history"]] == [
        "consent_requested",
        "verifying",
        "warming",
    ]
    assert vendor_changes(control, campaign["id"]) == ["start-warmup"]
    assert campaign_status(control, campaign["id"]) == "active"


def test_local_stack_protected_route_sees_local_iam_identity(api: httpx.Client) -> None:
    email = unique_email("principal")
    request_consent(api, email)

    record = mailbox(api, email)

    assert record is not None
    assert record["requested_by_principal"] == LOCAL_DEVELOPER


def test_local_stack_consent_with_another_mailbox_is_never_started(
    api: httpx.Client, control: SandboxControl, sqs: Any, local_stack: LocalStack
) -> None:
    requested, signed_in = unique_email("bob"), unique_email("mallory")
    url = request_consent(api, requested)["consent_url"]

    campaign = control.consent(url=url, email=signed_in)["campaign"]

    # The worker has re-read the campaign, decided and finished with the message.
    eventually(
        lambda: (
            True
            if any(c["path"] == f"/api/v1/campaigns/{campaign['id']}" for c in control.calls())
            else None
        ),
        "the worker to re-read the campaign",
    )
    wait_until_worked_off(sqs, local_stack)
    assert vendor_changes(control, campaign["id"]) == []
    assert campaign_status(control, campaign["id"]) == "pending"
    record = mailbox(api, requested)
    assert record is not None
    assert record["state"] == "consent_requested"
    assert mailbox(api, signed_in) is None


def test_local_stack_paused_campaign_of_expected_mailbox_is_resumed(
    api: httpx.Client, control: SandboxControl
) -> None:
    email = unique_email("grace")
    url = request_consent(api, email)["consent_url"]
    control.set_webhooks("reorder")  # Mailivery's webhook is late …
    campaign = control.consent(url=url)["campaign"]
    control.pause_campaign(campaign["id"])  # … and the campaign is paused meanwhile (no webhook)

    control.set_webhooks("deliver")
    assert control.flush_webhooks() == 1

    wait_for_state(api, email, "warming")
    assert vendor_changes(control, campaign["id"]) == ["resume-warmup"]
    assert campaign_status(control, campaign["id"]) == "active"


def test_local_stack_duplicate_webhook_starts_warmup_once(
    api: httpx.Client, control: SandboxControl, sqs: Any, local_stack: LocalStack
) -> None:
    email = unique_email("dup")
    url = request_consent(api, email)["consent_url"]
    control.set_webhooks("duplicate")

    campaign = control.consent(url=url)["campaign"]

    deliveries = eventually(
        lambda: (
            found
            if len(
                found := [
                    d
                    for d in control.webhook_deliveries("campaign.pending")
                    if d["campaign_id"] == campaign["id"]
                ]
            )
            == 2
            else None
        ),
        "both copies of the webhook",
    )
    assert [d["status_code"] for d in deliveries] == [202, 202]
    wait_for_state(api, email, "warming")
    wait_until_worked_off(sqs, local_stack)
    assert vendor_changes(control, campaign["id"]) == ["start-warmup"]


def test_local_stack_message_the_worker_always_fails_ends_in_dlq(
    sqs: Any, local_stack: LocalStack
) -> None:
    body = "not a queued webhook " + unique_email("poison")
    sqs.send_message(QueueUrl=local_stack.queue_url("WorkQueue"), MessageBody=body)
    dlq = local_stack.queue_url("WorkDLQ")

    def dead_lettered() -> dict[str, Any] | None:
        messages = sqs.receive_message(
            QueueUrl=dlq, MaxNumberOfMessages=10, MessageSystemAttributeNames=["All"]
        ).get("Messages", [])
        return next((m for m in messages if m["Body"] == body), None)

    # 5 receives (maxReceiveCount), one 1-second visibility timeout apart, then the redrive.
    message = eventually(dead_lettered, "the message in WorkDLQ", timeout=15)
    assert int(message["Attributes"]["ApproximateReceiveCount"]) >= 5
    sqs.delete_message(QueueUrl=dlq, ReceiptHandle=message["ReceiptHandle"])


# --- what API Gateway itself answers -----------------------------------------------------------


@pytest.mark.parametrize(
    ("method", "path"), [("GET", "/nope"), ("PUT", "/mailboxes"), ("PATCH", "/mailboxes")]
)
def test_local_stack_unknown_route_is_api_gateway_not_found(
    api: httpx.Client, method: str, path: str
) -> None:
    response = api.request(method, path)

    assert response.status_code == 404
    assert response.json() == {"message": "Not Found"}


def test_local_stack_webhook_with_wrong_token_is_not_found(
    api: httpx.Client, control: SandboxControl
) -> None:
    response = api.post("/webhooks/mailivery/wrong-token-0123456789", json={"type": "x"})

    assert response.status_code == 404


# --- the schedule ------------------------------------------------------------------------------


def test_local_stack_scheduled_function_gets_an_eventbridge_event(
    local_stack: LocalStack,
) -> None:
    if not local_stack.schedules:
        pytest.skip("no function with a Schedule/ScheduleV2 event in template.yaml")
    schedule = local_stack.schedules[0]
    before = schedule.function.invocations

    event = schedule.event()
    schedule.fire()

    assert event["detail-type"] == "Scheduled Event"
    assert event["source"] in ("aws.events", "aws.scheduler")
    assert schedule.function.invocations == before + 1


class _CountingFunction:
    """Stands in for a LocalFunction: counts invocations."""

    logical_id = "CountingFunction"

    def __init__(self) -> None:
        self.events: list[Any] = []

    def invoke(self, event: Any) -> None:
        self.events.append(event)


def test_schedule_fires_every_interval_and_stops_on_shutdown() -> None:
    function = _CountingFunction()
    stopping = threading.Event()
    schedule = ScheduleSource(
        function,  # type: ignore[arg-type]
        "Tick",
        "Schedule",
        {"ScheduleExpression": "rate(1 minute)"},
        stopping,
        interval=0.05,
    )
    schedule.start()
    eventually(lambda: True if len(function.events) >= 2 else None, "two scheduled runs")

    stopping.set()
    schedule.join(1.0)

    assert not schedule._thread.is_alive()
    assert function.events[0]["detail-type"] == "Scheduled Event"
    assert function.events[0]["source"] == "aws.events"


# --- invoke, like sam local invoke ----------------------------------------------------------------


def test_invoke_standalone_accepts_sample_webhook_event() -> None:
    result = run_devstack("invoke", "WebhookFunction", "-e", "events/webhook-campaign-pending.json")

    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)  # stdout is the response and nothing else
    assert response["statusCode"] == 202
    assert "REPORT RequestId:" in result.stderr


def test_invoke_against_running_stack_reads_its_table(
    api: httpx.Client, local_stack: LocalStack, tmp_path: Path
) -> None:
    email = unique_email("invoke")
    request_consent(api, email)
    event = json.loads((ROOT / "events" / "onboarding-get-mailbox.json").read_text())
    event["rawPath"] = event["requestContext"]["http"]["path"] = f"/mailboxes/{email}"
    event["pathParameters"] = {"email": email}
    (tmp_path / "event.json").write_text(json.dumps(event))

    result = run_devstack(
        "invoke",
        "OnboardingFunction",
        "-e",
        str(tmp_path / "event.json"),
        "--endpoint-url",
        local_stack.moto_url,
        "--sandbox-url",
        local_stack.sandbox_url,
    )

    assert result.returncode == 0, result.stderr
    response = json.loads(result.stdout)
    assert response["statusCode"] == 200
    assert json.loads(response["body"])["state"] == "consent_requested"


def test_invoke_unhandled_exception_prints_lambda_error_and_fails() -> None:
    result = run_devstack("invoke", "WorkerFunction", "-e", "events/worker-batch-malformed.json")

    assert result.returncode == 1
    error = json.loads(result.stdout)
    assert error["errorType"] == "BatchProcessingError"
    assert set(error) == {"errorMessage", "errorType", "requestId", "stackTrace"}


# --- clear errors ------------------------------------------------------------------------------


def test_run_with_api_port_in_use_names_the_port() -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        result = run_devstack("run", "--port", str(port), "--sandbox-port", "0")

    assert result.returncode == 2
    assert f"port {port} (API)" in result.stderr


def test_function_that_fails_to_import_is_named(tmp_path: Path) -> None:
    (tmp_path / "app.py").write_text("raise RuntimeError('missing MAILBOX_TABLE_NAME')\n")
    spec = FunctionSpec(
        logical_id="BrokenFunction",
        code_dir=tmp_path,
        handler="app.lambda_handler",
        timeout_s=3,
        memory_mb=128,
        variables={},
        layer_dirs=(),
        events={},
    )

    with pytest.raises(FunctionLoadError, match=r"BrokenFunction .* RuntimeError: missing MAILBOX"):
        LocalFunction(spec, {}).load()
