"""The one map from errors to API answers (warmgate.api.http.api_error_for)."""

from __future__ import annotations

import pytest
from aws_lambda_powertools.event_handler.exceptions import NotFoundError

from warmgate.adapters import mailivery
from warmgate.adapters.budget import BudgetExhausted
from warmgate.api.http import BadRequestBody, BodyTooLarge, api_error_for
from warmgate.services.mailbox_requests import MailboxNotFound, OnboardingConflict

RID = "4b8e6a52-4a4e-4f2b-9a55-1f1f2c3d4e5f"


@pytest.mark.parametrize(
    ("error", "status", "code"),
    [
        (BadRequestBody("body is not valid JSON"), 400, "BAD_REQUEST"),
        (BodyTooLarge("body is larger than 16384 bytes"), 413, "PAYLOAD_TOO_LARGE"),
        (MailboxNotFound("ada@contoso.com"), 404, "NOT_FOUND"),
        (NotFoundError(), 404, "NOT_FOUND"),
        (OnboardingConflict("REQUESTED_BY_ANOTHER", "m"), 409, "REQUESTED_BY_ANOTHER"),
        (mailivery.FeatureDisabled("x", request_id=RID), 503, "MS_GRAPH_FEATURE_DISABLED"),
        (
            mailivery.RateLimited("x", request_id=RID, retry_after=None),
            503,
            "MAILIVERY_RATE_LIMITED",
        ),
        (BudgetExhausted(0.4), 503, "MAILIVERY_RATE_LIMITED"),
        (mailivery.ValidationFailed("x", request_id=RID), 422, "MAILIVERY_VALIDATION_FAILED"),
        (mailivery.Conflict("x", request_id=RID), 409, "MAILIVERY_CONFLICT"),
        (mailivery.Timeout("x", request_id=RID), 502, "MAILIVERY_TIMEOUT"),
        (mailivery.Unauthorized("x", request_id=RID), 502, "MAILIVERY_AUTH_FAILED"),
        (mailivery.ServerError("x", request_id=RID), 502, "MAILIVERY_UNAVAILABLE"),
        (mailivery.Unreachable("x", request_id=RID), 502, "MAILIVERY_UNAVAILABLE"),
        (mailivery.UnexpectedResponse("x", request_id=RID), 502, "MAILIVERY_UNAVAILABLE"),
    ],
)
def test_api_error_for_known_error_maps_to_status_and_code(
    error: Exception, status: int, code: str
) -> None:
    answer = api_error_for(error)
    assert answer is not None
    assert (answer.status, answer.code) == (status, code)
    assert answer.message


@pytest.mark.parametrize(
    ("error", "retry_after"),
    [
        (mailivery.RateLimited("x", request_id=RID, retry_after=12.2), "13"),
        (mailivery.RateLimited("x", request_id=RID, retry_after=None), "60"),
        (BudgetExhausted(0.4), "1"),
        (OnboardingConflict("CONSENT_REQUEST_IN_PROGRESS", "m", retry_after=2), "2"),
    ],
)
def test_api_error_for_retryable_error_sets_retry_after(error: Exception, retry_after: str) -> None:
    answer = api_error_for(error)
    assert answer is not None
    assert answer.headers == {"Retry-After": retry_after}


def test_api_error_for_vendor_error_message_carries_request_id() -> None:
    answer = api_error_for(mailivery.ServerError("boom", request_id=RID))
    assert answer is not None
    assert RID in answer.message


def test_api_error_for_unknown_error_is_none() -> None:
    assert api_error_for(RuntimeError("bug")) is None
