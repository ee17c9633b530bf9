"""Settings: one pydantic model per function, read from the environment when its handler loads.

A function's model holds exactly what it reads; the resources it cannot run without are
required fields, so a missing or invalid variable fails the cold start with an error naming
the variable, not a KeyError deep in a request. The parts functions share (the Mailivery
client, the mailbox table, the work queue, the claim lease) are base classes, each holding
its variables once.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from enum import StrEnum
from typing import Annotated, Self

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from warmgate.domain.policies import UnexpectedCampaignPolicy

DEFAULT_MAILIVERY_BASE_URL = "https://app.mailivery.io/api/v1"


class SettingsError(RuntimeError):
    """The environment is missing a variable or holds an invalid value; the message names it."""


class Stage(StrEnum):
    LOCAL = "local"  # devstack, sam local invoke, tests: plain-text MAILIVERY_API_KEY allowed
    DEV = "dev"
    PROD = "prod"


PositiveSeconds = Annotated[float, Field(gt=0, le=900)]


def _split(value: object, *, lower: bool) -> object:
    if isinstance(value, str):
        parts = (part.strip() for part in value.split(","))
        return tuple(part.lower() if lower else part for part in parts if part)
    return value


class FunctionSettings(BaseModel):
    """What every function reads. The alias of a field is its variable's name."""

    model_config = ConfigDict(frozen=True, extra="ignore", populate_by_name=True)

    stage: Stage = Field(Stage.PROD, alias="WARMGATE_STAGE")

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Self:
        """Validate `environ` (default: the process's); one error names every variable at fault."""
        env = os.environ if environ is None else environ
        try:
            return cls.model_validate(dict(env))
        except ValidationError as exc:
            raise SettingsError(_describe(exc)) from None


def _describe(exc: ValidationError) -> str:
    missing = [str(err["loc"][0]) for err in exc.errors() if err["type"] == "missing"]
    invalid = [
        f"{'.'.join(str(p) for p in err['loc']) or 'environment'}: {err['msg']}"
        for err in exc.errors()
        if err["type"] != "missing"
    ]
    parts = ([f"missing environment variable(s): {', '.join(missing)}"] if missing else []) + (
        [f"invalid environment: {'; '.join(invalid)}"] if invalid else []
    )
    return "; ".join(parts)


# --- shared parts ---


class SecretCacheSettings(FunctionSettings):
    # How long a fetched secret is reused before it is read again (warmgate.adapters.secrets).
    secret_max_age_seconds: int = Field(300, alias="SECRET_MAX_AGE_SECONDS", ge=0, le=86_400)


class TableSettings(FunctionSettings):
    mailbox_table_name: str = Field(alias="MAILBOX_TABLE_NAME", min_length=3)


class QueueSettings(FunctionSettings):
    work_queue_url: str = Field(alias="WORK_QUEUE_URL", min_length=1)


class ClaimLeaseSettings(FunctionSettings):
    # A worker's claim on a campaign (mailbox `verifying`, ledger `deleting`) blocks other
    # workers this long; after it, a crashed worker's claim is taken over. Must exceed the
    # longest a live worker holds a claim (wiring.claim_hold_seconds, 76 s by default).
    claim_lease_seconds: int = Field(90, alias="CLAIM_LEASE_SECONDS", ge=35, le=3600)


class MailiverySettings(SecretCacheSettings, TableSettings):
    """The Mailivery client and the request budget it shares (kept in the mailbox table)."""

    # The API key: the secret's reference; a plain key only on the local stage.
    mailivery_api_key_secret: str | None = Field(
        None, alias="MAILIVERY_API_KEY_SECRET", min_length=1
    )
    mailivery_api_key: str | None = Field(None, alias="MAILIVERY_API_KEY", min_length=1, repr=False)
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

    @field_validator("mailivery_consent_hosts", mode="before")
    @classmethod
    def _split_hosts(cls, value: object) -> object:
        return _split(value, lower=True)

    @field_validator("mailivery_base_url")
    @classmethod
    def _base_url_is_http(cls, value: str) -> str:
        if not value.startswith(("https://", "http://")):
            raise ValueError("must be an http(s) URL")
        return value.rstrip("/")

    @model_validator(mode="after")
    def _api_key_is_a_secret_or_local(self) -> Self:
        if self.mailivery_api_key and self.stage is not Stage.LOCAL:
            raise ValueError(
                "MAILIVERY_API_KEY is accepted only with WARMGATE_STAGE=local; "
                "deployed stages use MAILIVERY_API_KEY_SECRET"
            )
        if not (self.mailivery_api_key_secret or self.mailivery_api_key):
            raise ValueError(
                "missing environment variable MAILIVERY_API_KEY_SECRET "
                "(or MAILIVERY_API_KEY with WARMGATE_STAGE=local)"
            )
        return self


# --- one model per function ---


class WebhookSettings(SecretCacheSettings, QueueSettings):
    webhook_token_secret: str = Field(alias="WEBHOOK_TOKEN_SECRET", min_length=1)


class OnboardingSettings(MailiverySettings, QueueSettings, ClaimLeaseSettings):
    expectation_ttl_hours: float = Field(24.0, alias="EXPECTATION_TTL_HOURS", gt=0, le=24 * 30)
    # IAM principal ARNs (roles as arn:aws:sts::<account>:assumed-role/<role>) that may withdraw
    # or resume any mailbox; everyone else acts only on the requests it made.
    admin_principals: tuple[str, ...] = Field((), alias="ADMIN_PRINCIPALS")

    @field_validator("admin_principals", mode="before")
    @classmethod
    def _split_principals(cls, value: object) -> object:
        return _split(value, lower=False)  # ARNs are case-sensitive


class CampaignWorkerSettings(MailiverySettings, ClaimLeaseSettings):
    """The worker service (warmgate.services.worker) as the function and the ops CLI run it."""

    unexpected_campaign_policy: UnexpectedCampaignPolicy = Field(
        UnexpectedCampaignPolicy.LEAVE, alias="UNEXPECTED_CAMPAIGN_POLICY"
    )
    # Start/resume refusals (Mailivery cannot connect) retried with growing delay, then parked.
    max_start_attempts: int = Field(4, alias="MAX_START_ATTEMPTS", ge=1, le=10)


class WorkerSettings(CampaignWorkerSettings, QueueSettings):
    """The function adds the queue it hands deferred records back to."""


class ReconcilerSettings(MailiverySettings, QueueSettings):
    pass


class EventsSettings(FunctionSettings):
    # The bus the mailbox events go to: a name or an ARN (PutEvents takes either).
    event_bus_name: str = Field(alias="EVENT_BUS_NAME", min_length=1)
