"""clients/python against the local stack over real HTTP: the library and the installed
`warmgate-client` command. The local API does not check signatures; that every request left
signed is checked here, and the signature itself in tests/unit/test_python_client.py."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from botocore.credentials import Credentials

from devstack.sandbox import SandboxControl
from devstack.stack import ACCOUNT_ID, LocalStack
from tests.e2e.conftest import eventually, unique_email
from warmgate_client import Conflict, MailboxRecord, NotFound, WarmgateClient

pytestmark = pytest.mark.slow

KEYS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
CLI = Path(sys.executable).with_name("warmgate-client")  # installed by `make setup`


class SignedOnly(httpx.HTTPTransport):
    """Real HTTP; remembers each request's Authorization header."""

    def __init__(self) -> None:
        super().__init__()
        self.authorizations: list[str | None] = []

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        self.authorizations.append(request.headers.get("Authorization"))
        return super().handle_request(request)


@pytest.fixture
def transport() -> SignedOnly:
    return SignedOnly()


@pytest.fixture
def client(local_stack: LocalStack, transport: SignedOnly) -> Iterator[WarmgateClient]:
    with WarmgateClient(local_stack.api_url, "eu-west-1", KEYS, transport=transport) as client:
        yield client
    assert transport.authorizations, "no request was made"
    assert all(
        value and value.startswith("AWS4-HMAC-SHA256 Credential=AKIDEXAMPLE/")
        for value in transport.authorizations
    )


def wait_for_state(client: WarmgateClient, email: str, state: str) -> MailboxRecord:
    return eventually(
        lambda: record if (record := client.get(email)).state == state else None,
        f"{email} to be {state}",
    )


def test_client_onboards_a_mailbox_that_then_warms_up(
    client: WarmgateClient, control: SandboxControl
) -> None:
    email = unique_email("client")

    link = client.onboard(email.upper(), first_name="Ada", requested_by="client-e2e")
    replay = client.onboard(email.upper(), first_name="Ada", requested_by="client-e2e")
    control.consent(url=link.consent_url)

    assert (link.created, replay.created) == (True, False)
    assert link.email == email
    assert replay.consent_url == link.consent_url
    record = wait_for_state(client, email, "warming")
    assert record.requested_by_principal == f"arn:aws:iam::{ACCOUNT_ID}:user/local-developer"
    assert [t.to_state for t in record.history] == ["consent_requested", "verifying", "warming"]
    with pytest.raises(Conflict) as refused:
        client.withdraw(email)
    assert (refused.value.status, refused.value.code) == (409, "NOT_WITHDRAWABLE")


def test_client_withdraws_a_live_request(client: WarmgateClient) -> None:
    email = unique_email("client-withdraw")
    client.onboard(email, first_name="Ada", requested_by="client-e2e")

    record = client.withdraw(email)

    assert record.state == "withdrawn"
    assert record.consent_url is None


def test_client_conflict_carries_the_apis_code(client: WarmgateClient) -> None:
    email = unique_email("client-conflict")
    client.onboard(email, first_name="Ada", requested_by="first")

    with pytest.raises(Conflict) as refused:  # the same (local) principal, other details
        client.onboard(email, first_name="Ada", requested_by="second")

    assert refused.value.code == "REQUEST_MISMATCH"
    assert refused.value.retry_after is None


@pytest.mark.parametrize("route", ["get", "withdraw", "resume"])
def test_client_unknown_mailbox_is_not_found(client: WarmgateClient, route: str) -> None:
    with pytest.raises(NotFound) as missing:
        getattr(client, route)(unique_email("nobody"))

    assert (missing.value.status, missing.value.code) == (404, "NOT_FOUND")


# --- the command -------------------------------------------------------------------------------


def cli(local_stack: LocalStack, *args: str) -> subprocess.CompletedProcess[str]:
    """`warmgate-client` with credentials from the environment (the default chain), and no
    instance-metadata lookup (tests talk to 127.0.0.1 only)."""
    env = {
        **os.environ,
        "WARMGATE_API_URL": local_stack.api_url,
        "AWS_ACCESS_KEY_ID": "AKIDEXAMPLE",
        "AWS_SECRET_ACCESS_KEY": "secret",
        "AWS_REGION": "eu-west-1",
        "AWS_EC2_METADATA_DISABLED": "true",
    }
    return subprocess.run(  # noqa: S603 - our own console script
        [str(CLI), *args], env=env, capture_output=True, text=True, timeout=60, check=False
    )


def test_cli_onboard_prints_the_consent_link(local_stack: LocalStack) -> None:
    email = unique_email("cli")

    result = cli(local_stack, "onboard", email, "--first-name", "Ada", "--requested-by", "me")

    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert answer["email"] == email
    assert answer["created"] is True
    assert answer["consent_url"].startswith("https://login.microsoftonline.com/")


def test_cli_refusal_exits_2_with_the_code(local_stack: LocalStack) -> None:
    email = unique_email("cli-conflict")
    cli(local_stack, "onboard", email, "--first-name", "Ada", "--requested-by", "first")

    result = cli(local_stack, "onboard", email, "--first-name", "Ada", "--requested-by", "other")

    assert result.returncode == 2
    assert result.stderr.startswith("error: 409 REQUEST_MISMATCH: ")


def test_cli_unknown_mailbox_exits_1(local_stack: LocalStack) -> None:
    result = cli(local_stack, "get", unique_email("cli-nobody"))

    assert result.returncode == 1
    assert "404 NOT_FOUND" in result.stderr
