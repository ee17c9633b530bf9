"""Settings: one pydantic model read from the environment, validated when a handler loads.

Each handler declares which variables it needs (`load_settings(require=...)`) so that a missing
one fails the cold start with an error naming the variable, not a KeyError deep in a request.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from warmgate.domain.decisions import UnexpectedCampaignPolicy

DEFAULT_MAILIVERY_BASE_URL = "https://app.mailivery.io/api/v1"


class SettingsError(RuntimeError):
    """The environment is missing a variable or holds an invalid value; the message names it."""


class Stage(StrEnum):
    LOCAL = "local"  # devstack, sam local invoke, tests: plain-text MAILIVERY_API_KEY allowed
    DEV = "dev"
    PROD = "prod"


def _csv(value: object) -> object:
    if isinstance(value, str):
        return tuple(part.strip().lower() for part in value.split(",") if part.strip())
    return value


PositiveSeconds = Annotated[float, Field(gt=0, le=900)]


class Settings(BaseModel):
    """Every environment variable warmgate reads. The alias is the variable's name."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    stage: Stage = Field(Stage.PROD, alias="WARMGATE_STAGE")

    # --- AWS resources (set by template.yaml) ---
    mailbox_table_name: str | None = Field(None, alias="MAILBOX_TABLE_NAME", min_length=3)
    work_queue_url: str | None = Field(None, alias="WORK_QUEUE_URL", min_length=1)
    # The bus the mailbox events go to: a name or an ARN (PutEvents takes either).
    event_bus_name: str | None = Field(None, alias="EVENT_BUS_NAME", min_length=1)

    # --- Secrets: references, never values (except MAILIVERY_API_KEY on a local stage) ---
    mailivery_api_key_secret: str | None = Field(
        None, alias="MAILIVERY_API_KEY_SECRET", min_length=1
    )
    mailivery_api_key: str | None = Field(None, alias="MAILIVERY_API_KEY", min_length=1, repr=False)
    webhook_token_secret: str | None = Field(None, alias="WEBHOOK_TOKEN_SECRET", min_length=1)
    secret_max_age_seconds: int = Field(300, alias="SECRET_MAX_AGE_SECONDS", ge=0, le=86_400)

    # --- Mailivery ---
    mailivery_base_url: str = Field(DEFAULT_MAILIVERY_BASE_URL, alias="MAILIVERY_BASE_URL")
    mailivery_consent_hosts: tuple[str, ...] = Field(
        ("login.microsoftonline.com",), alias="MAILIVERY_CONSENT_HOSTS"
    )
    mailivery_connect_timeout_seconds: PositiveSeconds = Field(
        3.05, alias="MAILIVERY_CONNECT_TIMEOUT_SECONDS"
    )
    mailivery_read_timeout_seconds: PositiveSeconds = Field(
        10.0, alias="MAILIVERY_READ_TIMEOUT_SECONDS"
    )
    mailivery_read_retries: int = Field(2, alias="MAILIVERY_READ_RETRIES", ge=0, le=5)
    # JSON object overriding the [guess]/[unknown] parts of the vendor contract, see
    # warmgate.adapters.mailivery.contract.VendorContract (paths, status field, body encoding,
    # tags).
    mailivery_contract_overrides: str | None = Field(None, alias="MAILIVERY_CONTRACT_OVERRIDES")

    # One budget per API key, shared by every instance (warmgate.adapters.budget) [doc: 240/min].
    mailivery_requests_per_minute: int = Field(
        240, alias="MAILIVERY_REQUESTS_PER_MINUTE", ge=20, le=6000
    )

    # --- Policy knobs ---
    expectation_ttl_hours: float = Field(24.0, alias="EXPECTATION_TTL_HOURS", gt=0, le=24 * 30)
    unexpected_campaign_policy: UnexpectedCampaignPolicy = Field(
        UnexpectedCampaignPolicy.LEAVE, alias="UNEXPECTED_CAMPAIGN_POLICY"
    )
    # A worker's claim on a campaign (mailbox `verifying`, ledger `deleting`) blocks other
    # workers this long; after it, a crashed worker's claim is taken over. Must exceed the
    # longest a live worker holds a claim (wiring.claim_hold_seconds, 76 s by default).
    claim_lease_seconds: int = Field(90, alias="CLAIM_LEASE_SECONDS", ge=35, le=3600)
    # IAM principal ARNs (roles as arn:aws:sts::<account>:assumed-role/<role>) that may withdraw
    # or resume any mailbox; everyone else acts only on the requests it made.
    admin_principals: tuple[str, ...] = Field((), alias="ADMIN_PRINCIPALS")
    # Start/resume refusals (Mailivery cannot connect) retried with growing delay, then parked.
    max_start_attempts: int = Field(4, alias="MAX_START_ATTEMPTS", ge=1, le=10)

    _split_hosts = field_validator("mailivery_consent_hosts", mode="before")(_csv)

    @field_validator("admin_principals", mode="before")
    @classmethod
    def _split_principals(cls, value: object) -> object:
        if isinstance(value, str):  # ARNs are case-sensitive: not lower-cased like hosts
            return tuple(part.strip() for part in value.split(",") if part.strip())
        return value

    @field_validator("mailivery_base_url")
    @classmethod
    def _base_url_is_http(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _plain_api_key_only_locally(self) -> Self:
        if self.mailivery_api_key and self.stage is not Stage.LOCAL:
            raise ValueError(
                "MAILIVERY_API_KEY is accepted only with WARMGATE_STAGE=local; "
                "deployed stages use MAILIVERY_API_KEY_SECRET"
            )
        return self


# One requirement, two ways to meet it: the secret's reference, or a plain key on stage local.
MAILIVERY_API_KEY = "MAILIVERY_API_KEY_SECRET|MAILIVERY_API_KEY"


def load_settings(
    require: Iterable[str] = (), environ: Mapping[str, str] | None = None
) -> Settings:
    """Validate the environment; `require` lists variable names this caller cannot run without.

    An entry "A|B" means either variable is enough (see MAILIVERY_API_KEY).
    """
    env = os.environ if environ is None else environ
    try:
        settings = Settings.model_validate(dict(env))
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in err['loc']) or 'environment'}: {err['msg']}"
            for err in exc.errors()
        )
        raise SettingsError(f"invalid environment: {problems}") from None
    missing = [name for name in require if not any(env.get(option) for option in name.split("|"))]
    if missing:
        raise SettingsError(
            "missing environment variable(s): " + ", ".join(m.replace("|", " or ") for m in missing)
        )
    return settings
