"""clients/python (warmgate_client) without a network: signing, answers, errors, the CLI's
arguments. Over real HTTP against the local stack: tests/e2e/test_python_client.py."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import botocore.auth
import httpx
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials

from tests.openapi_contract import resolve
from warmgate_client import (
    MAILBOX_STATES,
    AccessDenied,
    Conflict,
    ConsentLink,
    InvalidRequest,
    LastError,
    MailboxListing,
    MailboxRecord,
    MailboxSummary,
    MissingCredentials,
    NotFound,
    ServiceUnavailable,
    Throttled,
    Transition,
    TransportError,
    UnexpectedAnswer,
    WarmgateClient,
)
from warmgate_client.cli import main, signing_region

API_URL = "https://abcdef1234.execute-api.eu-west-1.amazonaws.com"
REGION = "eu-west-1"
NOW = datetime(2026, 11, 26, 1, 27, 0)  # botocore's signer reads a naive UTC clock
KEYS = Credentials("AKIDEXAMPLE", "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY")
SESSION_KEYS = Credentials("ASIAEXAMPLE", "secret-of-a-session", token="session-token-value")

RECORD: dict[str, Any] = {
    "email": "ada@contoso.com",
    "state": "warming",
    "state_description": "warm-up started or resumed; the request is consumed",
    "next_states": ["consent_requested", "resume_requested", "paused"],
    "expired": False,
    "parked": False,
    "request_kind": "onboard",
    "open_request": False,
    "campaign_id": "4711",
    "consent_url": None,
    "requested_by": "user-42",
    "requested_by_principal": "arn:aws:iam::123456789012:user/integrator",
    "requested_at": "2026-11-26T01:00:00Z",
    "expires_at": "2026-11-27T01:00:00Z",
    "updated_at": "2026-11-26T01:05:00Z",
    "last_error": {
        "code": "MAILIVERY_TIMEOUT",
        "message": "Mailivery: timed out (request id r-1)",
        "at": "2026-11-26T01:01:00Z",
        "request_id": "r-1",
    },
    "history": [
        {"at": "2026-11-26T01:00:00Z", "from": None, "to": "consent_requested", "reason": "r"},
        {"at": "2026-11-26T01:05:00Z", "from": "verifying", "to": "warming", "reason": "s"},
    ],
}
SUMMARY = {
    name: RECORD[name]
    for name in resolve({"$ref": "#/components/schemas/MailboxSummary"})["properties"]
}
LISTING = {"mailboxes": [SUMMARY], "next_cursor": "eyJway"}
LINK = {
    "email": "ada@contoso.com",
    "state": "consent_requested",
    "consent_url": "https://login.microsoftonline.com/common/oauth2/v2.0/authorize?state=x",
    "expires_at": "2026-11-27T01:00:00Z",
}


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(botocore.auth, "get_current_datetime", lambda *_, **__: NOW)


@pytest.fixture
def no_ambient_aws(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """botocore's default chain sees nothing of this machine and never asks an instance
    metadata endpoint (no network beyond 127.0.0.1 in tests)."""
    for name in (
        "AWS_ACCESS_KEY_ID",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
        "AWS_PROFILE",
        "AWS_DEFAULT_PROFILE",
        "AWS_REGION",
        "AWS_DEFAULT_REGION",
        "AWS_WEB_IDENTITY_TOKEN_FILE",
        "AWS_ROLE_ARN",
        "AWS_CONTAINER_CREDENTIALS_RELATIVE_URI",
        "AWS_CONTAINER_CREDENTIALS_FULL_URI",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AWS_EC2_METADATA_DISABLED", "true")
    monkeypatch.setenv("AWS_CONFIG_FILE", str(tmp_path / "no-config"))
    monkeypatch.setenv("AWS_SHARED_CREDENTIALS_FILE", str(tmp_path / "no-credentials"))


class Recorder:
    """An httpx transport that records each request and answers from a script."""

    def __init__(self, answer: Callable[[httpx.Request], httpx.Response]) -> None:
        self.requests: list[httpx.Request] = []
        self._answer = answer

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.requests.append(request)
        return self._answer(request)


def client_answering(
    status: int,
    body: Any = None,
    headers: dict[str, str] | None = None,
    credentials: Credentials = KEYS,
) -> tuple[WarmgateClient, Recorder]:
    def answer(_: httpx.Request) -> httpx.Response:
        if isinstance(body, bytes):
            return httpx.Response(status, content=body, headers=headers)
        return httpx.Response(status, json=body, headers=headers)

    recorder = Recorder(answer)
    client = WarmgateClient(API_URL, REGION, credentials, transport=httpx.MockTransport(recorder))
    return client, recorder


def botocore_signature(request: httpx.Request, credentials: Credentials) -> dict[str, str]:
    """What botocore's own signer makes of the request exactly as it was sent (URL, body and
    the headers the client sets), at the same clock."""
    reference = AWSRequest(
        method=request.method,
        url=str(request.url),
        data=request.content,
        headers={
            name: request.headers[name]
            for name in ("accept", "content-type")
            if name in request.headers
        },
    )
    SigV4Auth(credentials.get_frozen_credentials(), "execute-api", REGION).add_auth(reference)
    return {name: str(value) for name, value in reference.headers.items()}


# --- signing -------------------------------------------------------------------------------------

CALLS: dict[str, tuple[int, Any, Callable[[WarmgateClient], object]]] = {
    "onboard": (
        201,
        LINK,
        lambda c: c.onboard(
            "ada@contoso.com", first_name="Ada", requested_by="user-42", tags=["t-1"]
        ),
    ),
    "get": (200, RECORD, lambda c: c.get("ada+sales@contoso.com")),
    "withdraw": (200, RECORD, lambda c: c.withdraw("ada@contoso.com")),
    "resume": (202, RECORD, lambda c: c.resume("ada@contoso.com")),
    "list": (
        200,
        LISTING,
        lambda c: c.list(state=["paused", "warming"], requested_by="user 42", cursor="a-b_c"),
    ),
}


@pytest.mark.parametrize("credentials", [KEYS, SESSION_KEYS], ids=["keys", "session"])
@pytest.mark.parametrize("call", sorted(CALLS))
def test_client_signature_equals_botocores_for_the_request_as_sent(
    call: str, credentials: Credentials
) -> None:
    status, body, invoke = CALLS[call]
    client, recorder = client_answering(status, body, credentials=credentials)

    invoke(client)

    [sent] = recorder.requests
    expected = botocore_signature(sent, credentials)
    assert sent.headers["Authorization"] == expected["Authorization"]
    assert sent.headers["X-Amz-Date"] == expected["X-Amz-Date"] == "20261126T012700Z"
    assert f"/20261126/{REGION}/execute-api/aws4_request" in sent.headers["Authorization"]
    if credentials.token:
        assert sent.headers["X-Amz-Security-Token"] == credentials.token
        assert "x-amz-security-token" in sent.headers["Authorization"]


def test_client_signature_changes_with_the_body() -> None:
    # Guards the test above: a signature over other bytes than those sent would differ.
    client, recorder = client_answering(201, LINK)
    client.onboard("ada@contoso.com", first_name="Ada", requested_by="user-42")
    [sent] = recorder.requests
    tampered = httpx.Request(sent.method, sent.url, headers=sent.headers, content=b"{}")

    assert botocore_signature(tampered, KEYS)["Authorization"] != sent.headers["Authorization"]


def test_client_default_chain_signs_with_environment_credentials(
    no_ambient_aws: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", "AKIAFROMENVIRONMENT")
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", "secret-from-environment")
    recorder = Recorder(lambda _: httpx.Response(200, json=RECORD))
    client = WarmgateClient(API_URL, REGION, transport=httpx.MockTransport(recorder))

    client.get("ada@contoso.com")

    assert "Credential=AKIAFROMENVIRONMENT/" in recorder.requests[0].headers["Authorization"]


def test_client_without_any_credentials_says_so(no_ambient_aws: None) -> None:
    with pytest.raises(MissingCredentials, match="no AWS credentials found"):
        WarmgateClient(API_URL, REGION)


def test_client_email_is_one_percent_encoded_path_segment() -> None:
    client, recorder = client_answering(200, RECORD)

    client.get("ada+sales/eu@contoso.com")

    assert recorder.requests[0].url.raw_path == b"/mailboxes/ada%2Bsales%2Feu@contoso.com"


def test_client_onboard_sends_only_given_fields() -> None:
    client, recorder = client_answering(201, LINK)

    client.onboard("ada@contoso.com", first_name="Ada", requested_by="me", email_per_day=20)

    assert json.loads(recorder.requests[0].content) == {
        "email": "ada@contoso.com",
        "first_name": "Ada",
        "requested_by": "me",
        "email_per_day": 20,
    }


# --- answers -------------------------------------------------------------------------------------


@pytest.mark.parametrize(("status", "created"), [(201, True), (200, False)])
def test_client_onboard_answer_is_a_consent_link(status: int, created: bool) -> None:
    client, _ = client_answering(status, LINK)

    link = client.onboard("ada@contoso.com", first_name="Ada", requested_by="user-42")

    assert link == ConsentLink(
        email="ada@contoso.com",
        state="consent_requested",
        consent_url=LINK["consent_url"],
        expires_at=datetime(2026, 11, 27, 1, 0, tzinfo=UTC),
        created=created,
    )


def test_client_list_sends_the_filters_as_the_query_and_parses_the_page() -> None:
    client, recorder = client_answering(200, LISTING)

    page = client.list(state=["paused", "warming"], requested_by="user 42", limit=10)

    assert recorder.requests[0].method == "GET"
    assert dict(recorder.requests[0].url.params) == {
        "state": "paused,warming",
        "requested_by": "user 42",
        "limit": "10",
    }
    assert page.next_cursor == "eyJway"
    (mailbox,) = page.mailboxes
    assert (mailbox.email, mailbox.state, mailbox.campaign_id) == (
        "ada@contoso.com",
        "warming",
        "4711",
    )
    assert mailbox.updated_at == datetime(2026, 11, 26, 1, 5, tzinfo=UTC)


def test_client_list_without_filters_sends_no_query() -> None:
    client, recorder = client_answering(200, {"mailboxes": [], "next_cursor": None})

    assert client.list() == MailboxListing(mailboxes=(), next_cursor=None)
    assert recorder.requests[0].url.query == b""


def test_client_list_all_follows_each_next_cursor_to_the_last_page() -> None:
    pages = iter(
        [
            {"mailboxes": [SUMMARY], "next_cursor": "page-2"},
            {"mailboxes": [{**SUMMARY, "email": "grace@contoso.com"}], "next_cursor": None},
        ]
    )
    recorder = Recorder(lambda _: httpx.Response(200, json=next(pages)))
    client = WarmgateClient(API_URL, REGION, KEYS, transport=httpx.MockTransport(recorder))

    found = [mailbox.email for mailbox in client.list_all(state=["warming"])]

    assert found == ["ada@contoso.com", "grace@contoso.com"]
    assert [dict(r.url.params) for r in recorder.requests] == [
        {"state": "warming", "limit": "100"},
        {"state": "warming", "limit": "100", "cursor": "page-2"},
    ]


def test_client_record_is_parsed_with_history_and_last_error() -> None:
    client, _ = client_answering(200, {**RECORD, "added_later": 1})

    record = client.get("ada@contoso.com")

    assert record.state == "warming"
    assert record.campaign_id == "4711"
    assert record.last_error == LastError(
        code="MAILIVERY_TIMEOUT",
        message="Mailivery: timed out (request id r-1)",
        at=datetime(2026, 11, 26, 1, 1, tzinfo=UTC),
        request_id="r-1",
    )
    assert record.history[1] == Transition(
        at=datetime(2026, 11, 26, 1, 5, tzinfo=UTC),
        from_state="verifying",
        to_state="warming",
        reason="s",
    )
    assert record.history[0].from_state is None


@pytest.mark.parametrize(
    ("body", "problem"),
    [
        ({k: v for k, v in RECORD.items() if k != "updated_at"}, "MailboxRecord.updated_at: miss"),
        ({**RECORD, "expired": "no"}, "MailboxRecord.expired: expected bool, got str"),
        ({**RECORD, "requested_at": "yesterday"}, "MailboxRecord.requested_at: not a timestamp"),
        ({**RECORD, "history": [{"at": "2026-11-26T01:00:00Z"}]}, "Transition.from: missing"),
        ([RECORD], "MailboxRecord: expected a JSON object, got list"),
        (b"<html>", "200 answer is not JSON"),
    ],
)
def test_client_answer_outside_the_contract_names_the_field(body: Any, problem: str) -> None:
    client, _ = client_answering(200, body)

    with pytest.raises(UnexpectedAnswer, match=problem):
        client.get("ada@contoso.com")


def test_client_undocumented_success_status_is_unexpected() -> None:
    client, _ = client_answering(204, b"")

    with pytest.raises(UnexpectedAnswer, match="unexpected status 204"):
        client.get("ada@contoso.com")


# --- errors --------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "body", "headers", "kind", "code", "retry_after"),
    [
        (422, {"code": "VALIDATION_FAILED", "message": "email: bad"}, {}, InvalidRequest,
         "VALIDATION_FAILED", None),
        (409, {"code": "CONSENT_REQUEST_IN_PROGRESS", "message": "m"}, {"Retry-After": "2"},
         Conflict, "CONSENT_REQUEST_IN_PROGRESS", 2),
        (404, {"code": "NOT_FOUND", "message": "no record"}, {}, NotFound, "NOT_FOUND", None),
        (403, {"message": "Forbidden"}, {}, AccessDenied, "ACCESS_DENIED", None),
        (429, {"message": "Too Many Requests"}, {}, Throttled, "THROTTLED", None),
        (503, {"code": "MAILIVERY_RATE_LIMITED", "message": "m"}, {"Retry-After": "60"},
         ServiceUnavailable, "MAILIVERY_RATE_LIMITED", 60),
        (502, b"Bad Gateway", {}, ServiceUnavailable, "HTTP_502", None),
    ],
)  # fmt: skip
def test_client_refusal_is_a_typed_error_with_code_status_and_retry_after(
    status: int,
    body: Any,
    headers: dict[str, str],
    kind: type[Exception],
    code: str,
    retry_after: int | None,
) -> None:
    client, _ = client_answering(status, body, headers)

    with pytest.raises(kind) as raised:
        client.get("ada@contoso.com")

    error: Any = raised.value
    assert (error.status, error.code, error.retry_after) == (status, code, retry_after)
    assert error.message


def test_client_unreachable_api_is_a_transport_error() -> None:
    def refuse(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("connection refused", request=request)

    client = WarmgateClient(API_URL, REGION, KEYS, transport=httpx.MockTransport(refuse))

    with pytest.raises(TransportError, match="ConnectError"):
        client.get("ada@contoso.com")


@pytest.mark.parametrize(
    ("url", "region", "problem"),
    [("ftp://x", REGION, "api_url must be an http(s) URL"), (API_URL, "", "region is required")],
)
def test_client_bad_configuration_is_named(url: str, region: str, problem: str) -> None:
    with pytest.raises(ValueError, match=re.escape(problem)):
        WarmgateClient(url, region, KEYS)


# --- the models mirror openapi.yaml --------------------------------------------------------------

JSON_NAMES = {"from_state": "from", "to_state": "to"}


@pytest.mark.parametrize(
    ("model", "schema", "client_only"),
    [
        (ConsentLink, "ConsentLink", {"created"}),
        (MailboxRecord, "MailboxRecord", set()),
        (MailboxSummary, "MailboxSummary", set()),
        (MailboxListing, "MailboxListing", set()),
        (LastError, "LastError", set()),
        (Transition, "Transition", set()),
    ],
)
def test_client_model_fields_are_the_schemas_properties(
    model: type, schema: str, client_only: set[str]
) -> None:
    properties = resolve({"$ref": f"#/components/schemas/{schema}"})["properties"]
    fields = {JSON_NAMES.get(f.name, f.name) for f in dataclasses.fields(model)}

    assert fields - client_only == set(properties)


def test_client_mailbox_states_are_the_documents() -> None:
    documented = resolve({"$ref": "#/components/schemas/MailboxState"})["enum"]

    assert list(MAILBOX_STATES) == documented


# --- the CLI's arguments -------------------------------------------------------------------------


def test_cli_without_api_url_exits_2_naming_it(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("WARMGATE_API_URL", raising=False)

    with pytest.raises(SystemExit) as exited:
        main(["get", "ada@contoso.com"])

    assert exited.value.code == 2
    assert "--api-url or $WARMGATE_API_URL is required" in capsys.readouterr().err


def test_cli_bad_api_url_exits_2_naming_it(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main(["--api-url", "ftp://example.com", "--region", REGION, "get", "ada@contoso.com"])

    assert exited.value.code == 2
    assert "api_url must be an http(s) URL" in capsys.readouterr().err


def test_cli_without_credentials_exits_2_saying_so(
    no_ambient_aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["--api-url", API_URL, "get", "ada@contoso.com"])

    assert code == 2
    assert capsys.readouterr().err.startswith("error: no AWS credentials found")


@pytest.mark.parametrize(
    ("url", "configured", "region"),
    [
        # An execute-api URL's signature is valid only for its own region: it wins.
        (
            "https://abcdef1234.execute-api.ap-southeast-2.amazonaws.com",
            "us-east-2",
            "ap-southeast-2",
        ),
        ("https://api.example.com", "us-east-2", "us-east-2"),  # a custom domain
        ("https://api.example.com", None, None),
    ],
)
def test_cli_signing_region_of_the_url_else_the_configured_one(
    no_ambient_aws: None,
    monkeypatch: pytest.MonkeyPatch,
    url: str,
    configured: str | None,
    region: str | None,
) -> None:
    if configured:
        monkeypatch.setenv("AWS_REGION", configured)

    assert signing_region(url) == region
