"""MailiveryClient over real HTTP against the sandbox: typed errors, request ids, retries."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from devstack.sandbox import MailiverySandbox, SandboxControl
from warmgate.adapters.mailivery import (
    Campaign,
    CampaignStatus,
    Conflict,
    ConnectionLost,
    ConsentRequest,
    FeatureDisabled,
    InvalidCampaignId,
    MailiveryClient,
    MailiveryError,
    NotFound,
    RateLimited,
    RetryPolicy,
    ServerError,
    Timeout,
    Unauthorized,
    UnexpectedResponse,
    Unreachable,
    ValidationFailed,
    VendorContract,
)

KEY = "sandbox-key"
ADA = ConsentRequest(
    email="Ada@Contoso.com", first_name="Ada", last_name="Lovelace", tags=("tenant-42", "sales")
)


@pytest.fixture
def sandbox() -> Iterator[MailiverySandbox]:
    with MailiverySandbox(api_keys=(KEY, "other-key"), allowlisted_keys=(KEY,)) as running:
        yield running


@pytest.fixture
def control(sandbox: MailiverySandbox) -> Iterator[SandboxControl]:
    with SandboxControl(sandbox.url) as client:
        yield client


class SleepRecorder:
    def __init__(self, on_sleep: Callable[[], None] | None = None) -> None:
        self.delays: list[float] = []
        self._on_sleep = on_sleep

    def __call__(self, seconds: float) -> None:
        self.delays.append(seconds)
        if self._on_sleep:
            self._on_sleep()


def make_client(
    base_url: str,
    *,
    key: str = KEY,
    sleep: Callable[[float], None] | None = None,
    read_timeout: float = 1.0,
    **kwargs: Any,
) -> MailiveryClient:
    return MailiveryClient(
        base_url=base_url,
        api_key=lambda: key,
        timeout=httpx.Timeout(read_timeout, connect=1.0),
        retry=RetryPolicy(attempts=3, base_delay=0.01, max_delay=0.02, max_retry_after=120),
        sleep=sleep or SleepRecorder(),
        **kwargs,
    )


@pytest.fixture
def client(sandbox: MailiverySandbox) -> MailiveryClient:
    return make_client(sandbox.api_base_url)


def api_calls(
    control: SandboxControl, path_suffix: str, *, at_least: int = 0
) -> list[dict[str, Any]]:
    deadline = time.monotonic() + 5
    while True:
        calls = [c for c in control.calls() if c["path"].endswith(path_suffix)]
        if len(calls) >= at_least or time.monotonic() > deadline:
            return calls
        time.sleep(0.05)


def consented_campaign(client: MailiveryClient, control: SandboxControl) -> Campaign:
    link = client.request_ms_graph_consent(ADA)
    created = control.consent(url=link.url)
    campaign_id = created.get("campaign", created).get("id")
    return client.get_campaign(campaign_id)


# --- success paths ----------------------------------------------------------------------------


def test_request_ms_graph_consent_returns_validated_link_and_sends_request_id(
    client: MailiveryClient, control: SandboxControl
) -> None:
    link = client.request_ms_graph_consent(ADA)

    assert link.url.startswith("https://login.microsoftonline.com/")
    assert link.client_id
    assert link.state
    (call,) = api_calls(control, "/campaigns/ms-graph")
    assert call["method"] == "POST"
    assert len(call["request_id"]) == 36  # a uuid4
    assert call["body"]["email"] == "Ada@Contoso.com"
    assert call["body"]["tags"] == ["tenant-42", "sales"]
    assert KEY not in str(call)


def test_get_campaign_after_consent_is_pending_ms_graph(
    client: MailiveryClient, control: SandboxControl
) -> None:
    campaign = consented_campaign(client, control)

    assert campaign.status is CampaignStatus.PENDING
    assert campaign.email == "ada@contoso.com"
    assert campaign.is_ms_graph
    assert campaign.smtp_type == "office 365"


def test_warmup_lifecycle_start_pause_resume_delete(
    client: MailiveryClient, control: SandboxControl
) -> None:
    campaign_id = consented_campaign(client, control).campaign_id

    client.start_warmup(campaign_id)
    assert client.get_campaign(campaign_id).status is CampaignStatus.ACTIVE
    control.pause_campaign(campaign_id)  # warmgate never pauses: the owner does, at Mailivery
    assert client.get_campaign(campaign_id).status is CampaignStatus.PAUSED
    client.resume_warmup(campaign_id)
    assert client.get_campaign(campaign_id).status is CampaignStatus.ACTIVE
    client.delete_campaign(campaign_id)
    with pytest.raises(NotFound):
        client.get_campaign(campaign_id)


@pytest.mark.parametrize("unusable", ["..", ".", "../campaigns", "4711/..", "%2e%2e"])
def test_unusable_campaign_id_never_reaches_the_vendor(
    client: MailiveryClient, control: SandboxControl, unusable: str
) -> None:
    campaign = consented_campaign(client, control)
    calls_before = len(control.calls())

    for action in (client.start_warmup, client.delete_campaign, client.get_campaign):
        with pytest.raises(InvalidCampaignId, match="campaign id may contain only"):
            action(unusable)

    assert len(control.calls()) == calls_before
    assert client.get_campaign(campaign.campaign_id).status is CampaignStatus.PENDING


def test_find_campaign_by_email_known_and_unknown(
    client: MailiveryClient, control: SandboxControl
) -> None:
    campaign = consented_campaign(client, control)
    found = client.find_campaign_by_email("ada@contoso.com")
    assert found is not None
    assert found.campaign_id == campaign.campaign_id
    assert client.find_campaign_by_email("nobody@contoso.com") is None


def test_iter_campaigns_follows_pagination(
    sandbox: MailiverySandbox, control: SandboxControl
) -> None:
    for n in range(5):
        control.seed_campaign(email=f"box{n}@contoso.com", first_name="Box")
    client = make_client(sandbox.api_base_url, contract=VendorContract(per_page=2))

    emails = [c.email for c in client.iter_campaigns()]

    assert emails == [f"box{n}@contoso.com" for n in range(5)]
    assert len(api_calls(control, "/campaigns")) == 3


def test_status_code_field_variant_is_understood(
    client: MailiveryClient, control: SandboxControl
) -> None:
    control.set_options(status_field="status_code")
    assert consented_campaign(client, control).status is CampaignStatus.PENDING


def test_form_body_encoding_is_accepted(sandbox: MailiverySandbox, control: SandboxControl) -> None:
    client = make_client(sandbox.api_base_url, contract=VendorContract(body_encoding="form"))
    client.request_ms_graph_consent(ADA)
    (call,) = api_calls(control, "/campaigns/ms-graph")
    assert call["body"]["first_name"] == "Ada"


# --- typed errors ----------------------------------------------------------------------------


def test_wrong_api_key_raises_unauthorized(sandbox: MailiverySandbox) -> None:
    with pytest.raises(Unauthorized) as excinfo:
        make_client(sandbox.api_base_url, key="wrong").list_campaigns()
    assert excinfo.value.status == 401
    assert excinfo.value.request_id


def test_account_not_allowlisted_raises_feature_disabled(sandbox: MailiverySandbox) -> None:
    with pytest.raises(FeatureDisabled) as excinfo:
        make_client(sandbox.api_base_url, key="other-key").request_ms_graph_consent(ADA)
    assert excinfo.value.code == "MS_GRAPH_FEATURE_DISABLED"
    assert "allowlist" in str(excinfo.value)


def test_unknown_campaign_raises_not_found(client: MailiveryClient) -> None:
    with pytest.raises(NotFound):
        client.get_campaign(999_999)


def test_start_twice_raises_conflict(client: MailiveryClient, control: SandboxControl) -> None:
    campaign_id = consented_campaign(client, control).campaign_id
    client.start_warmup(campaign_id)
    with pytest.raises(Conflict):
        client.start_warmup(campaign_id)


def test_start_with_broken_connection_raises_validation_failed(
    client: MailiveryClient, control: SandboxControl
) -> None:
    campaign_id = consented_campaign(client, control).campaign_id
    control.set_connection("ada@contoso.com", ok=False)
    with pytest.raises(ValidationFailed) as excinfo:
        client.start_warmup(campaign_id)
    assert excinfo.value.code == "CONNECTION_FAILED"


@pytest.mark.parametrize("shape", ["errors", "code"])
def test_invalid_create_raises_validation_failed_for_both_error_shapes(
    client: MailiveryClient, control: SandboxControl, shape: Any
) -> None:
    control.set_options(validation_error_shape=shape)
    with pytest.raises(ValidationFailed) as excinfo:
        client.request_ms_graph_consent(ConsentRequest(email="not-an-email", first_name="Ada"))
    assert excinfo.value.status == 422
    if shape == "errors":
        assert "email" in excinfo.value.field_errors
    else:
        assert excinfo.value.code


@pytest.mark.parametrize(
    ("fault", "error"),
    [
        ({"html_rate": 1.0}, ServerError),  # a proxy's 502 page
        ({"empty_rate": 1.0}, UnexpectedResponse),
        ({"garbage_rate": 1.0}, UnexpectedResponse),
    ],
)
def test_unintelligible_answer_raises_typed_error(
    client: MailiveryClient, control: SandboxControl, fault: dict[str, float], error: type
) -> None:
    control.set_faults(**fault, paths=[r"/campaigns$"])
    with pytest.raises(error) as excinfo:
        client.list_campaigns()
    assert excinfo.value.request_id


def test_connection_reset_after_the_request_raises_connection_lost_not_unreachable(
    client: MailiveryClient, control: SandboxControl
) -> None:
    campaign = control.seed_campaign("ada@contoso.com")
    control.set_faults(reset_rate=1.0, hang_ms=200, paths=[r"/start-warmup$"], count=1)

    with pytest.raises(ConnectionLost) as excinfo:  # the call may have run: it did
        client.start_warmup(campaign["id"])

    assert excinfo.value.request_id
    deadline = time.monotonic() + 3
    while control.campaigns()[0]["status"] != "active" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert control.campaigns()[0]["status"] == "active"


def test_refused_connection_raises_unreachable() -> None:
    client = make_client("http://127.0.0.1:9/api/v1")  # discard port: nothing listens
    with pytest.raises(Unreachable) as excinfo:
        client.list_campaigns()
    assert excinfo.value.request_id


def test_consent_url_on_foreign_host_raises_unexpected_response() -> None:
    with (
        MailiverySandbox(api_keys=(KEY,), consent_host="login.evil.example") as foreign,
        pytest.raises(UnexpectedResponse, match="host"),
    ):
        make_client(foreign.api_base_url).request_ms_graph_consent(ADA)


# --- retries ---------------------------------------------------------------------------------


def test_create_is_not_retried_on_5xx(client: MailiveryClient, control: SandboxControl) -> None:
    control.set_faults(error_rate=1.0, error_statuses=[503], count=1)
    with pytest.raises(ServerError):
        client.request_ms_graph_consent(ADA)
    assert len(api_calls(control, "/campaigns/ms-graph")) == 1


def test_create_is_not_retried_on_timeout(
    sandbox: MailiverySandbox, control: SandboxControl
) -> None:
    control.set_faults(timeout_rate=1.0, hang_ms=1200, count=1)
    client = make_client(sandbox.api_base_url, read_timeout=0.5)
    with pytest.raises(Timeout):
        client.request_ms_graph_consent(ADA)
    assert len(api_calls(control, "/campaigns/ms-graph", at_least=1)) == 1
    time.sleep(0.3)
    assert len(api_calls(control, "/campaigns/ms-graph")) == 1


def test_read_is_retried_on_5xx_with_fresh_request_ids(
    sandbox: MailiverySandbox, control: SandboxControl
) -> None:
    sleep = SleepRecorder()
    client = make_client(sandbox.api_base_url, sleep=sleep)
    control.set_faults(error_rate=1.0, error_statuses=[500], count=2)

    page = client.list_campaigns()

    assert page.campaigns == []
    calls = api_calls(control, "/campaigns")
    assert [c["status"] for c in calls] == [500, 500, 200]
    assert len({c["request_id"] for c in calls}) == 3
    assert len(sleep.delays) == 2
    assert all(0 <= d <= 0.02 for d in sleep.delays)


def test_read_is_retried_on_timeout(sandbox: MailiverySandbox, control: SandboxControl) -> None:
    control.set_faults(timeout_rate=1.0, hang_ms=1000, count=1)
    client = make_client(sandbox.api_base_url, read_timeout=0.3)
    assert client.list_campaigns().campaigns == []


def test_read_gives_up_after_attempts_and_raises_last_error(
    client: MailiveryClient, control: SandboxControl
) -> None:
    control.set_faults(error_rate=1.0, error_statuses=[502], count=5)
    with pytest.raises(ServerError):
        client.list_campaigns()
    assert len(api_calls(control, "/campaigns")) == 3


def test_read_not_retried_on_client_error(client: MailiveryClient, control: SandboxControl) -> None:
    with pytest.raises(NotFound):
        client.get_campaign(424242)
    assert len(api_calls(control, "/campaigns/424242")) == 1


def test_rate_limited_read_waits_retry_after_then_succeeds(
    sandbox: MailiverySandbox, control: SandboxControl
) -> None:
    control.set_rate_limit(1)
    sleep = SleepRecorder(on_sleep=lambda: control.set_rate_limit(240))  # the window passes
    client = make_client(sandbox.api_base_url, sleep=sleep)
    client.list_campaigns()  # uses the one request of this minute

    client.list_campaigns()

    statuses = [c["status"] for c in api_calls(control, "/campaigns")]
    assert statuses == [200, 429, 200]
    assert len(sleep.delays) == 1
    assert sleep.delays[0] >= 1  # Retry-After in whole seconds, never 0


def test_rate_limited_beyond_max_wait_raises_with_retry_after(
    sandbox: MailiverySandbox, control: SandboxControl
) -> None:
    control.set_rate_limit(1)
    client = MailiveryClient(
        base_url=sandbox.api_base_url,
        api_key=lambda: KEY,
        retry=RetryPolicy(max_retry_after=0.5),
        sleep=SleepRecorder(),
    )
    client.list_campaigns()
    with pytest.raises(RateLimited) as excinfo:
        client.list_campaigns()
    assert excinfo.value.retry_after is not None
    assert excinfo.value.retry_after >= 1


def test_rate_limited_create_raises_without_retry(
    client: MailiveryClient, control: SandboxControl
) -> None:
    control.set_rate_limit(1)
    client.list_campaigns()
    with pytest.raises(RateLimited):
        client.request_ms_graph_consent(ADA)
    assert len(api_calls(control, "/campaigns/ms-graph")) == 1


def test_every_error_is_a_mailivery_error_with_request_id_in_str(
    client: MailiveryClient,
) -> None:
    with pytest.raises(MailiveryError) as excinfo:
        client.get_campaign(31337)
    assert excinfo.value.request_id in str(excinfo.value)
