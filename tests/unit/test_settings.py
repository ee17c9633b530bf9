from typing import Any

import pytest

from warmgate.settings import (
    DEFAULT_MAILIVERY_BASE_URL,
    CampaignWorkerSettings,
    EventsSettings,
    FunctionSettings,
    OnboardingSettings,
    ReconcilerSettings,
    SettingsError,
    Stage,
    UnexpectedCampaignPolicy,
    WebhookSettings,
    WorkerSettings,
)

TABLE = {"MAILBOX_TABLE_NAME": "warmgate-mailboxes"}
QUEUE = {"WORK_QUEUE_URL": "http://127.0.0.1:5000/123456789012/warmgate-WorkQueue"}
API_KEY = {"MAILIVERY_API_KEY_SECRET": "warmgate/mailivery-api-key"}

# Each function's model and the least environment it runs with: every variable is required.
REQUIRED: dict[type[FunctionSettings], dict[str, str]] = {
    WebhookSettings: QUEUE | {"WEBHOOK_TOKEN_SECRET": "warmgate/webhook-token"},
    OnboardingSettings: TABLE | QUEUE | API_KEY,
    WorkerSettings: TABLE | QUEUE | API_KEY,
    CampaignWorkerSettings: TABLE | API_KEY,
    ReconcilerSettings: TABLE | QUEUE | API_KEY,
    EventsSettings: {"EVENT_BUS_NAME": "warmgate-bus"},
}
MODELS = sorted(REQUIRED, key=lambda model: model.__name__)


@pytest.mark.parametrize("model", MODELS)
def test_least_environment_is_enough_and_leaves_the_rest_at_defaults(
    model: type[FunctionSettings],
) -> None:
    settings = model.from_environ(REQUIRED[model])

    dumped = settings.model_dump(by_alias=True)
    assert {variable: dumped[variable] for variable in REQUIRED[model]} == REQUIRED[model]
    assert settings.stage is Stage.PROD


@pytest.mark.parametrize(
    ("model", "variable"),
    [(model, variable) for model in MODELS for variable in REQUIRED[model]],
)
def test_missing_required_variable_fails_naming_it(
    model: type[FunctionSettings], variable: str
) -> None:
    environ = {k: v for k, v in REQUIRED[model].items() if k != variable}

    with pytest.raises(SettingsError, match=f"missing environment variable.*{variable}"):
        model.from_environ(environ)


def test_every_missing_variable_is_named_in_one_error() -> None:
    with pytest.raises(SettingsError) as excinfo:
        WorkerSettings.from_environ({})

    assert "MAILBOX_TABLE_NAME" in str(excinfo.value)
    assert "WORK_QUEUE_URL" in str(excinfo.value)


@pytest.mark.parametrize("variable", ["MAILBOX_TABLE_NAME", "WORK_QUEUE_URL", "EVENT_BUS_NAME"])
def test_empty_required_variable_is_invalid(variable: str) -> None:
    model = EventsSettings if variable == "EVENT_BUS_NAME" else ReconcilerSettings
    with pytest.raises(SettingsError, match=f"invalid environment: {variable}"):
        model.from_environ(REQUIRED[model] | {variable: ""})


def test_mailivery_values_from_environment_are_parsed() -> None:
    settings = WorkerSettings.from_environ(
        REQUIRED[WorkerSettings]
        | {
            "MAILIVERY_BASE_URL": "http://127.0.0.1:8700/api/v1/",
            "MAILIVERY_CONSENT_HOSTS": " Login.MicrosoftOnline.com, sandbox.local ",
            "UNEXPECTED_CAMPAIGN_POLICY": "delete",
            "IRRELEVANT": "ignored",
        }
    )
    assert settings.mailbox_table_name == "warmgate-mailboxes"
    assert settings.mailivery_base_url == "http://127.0.0.1:8700/api/v1"
    assert settings.mailivery_consent_hosts == ("login.microsoftonline.com", "sandbox.local")
    assert settings.unexpected_campaign_policy is UnexpectedCampaignPolicy.DELETE


def test_mailivery_defaults() -> None:
    settings = ReconcilerSettings.from_environ(REQUIRED[ReconcilerSettings])
    assert settings.mailivery_base_url == DEFAULT_MAILIVERY_BASE_URL
    assert settings.mailivery_consent_hosts == ("login.microsoftonline.com",)
    assert settings.mailivery_requests_per_minute == 240


def test_onboarding_values_from_environment_are_parsed() -> None:
    settings = OnboardingSettings.from_environ(
        REQUIRED[OnboardingSettings]
        | {
            "EXPECTATION_TTL_HOURS": "1.5",
            "ADMIN_PRINCIPALS": " arn:aws:iam::1:role/Ops ,,arn:aws:iam::1:role/Dev",
        }
    )
    assert settings.expectation_ttl_hours == 1.5
    # ARNs are case-sensitive: split and stripped, not lower-cased like the consent hosts.
    assert settings.admin_principals == ("arn:aws:iam::1:role/Ops", "arn:aws:iam::1:role/Dev")


def test_onboarding_defaults() -> None:
    settings = OnboardingSettings.from_environ(REQUIRED[OnboardingSettings])
    assert settings.expectation_ttl_hours == 24.0
    assert settings.admin_principals == ()


def test_worker_defaults() -> None:
    settings = WorkerSettings.from_environ(REQUIRED[WorkerSettings])
    assert settings.unexpected_campaign_policy is UnexpectedCampaignPolicy.LEAVE
    assert (settings.max_start_attempts, settings.claim_lease_seconds) == (4, 90)


@pytest.mark.parametrize(
    ("model", "variable", "value"),
    [
        (OnboardingSettings, "EXPECTATION_TTL_HOURS", "soon"),
        (OnboardingSettings, "EXPECTATION_TTL_HOURS", "-1"),
        (WorkerSettings, "UNEXPECTED_CAMPAIGN_POLICY", "shred"),
        (WorkerSettings, "CLAIM_LEASE_SECONDS", "10"),
        (ReconcilerSettings, "MAILIVERY_BASE_URL", "ftp://mailivery"),
        (ReconcilerSettings, "MAILIVERY_READ_RETRIES", "9"),
        (WebhookSettings, "SECRET_MAX_AGE_SECONDS", "-5"),
        (EventsSettings, "WARMGATE_STAGE", "qa"),
    ],
)
def test_invalid_value_error_names_variable(
    model: type[FunctionSettings], variable: str, value: str
) -> None:
    with pytest.raises(SettingsError, match=f"invalid environment: {variable}"):
        model.from_environ(REQUIRED[model] | {variable: value})


@pytest.mark.parametrize("model", [m for m in MODELS if "MAILIVERY_API_KEY_SECRET" in REQUIRED[m]])
def test_api_key_is_required_as_secret_or_plain_locally(model: type[FunctionSettings]) -> None:
    without_key = {k: v for k, v in REQUIRED[model].items() if k != "MAILIVERY_API_KEY_SECRET"}

    with pytest.raises(SettingsError, match="MAILIVERY_API_KEY_SECRET"):
        model.from_environ(without_key)
    local: dict[str, Any] = model.from_environ(
        without_key | {"WARMGATE_STAGE": "local", "MAILIVERY_API_KEY": "k"}
    ).model_dump()
    assert (local["mailivery_api_key"], local["mailivery_api_key_secret"]) == ("k", None)


def test_plain_api_key_outside_local_stage_is_refused() -> None:
    environ = REQUIRED[WorkerSettings] | {"WARMGATE_STAGE": "prod", "MAILIVERY_API_KEY": "live"}

    with pytest.raises(SettingsError, match="MAILIVERY_API_KEY is accepted only"):
        WorkerSettings.from_environ(environ)


def test_settings_repr_never_shows_plain_api_key() -> None:
    settings = WorkerSettings.from_environ(
        TABLE | QUEUE | {"WARMGATE_STAGE": "local", "MAILIVERY_API_KEY": "s3cr3t"}
    )
    assert "s3cr3t" not in repr(settings)


def test_a_function_reads_only_its_own_variables() -> None:
    # The webhook never calls Mailivery: a broken Mailivery variable cannot fail its cold start.
    environ = REQUIRED[WebhookSettings] | {"MAILIVERY_BASE_URL": "ftp://mailivery"}

    assert WebhookSettings.from_environ(environ).work_queue_url == QUEUE["WORK_QUEUE_URL"]
    assert not hasattr(WebhookSettings.from_environ(environ), "mailivery_base_url")
