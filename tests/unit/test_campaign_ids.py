"""The campaign id check (warmgate.domain.campaign_ids) and the Mailivery client's use of it
before a path segment is built. No I/O: the client runs on httpx.MockTransport."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx
import pytest
from hypothesis import given
from hypothesis import strategies as st

from warmgate.adapters.mailivery import MailiveryClient
from warmgate.domain.campaign_ids import (
    CAMPAIGN_ID_PATTERN,
    MAX_CAMPAIGN_ID_LENGTH,
    InvalidCampaignId,
    parse_campaign_id,
)

BASE_URL = "http://127.0.0.1:9/api/v1"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (4711, "4711"),
        (0, "0"),
        (-5, "-5"),
        ("4711", "4711"),
        ("04711", "04711"),
        ("c_1-X", "c_1-X"),
        ("9" * MAX_CAMPAIGN_ID_LENGTH, "9" * MAX_CAMPAIGN_ID_LENGTH),
        ("0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0", "0f1e2d3c-4b5a-6978-8796-a5b4c3d2e1f0"),
    ],
)
def test_parse_campaign_id_int_or_matching_string_is_its_text(value: Any, expected: str) -> None:
    assert parse_campaign_id(value) == expected


@pytest.mark.parametrize(
    ("value", "problem"),
    [
        ("", "is empty"),
        ("x" * (MAX_CAMPAIGN_ID_LENGTH + 1), "is longer than 64 characters"),
        (10**64, "is longer than 64 characters"),
        ("..", "may contain only"),
        (".", "may contain only"),
        ("4711/start-warmup", "may contain only"),
        ("%2e%2e", "may contain only"),
        ("4711\n", "may contain only"),  # `$` would let this through; fullmatch does not
        (" 4711", "may contain only"),  # the client never trims: the webhook does, explicitly
        ("\uff14\uff17", "may contain only"),  # FULLWIDTH DIGITS: not ASCII
        (True, "not a boolean"),
        (47.11, "not a decimal number"),
        (None, "must be an integer or a string"),
        ({"id": 4711}, "must be an integer or a string"),
    ],
)
def test_parse_campaign_id_unusable_value_raises_naming_problem(value: Any, problem: str) -> None:
    with pytest.raises(InvalidCampaignId, match=problem) as caught:
        parse_campaign_id(value)

    assert isinstance(caught.value, ValueError)
    assert str(caught.value) == f"campaign id {caught.value.problem}"


@given(st.text(max_size=80))
def test_parse_campaign_id_accepts_exactly_the_pattern(text: str) -> None:
    try:
        parsed: str | None = parse_campaign_id(text)
    except InvalidCampaignId:
        parsed = None

    allowed = set("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_-")
    matches = 1 <= len(text) <= MAX_CAMPAIGN_ID_LENGTH and set(text) <= allowed
    assert parsed == (text if matches else None)


@given(st.from_regex(CAMPAIGN_ID_PATTERN, fullmatch=True))
def test_parse_campaign_id_pattern_never_admits_a_path_changing_segment(text: str) -> None:
    assert parse_campaign_id(text) == text
    assert text not in (".", "..")
    assert not {"/", "%", "?", "#", "\\"} & set(text)


# --- the client checks the id before any request -------------------------------------------


class Recorder:
    """An httpx transport that records every request it is asked to send."""

    def __init__(self) -> None:
        self.paths: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.paths.append(f"{request.method} {request.url.path}")
        return httpx.Response(200, json={"data": {"id": 4711, "status": "pending"}})


def _client(recorder: Recorder, throttled: list[int]) -> MailiveryClient:
    return MailiveryClient(
        base_url=BASE_URL,
        api_key=lambda: "key",
        http=httpx.Client(transport=httpx.MockTransport(recorder)),
        throttle=lambda: throttled.append(1),
    )


_CAMPAIGN_CALLS: dict[str, Callable[[MailiveryClient, Any], Any]] = {
    "get": MailiveryClient.get_campaign,
    "start": MailiveryClient.start_warmup,
    "resume": MailiveryClient.resume_warmup,
    "delete": MailiveryClient.delete_campaign,
}


@pytest.mark.parametrize("call", _CAMPAIGN_CALLS.values(), ids=_CAMPAIGN_CALLS.keys())
@pytest.mark.parametrize("campaign_id", ["..", ".", "", "a/..", "4711/..", "%2e%2e", True])
def test_client_unusable_campaign_id_raises_before_any_request_or_budget_token(
    call: Callable[[MailiveryClient, Any], Any], campaign_id: Any
) -> None:
    recorder, throttled = Recorder(), []

    with pytest.raises(InvalidCampaignId):
        call(_client(recorder, throttled), campaign_id)

    assert recorder.paths == []
    assert throttled == []


@pytest.mark.parametrize(
    ("call", "path"),
    [
        (MailiveryClient.get_campaign, "GET /api/v1/campaigns/{}"),
        (MailiveryClient.start_warmup, "PATCH /api/v1/campaigns/{}/start-warmup"),
        (MailiveryClient.resume_warmup, "PATCH /api/v1/campaigns/{}/resume-warmup"),
        (MailiveryClient.delete_campaign, "DELETE /api/v1/campaigns/{}"),
    ],
    ids=["get", "start", "resume", "delete"],
)
@pytest.mark.parametrize("campaign_id", [4711, "04711", "c_1-X"])
def test_client_usable_campaign_id_is_the_path_segment_as_is(
    call: Callable[[MailiveryClient, Any], Any], path: str, campaign_id: int | str
) -> None:
    recorder, throttled = Recorder(), []

    call(_client(recorder, throttled), campaign_id)

    assert recorder.paths == [path.format(campaign_id)]
    assert throttled == [1]
