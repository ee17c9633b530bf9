"""Fixtures for handler tests against moto: AWS environment, queues built from template.yaml,
fresh handler imports, a Lambda context, and the Powertools log output."""

from __future__ import annotations

import io
import logging
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import boto3
import pytest
from moto import mock_aws

from devstack.sandbox import MailiverySandbox, SandboxControl
from devstack.template import create_queues, create_table
from devstack.testkit import LambdaContext, atomic_dynamodb_writes, load_function
from tests.integration.harness import (
    TABLE,
    Stack,
    read_event,
    set_environment,
)
from warmgate.adapters.aws import reset_session
from warmgate.adapters.secrets import reset_secrets

ROOT = Path(__file__).resolve().parents[2]
EVENTS = ROOT / "events"
AWS_REGION = "eu-west-1"


@pytest.fixture
def aws_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """Fake credentials and a region, and no endpoint override, so boto3 only talks to moto."""
    for name, value in {
        "AWS_DEFAULT_REGION": AWS_REGION,
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SECURITY_TOKEN": "testing",
        "AWS_SESSION_TOKEN": "testing",
    }.items():
        monkeypatch.setenv(name, value)
    monkeypatch.delenv("AWS_ENDPOINT_URL", raising=False)
    monkeypatch.delenv("AWS_PROFILE", raising=False)


@pytest.fixture
def mocked_aws(aws_environment: None) -> Iterator[None]:
    """moto for the test's duration; the secrets cache and the botocore session start and end
    empty, so no secret value, client or session leaks from one test (or one moto backend, or a
    local stack) to the next."""
    fresh_aws_clients()
    with mock_aws():
        yield
    fresh_aws_clients()


def fresh_aws_clients() -> None:
    reset_secrets()
    reset_session()


@pytest.fixture
def work_queues(mocked_aws: None) -> dict[str, str]:
    """WorkQueue and WorkDLQ, created from template.yaml's own properties: {logical id: URL}."""
    return create_queues(boto3.client("sqs"))


@pytest.fixture
def stack(sandbox: MailiverySandbox, monkeypatch: pytest.MonkeyPatch) -> Iterator[Stack]:
    """Moto with the table and queues, the sandbox, and fresh onboarding and worker handlers."""
    set_environment(monkeypatch, sandbox.api_base_url)
    fresh_aws_clients()
    with mock_aws(), SandboxControl(sandbox.url) as control:
        aws = boto3.client("dynamodb")
        sqs = boto3.client("sqs")
        create_table(aws, "MailboxTable", TABLE)
        queue_url = create_queues(sqs)["WorkQueue"]
        monkeypatch.setenv("WORK_QUEUE_URL", queue_url)
        yield Stack(
            aws, sqs, queue_url, control, load_function("onboarding"), load_function("worker")
        )


@pytest.fixture
def atomic_conditional_writes() -> Iterator[None]:
    with atomic_dynamodb_writes():
        yield


@pytest.fixture
def load_handler() -> Callable[[str], ModuleType]:
    """functions/<name>/app.py as a brand-new module (see harness.load_function)."""
    return load_function


@pytest.fixture
def lambda_context() -> LambdaContext:
    return LambdaContext("WebhookFunction", region=AWS_REGION)


@pytest.fixture
def load_event() -> Callable[[str], dict[str, Any]]:
    """An events/<name> file as a fresh dict (tests may change it)."""
    return read_event


@pytest.fixture
def powertools_log() -> Iterator[io.StringIO]:
    """Everything the Powertools logger writes during the test (its JSON lines, as Lambda would
    print them). The logger's handler keeps the stream it was created with, which capsys does
    not replace, so the stream is swapped here instead."""
    from warmgate.observability import logger

    handler = logger.registered_handler
    assert isinstance(handler, logging.StreamHandler)
    buffer = io.StringIO()
    previous = handler.setStream(buffer)
    try:
        yield buffer
    finally:
        handler.setStream(previous)
