import pytest

from warmgate.settings import (
    DEFAULT_MAILIVERY_BASE_URL,
    SettingsError,
    Stage,
    UnexpectedCampaignPolicy,
    load_settings,
)


def test_load_settings_empty_environment_uses_defaults() -> None:
    settings = load_settings(environ={})
    assert settings.mailivery_base_url == DEFAULT_MAILIVERY_BASE_URL
    assert settings.stage is Stage.PROD
    assert settings.expectation_ttl_hours == 24.0
    assert settings.unexpected_campaign_policy is UnexpectedCampaignPolicy.LEAVE
    assert settings.mailivery_consent_hosts == ("login.microsoftonline.com",)


def test_load_settings_values_from_environment_are_parsed() -> None:
    settings = load_settings(
        environ={
            "MAILBOX_TABLE_NAME": "warmgate-mailboxes",
            "MAILIVERY_BASE_URL": "http://127.0.0.1:8700/api/v1/",
            "MAILIVERY_CONSENT_HOSTS": " Login.MicrosoftOnline.com, sandbox.local ",
            "EXPECTATION_TTL_HOURS": "1.5",
            "UNEXPECTED_CAMPAIGN_POLICY": "delete",
            "IRRELEVANT": "ignored",
        }
    )
    assert settings.mailbox_table_name == "warmgate-mailboxes"
    assert settings.mailivery_base_url == "http://127.0.0.1:8700/api/v1"
    assert settings.mailivery_consent_hosts == ("login.microsoftonline.com", "sandbox.local")
    assert settings.expectation_ttl_hours == 1.5
    assert settings.unexpected_campaign_policy is UnexpectedCampaignPolicy.DELETE


def test_load_settings_missing_required_variable_names_it() -> None:
    with pytest.raises(SettingsError, match="MAILBOX_TABLE_NAME") as excinfo:
        load_settings(require=["MAILBOX_TABLE_NAME", "WORK_QUEUE_URL"], environ={})
    assert "WORK_QUEUE_URL" in str(excinfo.value)


def test_load_settings_either_variable_satisfies_alternative() -> None:
    environ = {"WARMGATE_STAGE": "local", "MAILIVERY_API_KEY": "k"}
    load_settings(require=["MAILIVERY_API_KEY_SECRET|MAILIVERY_API_KEY"], environ=environ)
    with pytest.raises(SettingsError, match="MAILIVERY_API_KEY_SECRET or MAILIVERY_API_KEY"):
        load_settings(require=["MAILIVERY_API_KEY_SECRET|MAILIVERY_API_KEY"], environ={})


@pytest.mark.parametrize(
    ("variable", "value"),
    [
        ("EXPECTATION_TTL_HOURS", "soon"),
        ("EXPECTATION_TTL_HOURS", "-1"),
        ("UNEXPECTED_CAMPAIGN_POLICY", "shred"),
        ("MAILIVERY_BASE_URL", "ftp://mailivery"),
        ("MAILIVERY_READ_RETRIES", "9"),
        ("WARMGATE_STAGE", "qa"),
    ],
)
def test_load_settings_invalid_value_error_names_variable(variable: str, value: str) -> None:
    with pytest.raises(SettingsError, match=variable):
        load_settings(environ={variable: value})


def test_load_settings_plain_api_key_outside_local_stage_is_refused() -> None:
    with pytest.raises(SettingsError, match="MAILIVERY_API_KEY is accepted only"):
        load_settings(environ={"WARMGATE_STAGE": "prod", "MAILIVERY_API_KEY": "live-key"})


def test_settings_repr_never_shows_plain_api_key() -> None:
    settings = load_settings(environ={"WARMGATE_STAGE": "local", "MAILIVERY_API_KEY": "s3cr3t"})
    assert "s3cr3t" not in repr(settings)
