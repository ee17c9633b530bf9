"""The Mailivery sandbox over real HTTP: vendor API (/api/v1), control surface, webhooks, faults.

Every test talks to a sandbox on 127.0.0.1 (port 0) with httpx; webhook delivery is asserted
against a small local receiver, itself a werkzeug server on a free port.
"""

from __future__ import annotations

import json
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from typing import Any, Literal
from urllib.parse import parse_qs, urlsplit

import httpx
import pytest
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from devstack.sandbox import (
    CONSENT_CLIENT_ID,
    MailiverySandbox,
    SandboxControl,
    SandboxControlError,
)

KEY = "sandbox-key"
AUTH = {"Authorization": f"Bearer {KEY}"}
# Shared so each httpx client does not build its own TLS context (~50 ms; all traffic is HTTP).
TLS = ssl.create_default_context()


# --------------------------------------------------------------------------- fixtures


class _QuietHandler(WSGIRequestHandler):
    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


class WebhookReceiver:
    """Records every POSTed JSON body; answers with the next scripted status (default 202)."""

    def __init__(self) -> None:
        self.bodies: list[dict[str, Any]] = []
        self.received_at: list[float] = []
        self.statuses: list[int] = []  # scripted answers, consumed first to last
        self._changed = threading.Condition()
        self._server: BaseWSGIServer = make_server(
            "127.0.0.1", 0, self._wsgi, threaded=True, request_handler=_QuietHandler
        )
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_port}/webhooks/mailivery/test-token"

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        self._server.shutdown()
        self._thread.join(2)

    def wait_for(self, count: int, timeout: float = 5.0) -> list[dict[str, Any]]:
        with self._changed:
            self._changed.wait_for(lambda: len(self.bodies) >= count, timeout)
            assert len(self.bodies) >= count, f"got {len(self.bodies)} webhooks: {self.bodies}"
            return list(self.bodies)

    def _wsgi(self, environ: Any, start_response: Any) -> Iterable[bytes]:
        request = Request(environ)
        with self._changed:
            status = self.statuses.pop(0) if self.statuses else 202
            if status < 300:
                self.bodies.append(json.loads(request.get_data(as_text=True)))
                self.received_at.append(time.monotonic())
            self._changed.notify_all()
        return Response("", status)(environ, start_response)


@pytest.fixture
def receiver() -> Iterator[WebhookReceiver]:
    webhook_receiver = WebhookReceiver()
    webhook_receiver.start()
    yield webhook_receiver
    webhook_receiver.stop()


@pytest.fixture
def control(sandbox: MailiverySandbox) -> Iterator[SandboxControl]:
    with SandboxControl(sandbox.url) as client:
        yield client


@pytest.fixture
def hooked(control: SandboxControl, receiver: WebhookReceiver) -> SandboxControl:
    """The control client, with the sandbox's webhook URL pointing at the receiver."""
    control.set_options(webhook_url=receiver.url)
    return control


def _api_client(base_url: str, key: str = KEY) -> httpx.Client:
    def add_request_id(request: httpx.Request) -> None:
        request.headers.setdefault("X-Request-ID", str(uuid.uuid4()))

    return httpx.Client(
        base_url=base_url,
        headers={"Authorization": f"Bearer {key}", "Accept": "application/json"},
        event_hooks={"request": [add_request_id]},
        timeout=5.0,
        verify=TLS,
    )


@pytest.fixture
def raw(sandbox: MailiverySandbox) -> Iterator[httpx.Client]:
    """A client with no default headers, rooted at the sandbox URL."""
    with httpx.Client(base_url=sandbox.url, timeout=5.0, verify=TLS) as client:
        yield client


@pytest.fixture
def api(sandbox: MailiverySandbox) -> Iterator[httpx.Client]:
    """An authenticated vendor-API client that sends a fresh X-Request-ID on every call."""
    with _api_client(sandbox.api_base_url) as client:
        yield client


def request_consent(api: httpx.Client, email: str = "Ada@Contoso.com", **fields: Any) -> str:
    body = {"email": email, "first_name": "Ada", "last_name": "Lovelace", **fields}
    response = api.post("/campaigns/ms-graph", json=body)
    assert response.status_code == 200, response.text
    return str(response.json()["data"]["url"])


def onboard(
    api: httpx.Client, control: SandboxControl, email: str = "Ada@Contoso.com", **fields: Any
) -> dict[str, Any]:
    """Create + consent: a pending campaign, as after the mailbox owner said yes."""
    return dict(control.consent(url=request_consent(api, email, **fields))["campaign"])


def campaign_status(api: httpx.Client, campaign_id: int) -> str:
    return str(api.get(f"/campaigns/{campaign_id}").json()["data"]["status"])


def eventually(check: Callable[[], bool], timeout: float = 3.0) -> None:
    deadline = time.monotonic() + timeout
    while not check():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.02)


# --------------------------------------------------------------------------- auth and headers


def test_api_missing_bearer_returns_401_unauthenticated(raw: httpx.Client) -> None:
    response = raw.get("/api/v1/account/limits", headers={"X-Request-ID": "r"})

    assert response.status_code == 401
    assert response.json()["code"] == "UNAUTHENTICATED"
    assert response.json()["message"]


@pytest.mark.parametrize("authorization", ["Bearer wrong-key", f"Basic {KEY}", "Bearer"])
def test_api_wrong_credentials_returns_401(raw: httpx.Client, authorization: str) -> None:
    headers = {"Authorization": authorization, "X-Request-ID": "r"}

    response = raw.get("/api/v1/account/limits", headers=headers)

    assert response.status_code == 401
    assert response.json()["code"] == "UNAUTHENTICATED"


def test_api_missing_request_id_returns_400(raw: httpx.Client) -> None:
    response = raw.get("/api/v1/account/limits", headers=AUTH)

    assert response.status_code == 400
    assert response.json()["code"] == "MISSING_REQUEST_ID"


def test_api_unknown_route_returns_404_not_found(api: httpx.Client) -> None:
    response = api.get("/campaigns/not-a-number")

    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


def test_api_wrong_method_returns_405(api: httpx.Client) -> None:
    response = api.post("/campaigns/4711/start-warmup")

    assert response.status_code == 405
    assert response.json()["code"] == "METHOD_NOT_ALLOWED"


def test_ms_graph_non_allowlisted_key_returns_403_feature_disabled() -> None:
    body = {"email": "ada@contoso.com", "first_name": "Ada"}
    with (
        MailiverySandbox(api_keys=("allowed", "other"), allowlisted_keys=("allowed",)) as sb,
        _api_client(sb.api_base_url, "other") as other,
        _api_client(sb.api_base_url, "allowed") as allowed,
    ):
        refused = other.post("/campaigns/ms-graph", json=body)
        limits = other.get("/account/limits")
        accepted = allowed.post("/campaigns/ms-graph", json=body)

    assert refused.status_code == 403
    assert refused.json()["code"] == "MS_GRAPH_FEATURE_DISABLED"
    assert limits.status_code == 200  # the allowlist gates the ms-graph create only
    assert accepted.status_code == 200


# --------------------------------------------------------------------------- ms-graph create


def test_ms_graph_valid_body_returns_consent_url_with_client_id_and_state(
    sandbox: MailiverySandbox, api: httpx.Client
) -> None:
    response = api.post(
        "/campaigns/ms-graph", json={"email": "ada@contoso.com", "first_name": "Ada"}
    )

    assert response.status_code == 200
    body = response.json()
    assert body["success"] is True
    url = urlsplit(body["data"]["url"])
    query = parse_qs(url.query)
    assert (url.scheme, url.netloc) == ("https", "login.microsoftonline.com")
    assert url.path == "/common/oauth2/v2.0/authorize"
    assert query["client_id"] == [CONSENT_CLIENT_ID]
    assert query["response_type"] == ["code"]
    assert query["redirect_uri"] == [sandbox.url + "/_sandbox/oauth/callback"]
    assert len(query["state"][0]) >= 20


def test_ms_graph_repeated_create_returns_new_consent_each_time(
    api: httpx.Client, control: SandboxControl
) -> None:
    first = request_consent(api)
    second = request_consent(api)

    assert parse_qs(urlsplit(first).query)["state"] != parse_qs(urlsplit(second).query)["state"]
    assert len(control.consents()) == 2


def test_ms_graph_custom_consent_host_is_used() -> None:
    with (
        MailiverySandbox(consent_host="login.example.test") as sb,
        _api_client(sb.api_base_url) as client,
    ):
        url = request_consent(client)

    assert urlsplit(url).netloc == "login.example.test"


def test_ms_graph_missing_fields_returns_422_with_field_errors(api: httpx.Client) -> None:
    response = api.post("/campaigns/ms-graph", json={"last_name": "Lovelace"})

    assert response.status_code == 422
    body = response.json()
    assert body["message"] == "The given data was invalid."
    assert body["errors"]["email"] == ["The email field is required."]
    assert body["errors"]["first_name"] == ["The first name field is required."]


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("email", "not-an-email"),
        ("email_per_day", 0),
        ("email_per_day", 201),
        ("email_per_day", "many"),
        ("response_rate", 101),
        ("response_rate", True),
        ("tags", {"a": 1}),
    ],
)
def test_ms_graph_invalid_field_returns_422_naming_it(
    api: httpx.Client, field: str, value: Any
) -> None:
    body = {"email": "ada@contoso.com", "first_name": "Ada", field: value}

    response = api.post("/campaigns/ms-graph", json=body)

    assert response.status_code == 422
    assert list(response.json()["errors"]) == [field]


def test_ms_graph_validation_shape_code_returns_validation_error_code(
    api: httpx.Client, control: SandboxControl
) -> None:
    control.set_options(validation_error_shape="code")

    response = api.post("/campaigns/ms-graph", json={"first_name": "Ada"})

    assert response.status_code == 422
    assert response.json() == {
        "code": "VALIDATION_ERROR",
        "message": "The email field is required.",
    }


@pytest.mark.parametrize("encoding", ["json", "form", "multipart"])
def test_ms_graph_any_body_encoding_creates_same_consent(
    api: httpx.Client, control: SandboxControl, encoding: str
) -> None:
    fields = {"email": "ada@contoso.com", "first_name": "Ada", "email_per_day": "25"}
    if encoding == "json":
        response = api.post("/campaigns/ms-graph", json={**fields, "meta": {"tags": "a, b"}})
    elif encoding == "form":
        response = api.post("/campaigns/ms-graph", data={**fields, "meta[tags]": "a, b"})
    else:
        response = api.post(
            "/campaigns/ms-graph",
            data={**fields, "tags[]": ["a", "b"]},
            files={"unused": ("note.txt", b"ignored")},
        )

    assert response.status_code == 200, response.text
    [consent] = control.consents()
    assert consent["tags"] == ["a", "b"]
    assert consent["email_per_day"] == 25
    assert consent["meta"] == "tags=a,%20b"


def test_ms_graph_existing_mailbox_reject_option_returns_422(
    api: httpx.Client, control: SandboxControl
) -> None:
    onboard(api, control, "ada@contoso.com")
    control.set_options(existing_mailbox="reject")

    response = api.post("/campaigns/ms-graph", json={"email": "ADA@contoso.com", "first_name": "A"})

    assert response.status_code == 422
    assert response.json()["errors"]["email"] == ["The email has already been taken."]


# --------------------------------------------------------------------------- consent


@pytest.mark.parametrize(
    ("email", "smtp_type"),
    [
        ("ada@outlook.com", "outlook"),
        ("ada@hotmail.co.uk", "outlook"),
        ("ada@live.com", "outlook"),
        ("Ada@Contoso.com", "office 365"),
        ("ada@outlook.contoso.com", "office 365"),
    ],
)
def test_consent_creates_pending_ms_graph_campaign_with_smtp_type(
    api: httpx.Client, control: SandboxControl, email: str, smtp_type: str
) -> None:
    result = control.consent(url=request_consent(api, email))

    assert result["created"] is True
    fetched = api.get(f"/campaigns/{result['campaign']['id']}").json()["data"]
    assert fetched["id"] == 4711
    assert fetched["status"] == "pending"
    assert fetched["imap_type"] == "ms-graph"
    assert fetched["smtp_type"] == smtp_type
    assert fetched["email"] == email
    assert fetched["emails_sent_today"] == 0


def test_consent_delivers_pending_webhook_with_payload(
    api: httpx.Client, hooked: SandboxControl, receiver: WebhookReceiver
) -> None:
    url = request_consent(api, "Ada@Contoso.com", meta={"tags": "tenant-42, sales"})

    hooked.consent(url=url)

    [body] = receiver.wait_for(1)
    assert body == {
        "type": "campaign.pending",
        "action": "pending",
        "account": {
            "campaign_id": 4711,
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": "Ada@Contoso.com",
            "provider_type": "office",
            "tags": ["tenant-42", "sales"],
            "meta": "tags=tenant-42,%20sales",
        },
    }
    [delivery] = hooked.wait_for_webhooks(1)
    assert (delivery["outcome"], delivery["status_code"]) == ("delivered", 202)


def test_consent_different_signed_in_mailbox_creates_campaign_for_that_mailbox(
    api: httpx.Client, hooked: SandboxControl, receiver: WebhookReceiver
) -> None:
    url = request_consent(api, "ada@contoso.com")

    result = hooked.consent(url=url, email="Mallory@Contoso.com")

    assert result["campaign"]["email"] == "Mallory@Contoso.com"
    [body] = receiver.wait_for(1)
    assert body["account"]["email"] == "Mallory@Contoso.com"


def test_consent_ids_increment_from_4711(api: httpx.Client, control: SandboxControl) -> None:
    ids = [onboard(api, control, f"user{n}@contoso.com")["id"] for n in range(3)]

    assert ids == [4711, 4712, 4713]


def test_consent_unknown_state_returns_404(control: SandboxControl) -> None:
    with pytest.raises(SandboxControlError) as raised:
        control.consent(state="no-such-state")

    assert raised.value.status_code == 404


def test_consent_repeated_state_returns_same_campaign_and_resends_webhook(
    api: httpx.Client, hooked: SandboxControl, receiver: WebhookReceiver
) -> None:
    url = request_consent(api)
    first = hooked.consent(url=url)

    second = hooked.consent(url=url)

    assert (first["created"], second["created"]) == (True, False)
    assert second["campaign"]["id"] == first["campaign"]["id"]
    assert len(hooked.campaigns()) == 1
    bodies = receiver.wait_for(2)
    assert bodies[0] == bodies[1]


def test_consent_expired_link_returns_410(api: httpx.Client, control: SandboxControl) -> None:
    control.set_options(consent_ttl_seconds=0)
    url = request_consent(api)

    with pytest.raises(SandboxControlError) as raised:
        control.consent(url=url)

    assert raised.value.status_code == 410
    assert raised.value.body["code"] == "CONSENT_EXPIRED"


def test_consent_browser_get_returns_html_page(
    raw: httpx.Client, api: httpx.Client, control: SandboxControl
) -> None:
    state = parse_qs(urlsplit(request_consent(api)).query)["state"][0]

    page = raw.get("/_sandbox/consent", params={"state": state})
    callback = raw.get("/_sandbox/oauth/callback", params={"state": state})

    assert page.status_code == 201
    assert page.headers["content-type"].startswith("text/html")
    assert "campaign 4711 is pending" in page.text
    assert callback.status_code == 200  # the same consent again: no second campaign
    assert len(control.campaigns()) == 1


# --------------------------------------------------------------------------- campaigns


def test_get_campaign_unknown_id_returns_404(api: httpx.Client) -> None:
    response = api.get("/campaigns/999")

    assert response.status_code == 404
    assert response.json()["code"] == "NOT_FOUND"


def test_get_campaign_by_email_any_case_and_padding_returns_campaign(
    api: httpx.Client, control: SandboxControl
) -> None:
    onboard(api, control, "Ada@Contoso.com")

    found = api.get("/campaigns/email/%20ada@CONTOSO.com%20")
    missing = api.get("/campaigns/email/bob@contoso.com")

    assert found.status_code == 200
    assert found.json()["data"]["id"] == 4711
    assert missing.status_code == 404


def test_start_warmup_pending_campaign_becomes_active(
    api: httpx.Client, control: SandboxControl
) -> None:
    campaign = onboard(api, control)

    response = api.patch(f"/campaigns/{campaign['id']}/start-warmup")

    assert response.status_code == 200
    assert response.json()["data"]["status"] == "active"
    assert campaign_status(api, campaign["id"]) == "active"


def test_start_warmup_connection_off_returns_422_and_stays_pending(
    api: httpx.Client, control: SandboxControl
) -> None:
    campaign = onboard(api, control, "ada@contoso.com")
    control.set_connection(" ADA@contoso.com", ok=False)

    response = api.patch(f"/campaigns/{campaign['id']}/start-warmup")

    assert response.status_code == 422
    assert response.json()["code"] == "CONNECTION_FAILED"
    assert campaign_status(api, campaign["id"]) == "pending"


def test_start_warmup_already_active_returns_409(
    api: httpx.Client, control: SandboxControl
) -> None:
    campaign = onboard(api, control)
    api.patch(f"/campaigns/{campaign['id']}/start-warmup")

    response = api.patch(f"/campaigns/{campaign['id']}/start-warmup")

    assert response.status_code == 409
    assert response.json()["code"] == "WARMUP_ALREADY_STARTED"


def test_start_warmup_paused_campaign_returns_409_not_pending(
    api: httpx.Client, control: SandboxControl
) -> None:
    campaign = control.seed_campaign("ada@contoso.com", status="paused")

    response = api.patch(f"/campaigns/{campaign['id']}/start-warmup")

    assert response.status_code == 409
    assert response.json()["code"] == "CAMPAIGN_NOT_PENDING"


def test_resume_warmup_paused_campaign_becomes_active(
    api: httpx.Client, control: SandboxControl
) -> None:
    campaign = onboard(api, control)
    api.patch(f"/campaigns/{campaign['id']}/start-warmup")
    control.pause_campaign(campaign["id"])

    response = api.patch(f"/campaigns/{campaign['id']}/resume-warmup")

    assert response.status_code == 200
    assert campaign_status(api, campaign["id"]) == "active"


@pytest.mark.parametrize("status", ["pending", "active"])
def test_resume_warmup_not_paused_returns_409_not_paused(
    api: httpx.Client, control: SandboxControl, status: Literal["pending", "active"]
) -> None:
    campaign = control.seed_campaign("ada@contoso.com", status=status)

    response = api.patch(f"/campaigns/{campaign['id']}/resume-warmup")

    assert response.status_code == 409
    assert response.json()["code"] == "CAMPAIGN_NOT_PAUSED"
    assert campaign_status(api, campaign["id"]) == status


def test_start_warmup_connection_refused_a_set_number_of_times_then_connects(
    api: httpx.Client, control: SandboxControl
) -> None:
    campaign = onboard(api, control, "ada@contoso.com")
    control.set_connection("ada@contoso.com", ok=False, refusals=2)

    statuses = [api.patch(f"/campaigns/{campaign['id']}/start-warmup").status_code for _ in "abc"]

    assert statuses == [422, 422, 200]
    assert campaign_status(api, campaign["id"]) == "active"


def test_connection_refusals_without_ok_false_is_400(control: SandboxControl) -> None:
    with pytest.raises(SandboxControlError) as raised:
        control.set_connection("ada@contoso.com", ok=True, refusals=2)

    assert raised.value.status_code == 400


def test_resume_warmup_connection_problem_resumes_only_when_connection_ok(
    api: httpx.Client, control: SandboxControl
) -> None:
    campaign = control.seed_campaign("ada@contoso.com", status="connection_problem")
    control.set_connection("ada@contoso.com", ok=False)

    refused = api.patch(f"/campaigns/{campaign['id']}/resume-warmup")
    control.set_connection("ada@contoso.com", ok=True)
    resumed = api.patch(f"/campaigns/{campaign['id']}/resume-warmup")

    assert (refused.status_code, refused.json()["code"]) == (422, "CONNECTION_FAILED")
    assert resumed.status_code == 200
    assert campaign_status(api, campaign["id"]) == "active"


def test_pause_warmup_active_campaign_becomes_paused(
    api: httpx.Client, control: SandboxControl
) -> None:
    campaign = control.seed_campaign("ada@contoso.com", status="active")

    response = api.patch(f"/campaigns/{campaign['id']}/pause-warmup")

    assert response.status_code == 200
    assert campaign_status(api, campaign["id"]) == "paused"


def test_pause_warmup_pending_campaign_returns_409_not_active(
    api: httpx.Client, control: SandboxControl
) -> None:
    campaign = onboard(api, control)

    response = api.patch(f"/campaigns/{campaign['id']}/pause-warmup")

    assert response.status_code == 409
    assert response.json()["code"] == "CAMPAIGN_NOT_ACTIVE"


def test_delete_campaign_removes_it_and_sends_deleted_webhook_with_smtp_type(
    api: httpx.Client, hooked: SandboxControl, receiver: WebhookReceiver
) -> None:
    campaign = hooked.seed_campaign("Ada@Contoso.com", "Ada", "Lovelace", tags=["x"])

    response = api.delete(f"/campaigns/{campaign['id']}")

    assert response.status_code == 200
    assert api.get(f"/campaigns/{campaign['id']}").status_code == 404
    [body] = receiver.wait_for(1)
    assert body == {
        "type": "campaign.deleted",
        "action": "deleted",
        "account": {
            "campaign_id": campaign["id"],
            "first_name": "Ada",
            "last_name": "Lovelace",
            "email": "Ada@Contoso.com",
            "type": "smtp",
            "meta": None,
        },
    }


def test_list_campaigns_pages_and_filters_by_status(
    api: httpx.Client, control: SandboxControl
) -> None:
    for n in range(5):
        control.seed_campaign(f"user{n}@contoso.com", status="active" if n == 2 else "pending")

    last_page = api.get("/campaigns", params={"page": 3, "per_page": 2}).json()
    pending = api.get("/campaigns", params={"status": "pending"}).json()
    too_big = api.get("/campaigns", params={"per_page": 101})

    assert [c["email"] for c in last_page["data"]] == ["user4@contoso.com"]
    assert last_page["meta"] == {"current_page": 3, "last_page": 3, "per_page": 2, "total": 5}
    assert pending["meta"]["per_page"] == 50
    assert pending["meta"]["total"] == 4
    assert {c["status"] for c in pending["data"]} == {"pending"}
    assert too_big.status_code == 422


def test_account_limits_counts_active_budget_and_problem_mailboxes(
    api: httpx.Client, control: SandboxControl
) -> None:
    control.seed_campaign("a@contoso.com", status="active", email_per_day=40)
    control.seed_campaign("b@contoso.com", status="active", email_per_day=10)
    control.seed_campaign("c@contoso.com", status="pending", email_per_day=99)
    control.seed_campaign("d@contoso.com", status="connection_problem")

    response = api.get("/account/limits")

    assert response.json() == {
        "success": True,
        "data": {
            "email_per_day": {"total": 1000, "used": 50, "available": 950},
            "email_accounts": 4,
            "email_accounts_need_attention": 1,
            "emails_sent_today": 0,
        },
    }


def test_status_field_option_renames_status_key(api: httpx.Client, control: SandboxControl) -> None:
    campaign = onboard(api, control)
    control.set_options(status_field="status_code")

    one = api.get(f"/campaigns/{campaign['id']}").json()["data"]
    listed = api.get("/campaigns", params={"status_code": "pending"}).json()["data"]

    assert one["status_code"] == "pending"
    assert "status" not in one
    assert [c["status_code"] for c in listed] == ["pending"]


def test_break_connection_sends_connection_problem_webhook_and_needs_attention(
    api: httpx.Client, hooked: SandboxControl, receiver: WebhookReceiver
) -> None:
    campaign = hooked.seed_campaign("ada@contoso.com", status="active")

    hooked.break_connection(campaign["id"])

    [body] = receiver.wait_for(1)
    assert body["type"] == "campaign.connection_problem"
    assert body["account"]["campaign_id"] == campaign["id"]
    assert campaign_status(api, campaign["id"]) == "connection_problem"
    assert api.get("/account/limits").json()["data"]["email_accounts_need_attention"] == 1


def test_vendor_side_pause_sends_no_webhook(
    api: httpx.Client, hooked: SandboxControl, receiver: WebhookReceiver
) -> None:
    campaign = hooked.seed_campaign("ada@contoso.com", status="active")

    hooked.pause_campaign(campaign["id"])
    hooked.seed_campaign("marker@contoso.com", notify=True)  # deliveries are in order

    [body] = receiver.wait_for(1)
    assert body["account"]["email"] == "marker@contoso.com"
    assert campaign_status(api, campaign["id"]) == "paused"


# --------------------------------------------------------------------------- rate limit


def test_rate_limit_over_limit_returns_429_with_retry_after(
    api: httpx.Client, control: SandboxControl
) -> None:
    control.set_rate_limit(3)

    statuses = [api.get("/account/limits").status_code for _ in range(3)]
    refused = api.get("/account/limits")

    assert statuses == [200, 200, 200]
    assert refused.status_code == 429
    assert refused.json()["code"] == "RATE_LIMIT_EXCEEDED"
    assert 1 <= int(refused.headers["Retry-After"]) <= 60


def test_rate_limit_is_per_api_key() -> None:
    with (
        MailiverySandbox(api_keys=("a", "b"), rate_limit_per_minute=2) as sb,
        _api_client(sb.api_base_url, "a") as key_a,
        _api_client(sb.api_base_url, "b") as key_b,
    ):
        a_statuses = [key_a.get("/account/limits").status_code for _ in range(3)]
        b_status = key_b.get("/account/limits").status_code

    assert a_statuses == [200, 200, 429]
    assert b_status == 200


def test_rate_limit_time_scaled_answers_retry_after_in_real_seconds() -> None:
    # A 6 s "minute": the wait the window asks for is at most 6 real seconds, never 60.
    with (
        MailiverySandbox(rate_limit_per_minute=2, time_scale=10) as sb,
        _api_client(sb.api_base_url) as client,
    ):
        statuses = [client.get("/account/limits").status_code for _ in range(2)]
        refused = client.get("/account/limits")

    assert statuses == [200, 200]
    assert refused.status_code == 429
    assert 1 <= int(refused.headers["Retry-After"]) <= 6


def test_storm_answers_429_to_every_call_until_it_ends_then_nothing_is_owed(
    api: httpx.Client, control: SandboxControl
) -> None:
    control.storm(1.5)

    during = api.get("/account/limits")
    time.sleep(1.6)
    after = [api.get("/account/limits").status_code for _ in range(3)]

    assert during.status_code == 429
    assert during.json()["code"] == "RATE_LIMIT_EXCEEDED"
    assert int(during.headers["Retry-After"]) in (1, 2)  # what is left of it, rounded up
    assert after == [200, 200, 200]  # refused calls took no slot of the window
    assert [c["fault"] for c in control.calls()] == ["storm", None, None, None]


def test_storm_needs_a_positive_length(control: SandboxControl) -> None:
    with pytest.raises(SandboxControlError) as raised:
        control.storm(0)

    assert raised.value.status_code == 400


def test_rate_limit_headers_off_returns_429_without_retry_after(
    api: httpx.Client, control: SandboxControl
) -> None:
    control.set_options(rate_limit_per_minute=1, rate_limit_headers=False)
    api.get("/account/limits")

    refused = api.get("/account/limits")

    assert refused.status_code == 429
    assert "Retry-After" not in refused.headers


# --------------------------------------------------------------------------- faults


def test_fault_error_returns_5xx_and_changes_nothing(
    api: httpx.Client, control: SandboxControl
) -> None:
    campaign = onboard(api, control)
    control.set_faults(error_rate=1.0, error_statuses=[500], count=1)

    failed = api.patch(f"/campaigns/{campaign['id']}/start-warmup")

    assert failed.status_code == 500
    assert failed.json()["code"] == "SERVER_ERROR"
    assert campaign_status(api, campaign["id"]) == "pending"


def test_fault_error_statuses_vary_between_500_502_503(
    api: httpx.Client, control: SandboxControl
) -> None:
    control.set_faults(error_rate=1.0, seed=1)

    statuses = {api.get("/account/limits").status_code for _ in range(30)}

    assert statuses == {500, 502, 503}


def test_fault_html_returns_502_html_body(api: httpx.Client, control: SandboxControl) -> None:
    control.set_faults(html_rate=1.0)

    response = api.get("/account/limits")

    assert response.status_code == 502
    assert response.headers["content-type"].startswith("text/html")
    assert "<html>" in response.text


def test_fault_empty_returns_200_empty_body_but_applies_call(
    api: httpx.Client, control: SandboxControl
) -> None:
    campaign = onboard(api, control)
    control.set_faults(empty_rate=1.0, count=1)

    response = api.patch(f"/campaigns/{campaign['id']}/start-warmup")

    assert (response.status_code, response.content) == (200, b"")
    assert campaign_status(api, campaign["id"]) == "active"


def test_fault_garbage_returns_200_unknown_json(api: httpx.Client, control: SandboxControl) -> None:
    control.set_faults(garbage_rate=1.0)

    response = api.get("/account/limits")

    assert response.status_code == 200
    assert response.json() == {"foo": 1}


def test_fault_timeout_hangs_then_applies_call(api: httpx.Client, control: SandboxControl) -> None:
    campaign = onboard(api, control)
    control.set_faults(timeout_rate=1.0, hang_ms=400, count=1)

    with pytest.raises(httpx.ReadTimeout):
        api.patch(f"/campaigns/{campaign['id']}/start-warmup", timeout=0.1)

    # The vendor finished the work after the client gave up: the case retries must survive.
    eventually(lambda: campaign_status(api, campaign["id"]) == "active")
    eventually(lambda: any(c["fault"] == "timeout" for c in control.calls()))


def test_fault_reset_drops_the_connection_then_applies_the_call(
    api: httpx.Client, control: SandboxControl
) -> None:
    campaign = onboard(api, control)
    control.set_faults(reset_rate=1.0, hang_ms=300, count=1)

    with pytest.raises(httpx.RemoteProtocolError):  # no answer at all, at once
        api.patch(f"/campaigns/{campaign['id']}/start-warmup", timeout=5)
    right_after = campaign_status(api, campaign["id"])

    assert right_after == "pending"  # the vendor is still on it
    eventually(lambda: campaign_status(api, campaign["id"]) == "active")
    eventually(lambda: any(c["fault"] == "reset" for c in control.calls()))


def test_fault_rules_each_count_and_the_first_that_fires_wins(
    api: httpx.Client, control: SandboxControl
) -> None:
    control.set_fault_rules(
        [
            {"error_rate": 1.0, "error_statuses": [503], "count": 1, "paths": ["/limits$"]},
            {"html_rate": 1.0, "count": 2},
        ]
    )

    statuses = [api.get("/account/limits").status_code for _ in range(4)]
    rules = control.faults()["rules"]

    assert statuses == [503, 502, 502, 200]  # rule 1 once, then rule 2 twice, then none
    assert [rule["remaining"] for rule in rules] == [0, 0]
    assert [c["fault"] for c in control.calls()] == ["error", "html", "html", None]


@pytest.mark.parametrize(
    "body", [{"rules": []}, {"rules": [{}], "error_rate": 0.1}, {"rules": ["x"]}]
)
def test_fault_rules_must_be_a_nonempty_list_alone(
    sandbox: MailiverySandbox, body: dict[str, Any]
) -> None:
    refused = httpx.post(f"{sandbox.url}/_sandbox/faults", json=body)

    assert refused.status_code == 400
    assert refused.json()["code"] == "BAD_REQUEST"


def test_fault_latency_delays_response(api: httpx.Client, control: SandboxControl) -> None:
    control.set_faults(latency_ms=300)

    started = time.monotonic()
    response = api.get("/account/limits")

    assert response.status_code == 200
    assert time.monotonic() - started >= 0.3


def test_fault_paths_and_methods_limit_which_calls_fail(
    api: httpx.Client, control: SandboxControl
) -> None:
    campaign = onboard(api, control)
    control.set_faults(error_rate=1.0, paths=[r"/start-warmup$"], methods=["patch"])

    limits = api.get("/account/limits")
    fetched = api.get(f"/campaigns/{campaign['id']}")
    started = api.patch(f"/campaigns/{campaign['id']}/start-warmup")

    assert (limits.status_code, fetched.status_code) == (200, 200)
    assert started.status_code >= 500


def test_fault_count_applies_to_next_n_calls_only(
    api: httpx.Client, control: SandboxControl
) -> None:
    control.set_faults(error_rate=0.01, error_statuses=[503], count=2)

    statuses = [api.get("/account/limits").status_code for _ in range(4)]

    assert statuses == [503, 503, 200, 200]


def test_fault_rate_with_same_seed_repeats_same_sequence(
    api: httpx.Client, control: SandboxControl
) -> None:
    def run() -> list[int]:
        control.set_faults(error_rate=0.5, error_statuses=[500], seed=42)
        return [api.get("/account/limits").status_code for _ in range(20)]

    first, second = run(), run()

    assert first == second
    assert set(first) == {200, 500}


def test_faults_never_apply_to_control_endpoints(
    sandbox: MailiverySandbox, control: SandboxControl
) -> None:
    control.set_faults(error_rate=1.0, latency_ms=2000)

    started = time.monotonic()
    assert control.health()
    calls = control.calls()

    assert calls == []
    assert time.monotonic() - started < 1.0


def test_faults_bad_settings_return_400(control: SandboxControl) -> None:
    with pytest.raises(SandboxControlError) as raised:
        control.set_faults(error_rate=0.7, html_rate=0.7)

    assert raised.value.status_code == 400


def test_stop_during_hang_fault_returns_quickly() -> None:
    sb = MailiverySandbox().start()
    control = SandboxControl(sb.url)
    control.set_faults(timeout_rate=1.0, count=1)  # default hang: 10 s
    result: dict[str, int] = {}

    def call() -> None:
        with _api_client(sb.api_base_url) as client:
            result["status"] = client.get("/account/limits", timeout=15).status_code

    caller = threading.Thread(target=call)
    caller.start()
    # The count is consumed when the call reaches the fault: then it is hanging.
    eventually(lambda: _faults_remaining(control) == 0)
    control.close()

    started = time.monotonic()
    sb.stop()
    caller.join(5)

    assert time.monotonic() - started < 2.0
    assert result["status"] == 503


def _faults_remaining(control: SandboxControl) -> int:
    return int(control.faults()["remaining"])


# --------------------------------------------------------------------------- webhook modes


def test_webhooks_drop_records_attempt_without_sending(
    api: httpx.Client, hooked: SandboxControl, receiver: WebhookReceiver
) -> None:
    hooked.set_webhooks("drop")
    hooked.seed_campaign("dropped@contoso.com", notify=True)
    hooked.set_webhooks("deliver")
    hooked.seed_campaign("sent@contoso.com", notify=True)

    deliveries = hooked.wait_for_webhooks(2)

    assert [d["outcome"] for d in deliveries] == ["dropped", "delivered"]
    bodies = receiver.wait_for(1)
    assert [b["account"]["email"] for b in bodies] == ["sent@contoso.com"]


def test_webhooks_duplicate_sends_each_event_twice(
    hooked: SandboxControl, receiver: WebhookReceiver
) -> None:
    hooked.set_webhooks("duplicate")

    hooked.seed_campaign("ada@contoso.com", notify=True)

    bodies = receiver.wait_for(2)
    assert len(bodies) == 2
    assert bodies[0] == bodies[1]
    assert [d["copy"] for d in hooked.wait_for_webhooks(2)] == [1, 2]


def test_webhooks_reorder_holds_until_flush_then_sends_newest_first(
    hooked: SandboxControl, receiver: WebhookReceiver
) -> None:
    hooked.set_webhooks("reorder")
    first = hooked.seed_campaign("first@contoso.com", notify=True)
    second = hooked.seed_campaign("second@contoso.com", notify=True)
    held = hooked.webhook_status()

    flushed = hooked.flush_webhooks()

    assert held["held"] == 2
    assert held["deliveries"] == []
    assert flushed == 2
    bodies = receiver.wait_for(2)
    assert [b["account"]["campaign_id"] for b in bodies] == [second["id"], first["id"]]


def test_webhooks_delay_mode_delivers_after_delay(
    hooked: SandboxControl, receiver: WebhookReceiver
) -> None:
    hooked.set_webhooks("delay", delay_ms=300)

    published = time.monotonic()
    hooked.seed_campaign("ada@contoso.com", notify=True)

    receiver.wait_for(1)
    assert receiver.received_at[0] - published >= 0.3


def test_webhooks_quirks_use_reference_shapes(
    api: httpx.Client, hooked: SandboxControl, receiver: WebhookReceiver
) -> None:
    hooked.set_webhooks(quirks=True)
    campaign = hooked.seed_campaign("ada@contoso.com", "Ada", "Lovelace", tags=["a", "b"])
    hooked.seed_campaign("bob@contoso.com", "Bob", tags=["t1", "t2"], notify=True)
    api.delete(f"/campaigns/{campaign['id']}")

    pending, deleted = receiver.wait_for(2)

    assert pending["account"]["campaign_id"] == "4712"
    assert pending["account"]["lalst_name"] is None
    assert "last_name" not in pending["account"]
    assert pending["account"]["meta"] == ""
    assert pending["account"]["tags"] == ["t1", " t2"]
    assert deleted["account"]["lalst_name"] == "Lovelace"
    assert deleted["account"]["meta"] is None
    assert deleted["account"]["type"] == "smtp"


def test_webhooks_no_url_records_no_webhook_url(control: SandboxControl) -> None:
    control.seed_campaign("ada@contoso.com", notify=True)

    [delivery] = control.wait_for_webhooks(1)

    assert delivery["outcome"] == "no_webhook_url"
    assert delivery["type"] == "campaign.pending"


def test_webhooks_receiver_error_retried_when_retries_set(
    hooked: SandboxControl, receiver: WebhookReceiver
) -> None:
    receiver.statuses = [500]
    hooked.set_webhooks(retries=2, retry_delay_ms=10)

    hooked.seed_campaign("ada@contoso.com", notify=True)

    deliveries = hooked.wait_for_webhooks(2)
    assert [(d["attempt"], d["outcome"], d["status_code"]) for d in deliveries] == [
        (1, "rejected", 500),
        (2, "delivered", 202),
    ]
    assert len(receiver.wait_for(1)) == 1


def test_webhooks_unreachable_url_records_error(control: SandboxControl) -> None:
    control.set_options(webhook_url="http://127.0.0.1:9/unreachable")
    control.seed_campaign("ada@contoso.com", notify=True)

    [delivery] = control.wait_for_webhooks(1)

    assert delivery["outcome"] == "error"
    assert delivery["error"]


def test_wait_for_webhooks_too_few_raises_timeout(control: SandboxControl) -> None:
    started = time.monotonic()

    with pytest.raises(TimeoutError):
        control.wait_for_webhooks(1, timeout=0.3)

    assert time.monotonic() - started < 2.0


# --------------------------------------------------------------------------- logs and reset


def test_call_log_has_request_ids_and_key_fingerprint_never_the_key(
    api: httpx.Client, control: SandboxControl
) -> None:
    control.set_faults(garbage_rate=1.0, count=1)
    api.get("/account/limits", headers={"X-Request-ID": "req-1"})
    api.post(
        "/campaigns/ms-graph",
        json={"email": "ada@contoso.com", "first_name": "Ada"},
        headers={"X-Request-ID": "req-2"},
    )

    calls = control.calls()

    assert [c["request_id"] for c in calls] == ["req-1", "req-2"]
    assert [c["status"] for c in calls] == [200, 200]
    assert calls[0]["fault"] == "garbage"
    assert calls[1]["body"] == {"email": "ada@contoso.com", "first_name": "Ada"}
    assert calls[1]["path"] == "/api/v1/campaigns/ms-graph"
    assert calls[0]["key_fingerprint"].startswith("sha256:")
    assert KEY not in json.dumps(calls)


def test_reset_clears_state_but_keeps_webhook_url(
    api: httpx.Client, hooked: SandboxControl, receiver: WebhookReceiver
) -> None:
    onboard(api, hooked)
    hooked.set_faults(error_rate=1.0)
    hooked.set_options(status_field="status_code")

    hooked.reset()

    assert hooked.campaigns() == []
    assert hooked.consents() == []
    assert hooked.calls() == []
    assert hooked.webhook_deliveries() == []
    options = hooked.options()
    assert options["webhook_url"] == receiver.url
    assert options["status_field"] == "status"
    assert onboard(api, hooked)["id"] == 4711  # ids restart, faults are gone


def test_seed_campaign_with_notify_sends_pending_webhook(
    hooked: SandboxControl, receiver: WebhookReceiver
) -> None:
    campaign = hooked.seed_campaign("ada@contoso.com", "Ada", tags=["t"], campaign_id=9000)

    hooked.seed_campaign("bob@contoso.com", "Bob", notify=True)

    [body] = receiver.wait_for(1)
    assert campaign["id"] == 9000
    assert body["account"]["campaign_id"] == 9001
    assert body["account"]["tags"] == []
    assert body["account"]["meta"] is None


def test_control_options_unknown_name_returns_400(raw: httpx.Client) -> None:
    response = raw.post("/_sandbox/options", json={"colour": "blue"})

    assert response.status_code == 400
    assert response.json()["code"] == "BAD_REQUEST"
