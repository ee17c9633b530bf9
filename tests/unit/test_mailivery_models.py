import pytest

from warmgate.adapters.mailivery.contract import VendorContract
from warmgate.domain.campaigns import (
    Campaign,
    CampaignStatus,
    InvalidConsentUrl,
    validate_consent_url,
)

HOSTS = ("login.microsoftonline.com",)
GOOD = (
    "https://login.microsoftonline.com/common/oauth2/v2.0/authorize"
    "?client_id=0f1e2d3c&response_type=code&state=abc123"
)


def test_validate_consent_url_microsoft_url_returns_client_id_and_state() -> None:
    link = validate_consent_url(GOOD, HOSTS)
    assert (link.url, link.client_id, link.state) == (GOOD, "0f1e2d3c", "abc123")


def test_validate_consent_url_host_is_case_insensitive() -> None:
    url = GOOD.replace("login.microsoftonline.com", "LOGIN.microsoftonline.com")
    assert validate_consent_url(url, HOSTS).state == "abc123"


@pytest.mark.parametrize(
    ("url", "problem"),
    [
        (None, "missing"),
        ("", "missing"),
        (GOOD.replace("https://", "http://"), "not https"),
        (
            GOOD.replace("login.microsoftonline.com", "login.microsoftonline.com.evil.example"),
            "host",
        ),
        (GOOD.replace("login.microsoftonline.com", "evil.example"), "host"),
        (GOOD.replace("https://", "https://login.microsoftonline.com@"), "userinfo"),
        (GOOD.replace("https://", "https://user:pw@"), "userinfo"),
        (GOOD + "#access_token=x", "fragment"),
        (GOOD.replace(".com/", ".com:8443/"), "port"),
        (GOOD.replace(".com/", ".com:99999/"), "port"),
        (GOOD.replace("client_id=0f1e2d3c&", ""), "client_id"),
        (GOOD.replace("client_id=0f1e2d3c", "client_id="), "client_id"),
        (GOOD + "&client_id=other", "client_id"),
        (GOOD.replace("&state=abc123", ""), "state"),
        (GOOD + " ", "whitespace"),
        (GOOD + "&x=" + "a" * 5000, "longer"),
    ],
)
def test_validate_consent_url_unsafe_url_rejected_with_reason(url: object, problem: str) -> None:
    with pytest.raises(InvalidConsentUrl, match=problem):
        validate_consent_url(url, HOSTS)


def test_validate_consent_url_sandbox_host_allowed_when_configured() -> None:
    url = GOOD.replace("login.microsoftonline.com", "consent.sandbox.test")
    assert validate_consent_url(url, ("consent.sandbox.test",)).client_id == "0f1e2d3c"


@pytest.mark.parametrize(
    ("raw", "expected"),
    [
        ("pending", CampaignStatus.PENDING),
        ("Active", CampaignStatus.ACTIVE),
        ("paused", CampaignStatus.PAUSED),
        ("connection-problem", CampaignStatus.CONNECTION_PROBLEM),
        ("Disconnected", CampaignStatus.CONNECTION_PROBLEM),
        ("archived", CampaignStatus.UNKNOWN),
        (None, CampaignStatus.UNKNOWN),
    ],
)
def test_campaign_status_parse_maps_known_and_unknown(
    raw: object, expected: CampaignStatus
) -> None:
    assert CampaignStatus.parse(raw) is expected


def test_campaign_from_payload_status_code_field_and_int_id_accepted() -> None:
    fields = VendorContract().status_fields
    campaign = Campaign.from_payload(
        {
            "id": 4711,
            "status_code": "pending",
            "email": " Ada@Contoso.com",
            "imap_type": "ms-graph",
        },
        fields,
    )
    assert campaign.campaign_id == "4711"
    assert campaign.status is CampaignStatus.PENDING
    assert campaign.email == "ada@contoso.com"
    assert campaign.is_ms_graph


@pytest.mark.parametrize("bad_id", [None, True, 1.5, {"id": 1}])
def test_campaign_from_payload_unusable_id_raises(bad_id: object) -> None:
    with pytest.raises(ValueError, match="id"):
        Campaign.from_payload({"id": bad_id, "status": "pending"}, ("status",))


def test_vendor_contract_overrides_replace_only_given_fields() -> None:
    contract = VendorContract.from_overrides(
        '{"resume_warmup_path": "/campaigns/{campaign_id}/resume"}'
    )
    assert contract.resume_warmup_path == "/campaigns/{campaign_id}/resume"
    assert contract.start_warmup_path == VendorContract().start_warmup_path


@pytest.mark.parametrize(
    "overrides", ['{"resume_warmup_path": "no-slash"}', '{"unknown_field": 1}', "not json", "[]"]
)
def test_vendor_contract_invalid_overrides_raise_naming_variable(overrides: str) -> None:
    with pytest.raises(ValueError, match="MAILIVERY_CONTRACT_OVERRIDES"):
        VendorContract.from_overrides(overrides)
