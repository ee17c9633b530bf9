"""Shared pieces of the integration tests: events, fresh handler modules, the environment the
handlers read, and a `Stack` that drives onboarding → sandbox consent → worker in one process."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from types import ModuleType
from typing import Any
from urllib.parse import quote

import pytest

from devstack.sandbox import SandboxControl
from devstack.testkit import LambdaContext
from warmgate.adapters.dynamodb import MailboxRepository
from warmgate.adapters.sqs import QueuedWebhook
from warmgate.domain.mailboxes import ExpectedMailbox, MailboxState, iso
from warmgate.domain.webhooks import EventType

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
TABLE = "warmgate-mailboxes-test"
API_KEY = "sandbox-key"
ADA = "ada.lovelace@contoso.com"


def read_event(name: str) -> dict[str, Any]:
    """An events/<name> file as a fresh dict (tests may change it)."""
    event: dict[str, Any] = json.loads((EVENTS / name).read_text())
    return event


def set_environment(monkeypatch: pytest.MonkeyPatch, mailivery_base_url: str) -> None:
    env = {
        "AWS_DEFAULT_REGION": "eu-west-1",
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "WARMGATE_STAGE": "local",
        "MAILBOX_TABLE_NAME": TABLE,
        "MAILIVERY_BASE_URL": mailivery_base_url,
        "MAILIVERY_API_KEY": API_KEY,
        "MAILIVERY_READ_TIMEOUT_SECONDS": "1",
        "MAILIVERY_READ_RETRIES": "0",
        "POWERTOOLS_METRICS_NAMESPACE": "warmgate-test",
    }
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)


@dataclass
class Stack:
    aws: Any
    sqs: Any
    queue_url: str
    control: SandboxControl
    onboarding: ModuleType
    worker: ModuleType

    # --- the flow ---

    def expect(self, email: str = ADA, **changes: Any) -> str:
        """POST /mailboxes through the onboarding handler; returns the consent URL."""
        status, body, _ = self.request(email, **changes)
        assert status == 201, body
        url: str = body["consent_url"]
        return url

    def request(
        self, email: str = ADA, *, principal: str | None = None, **changes: Any
    ) -> tuple[int, dict[str, Any], Any]:
        """POST /mailboxes (as `principal`, else the events' caller): (status, body, headers)."""
        event = read_event("onboarding-request-consent.json")
        event["body"] = json.dumps(json.loads(event["body"]) | {"email": email} | changes)
        if principal is not None:
            event["requestContext"]["authorizer"]["iam"]["userArn"] = principal
        return self._api(event)

    def on_mailbox(self, event_name: str, email: str = ADA) -> tuple[int, dict[str, Any], Any]:
        """GET / DELETE / POST .../resume from events/<event_name>, for `email`."""
        event = read_event(event_name)
        quoted = quote(email, safe="")
        for holder, key in ((event, "rawPath"), (event["requestContext"]["http"], "path")):
            holder[key] = holder[key].replace("ada.lovelace%40contoso.com", quoted)
        event["pathParameters"] = {"email": email}
        return self._api(event)

    def _api(self, event: dict[str, Any]) -> tuple[int, dict[str, Any], Any]:
        response = self.onboarding.lambda_handler(event, LambdaContext())
        return response["statusCode"], json.loads(response["body"]), response["headers"]

    def seed_expected(self, email: str) -> str:
        """An expectation and its consented (pending) campaign, as onboarding and the owner
        leave them, written directly: no onboarding call, so no request-budget token taken."""
        MailboxRepository(self.aws, TABLE).save(
            expectation(email, datetime.now(UTC)), read_version=None
        )
        return str(self.control.seed_campaign(email=email)["id"])

    def consent(self, url: str, email: str | None = None) -> str:
        return str(self.control.consent(url=url, email=email)["campaign"]["id"])

    def deliver(
        self,
        *bodies: str,
        receive_count: int = 1,
        attempt: int = 0,
        context: LambdaContext | None = None,
    ) -> list[str]:
        """Invoke the worker with one SQS batch (each message with that `attempt` attribute);
        returns the failed message ids."""
        event = read_event("worker-batch-valid.json")
        template = event["Records"][0]
        records = []
        for n, body in enumerate(bodies):
            record = copy.deepcopy(template)
            record["messageId"] = f"message-{n}"
            record["body"] = body
            record["attributes"]["ApproximateReceiveCount"] = str(receive_count)
            if attempt:
                record["messageAttributes"] = {
                    "attempt": {"stringValue": str(attempt), "dataType": "Number"}
                }
            records.append(record)
        response = self.worker.lambda_handler({"Records": records}, context or LambdaContext())
        return [failure["itemIdentifier"] for failure in response["batchItemFailures"]]

    def drain(self) -> int:
        """Run the worker on everything visible in WorkQueue (bounded); returns messages handled."""
        from devstack.sqs_poller import poll_once

        arn = self.sqs.get_queue_attributes(QueueUrl=self.queue_url, AttributeNames=["QueueArn"])[
            "Attributes"
        ]["QueueArn"]
        handled = 0
        for _ in range(20):
            received, _ = poll_once(
                self.sqs, self.queue_url, arn, self.worker.lambda_handler, LambdaContext()
            )
            if not received:
                break
            handled += received
        return handled

    # --- observations ---

    def vendor_calls(self, suffix: str, method: str = "PATCH") -> list[dict[str, Any]]:
        return [
            c for c in self.control.calls() if c["method"] == method and c["path"].endswith(suffix)
        ]

    def mailbox(self, email: str = ADA) -> dict[str, Any]:
        item = self.aws.get_item(
            TableName=TABLE, Key={"pk": {"S": f"mailbox#{email}"}}, ConsistentRead=True
        )["Item"]
        scalars = ("S", "N", "BOOL")
        return {
            k: next(v[t] for t in scalars if t in v)
            for k, v in item.items()
            if v.keys() & set(scalars)
        }

    def ledger(self, campaign_id: str) -> dict[str, Any] | None:
        item = self.aws.get_item(
            TableName=TABLE, Key={"pk": {"S": f"campaign#{campaign_id}"}}, ConsistentRead=True
        ).get("Item")
        return None if item is None else {k: v.get("S", v.get("N")) for k, v in item.items()}

    def deferred(self) -> list[dict[str, Any]]:
        """Messages the worker put back with a delay (moto keeps them invisible until due)."""
        attributes = self.sqs.get_queue_attributes(
            QueueUrl=self.queue_url, AttributeNames=["ApproximateNumberOfMessagesDelayed"]
        )["Attributes"]
        return [{}] * int(attributes["ApproximateNumberOfMessagesDelayed"])

    def lose_connection(self, campaign_id: str) -> None:
        """The campaign's mailbox loses its connection at Mailivery, and the worker gets the
        webhook that reports it."""
        self.control.break_connection(campaign_id)
        self.deliver(message("campaign.connection_problem", campaign_id))

    def record_deferral_delays(self, monkeypatch: pytest.MonkeyPatch) -> list[int]:
        """From now on, the delay of every message the worker sends back to WorkQueue, in order
        (each is still sent)."""
        delays: list[int] = []
        queue = self.worker.batch.work_queue
        send = queue.send

        def recording(message: QueuedWebhook, *, delay_seconds: int = 0) -> str:
            delays.append(delay_seconds)
            return send(message, delay_seconds=delay_seconds)

        monkeypatch.setattr(queue, "send", recording)
        return delays


def message(event_type: str, campaign_id: str | None, email: str | None = ADA) -> str:
    payload = {
        "type": event_type,
        "action": event_type.removeprefix("campaign."),
        "account": {"campaign_id": campaign_id, "email": email},
    }
    return QueuedWebhook(
        event_type=event_type,
        campaign_id=campaign_id,
        email=email,
        dedup_key=f"{event_type}:{campaign_id}",
        received_at="2026-11-25T23:15:02Z",
        request_id="test-request",
        payload=payload,
    ).message_body()


def pending(campaign_id: str, email: str | None = ADA) -> str:
    return message(EventType.PENDING, campaign_id, email)


def expectation(email: str, now: datetime) -> ExpectedMailbox:
    """A live expectation, as OnboardingFunction leaves it after issuing a consent link."""
    return ExpectedMailbox(
        email=email,
        state=MailboxState.CONSENT_REQUESTED,
        first_name="Box",
        requested_by="load-test",
        requested_at=iso(now),
        expires_at=iso(now + timedelta(hours=1)),
        updated_at=iso(now),
        consent_url="https://login.microsoftonline.com/common?client_id=a&state=b",
    )
