"""Everything about Mailivery's API that the public reference does not pin down, in one place.

The Microsoft Graph endpoint is beta ("behaviour and contract may change without notice"), so each
[guess]/[unknown] of docs/mailivery-contract.md is a field here, overridable at deploy time
with the MAILIVERY_CONTRACT_OVERRIDES environment variable (a JSON object of these fields), e.g.
`{"resume_warmup_path": "/campaigns/{campaign_id}/resume"}`. No other module hard-codes them.
"""

from __future__ import annotations

import json
from enum import StrEnum
from typing import Self

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator


class BodyEncoding(StrEnum):
    JSON = "json"  # [peer] integrations post JSON with snake_case fields
    FORM = "form"  # [doc] control endpoints are shown as form-urlencoded


class TagsPlacement(StrEnum):
    TAGS = "tags"  # "tags": ["a", "b"]
    META = "meta"  # "meta": {"tags": "a,b"}
    BOTH = "both"


class VendorContract(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")

    # Paths below the base URL. {campaign_id} / {email} are filled in by the client.
    request_consent_path: str = "/campaigns/ms-graph"  # [peer]
    campaign_path: str = "/campaigns/{campaign_id}"  # [guess/peer]
    campaign_by_email_path: str = "/campaigns/email/{email}"  # [peer]
    list_campaigns_path: str = "/campaigns"  # [doc]
    start_warmup_path: str = "/campaigns/{campaign_id}/start-warmup"  # [doc]
    resume_warmup_path: str = "/campaigns/{campaign_id}/resume-warmup"  # [guess]
    delete_campaign_path: str = "/campaigns/{campaign_id}"  # [guess]

    # The campaign's status field: `status` or `status_code` [unknown]; the first present wins.
    status_fields: tuple[str, ...] = ("status", "status_code")
    body_encoding: BodyEncoding = BodyEncoding.JSON
    tags_placement: TagsPlacement = TagsPlacement.TAGS  # [unknown which]
    request_id_header: str = "X-Request-ID"  # [peer]; the reference does not name it
    # The connection-problem webhook's `type` string [unknown]: an event type containing any of
    # these (lower-cased) is treated as one.
    connection_problem_event_markers: tuple[str, ...] = ("connection", "disconnect")
    # Pagination of GET /campaigns [unknown]: page-number query parameters, Laravel-style meta.
    page_param: str = "page"
    per_page_param: str = "per_page"
    per_page: int = 100

    @field_validator(
        "request_consent_path",
        "campaign_path",
        "campaign_by_email_path",
        "list_campaigns_path",
        "start_warmup_path",
        "resume_warmup_path",
        "delete_campaign_path",
    )
    @classmethod
    def _path_is_absolute(cls, value: str) -> str:
        if not value.startswith("/"):
            raise ValueError("must start with '/'")
        return value

    @classmethod
    def from_overrides(cls, overrides: str | None) -> Self:
        """The default contract with MAILIVERY_CONTRACT_OVERRIDES applied."""
        if not overrides:
            return cls()
        try:
            return cls.model_validate(json.loads(overrides))
        except (ValueError, ValidationError) as exc:
            raise ValueError(f"MAILIVERY_CONTRACT_OVERRIDES is invalid: {exc}") from None
