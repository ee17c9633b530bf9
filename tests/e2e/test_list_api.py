"""GET /mailboxes through the local stack over HTTP (every answer checked against openapi.yaml),
with the Python client and its `warmgate-client list`."""

from __future__ import annotations

import json
import uuid

import httpx
import pytest

from devstack.stack import LocalStack
from tests.e2e.conftest import unique_email
from tests.e2e.test_local_stack import request_consent
from tests.e2e.test_python_client import KEYS, cli
from warmgate_client import WarmgateClient

pytestmark = pytest.mark.slow


def requested(api: httpx.Client, count: int) -> tuple[str, list[str]]:
    """`count` mailboxes requested under one new `requested_by` label."""
    label = f"list-{uuid.uuid4().hex[:8]}"
    emails = [unique_email("listed") for _ in range(count)]
    for email in emails:
        request_consent(api, email, requested_by=label)
    return label, emails


def test_list_pages_through_the_callers_mailboxes(api: httpx.Client) -> None:
    label, emails = requested(api, 3)

    first = api.get("/mailboxes", params={"requested_by": label, "limit": 2})
    assert first.status_code == 200, first.text
    cursor = first.json()["next_cursor"]
    second = api.get("/mailboxes", params={"requested_by": label, "limit": 2, "cursor": cursor})

    listed = [m["email"] for page in (first, second) for m in page.json()["mailboxes"]]
    assert sorted(listed) == sorted(emails)
    assert second.json()["next_cursor"] is None


def test_list_filters_by_state(api: httpx.Client) -> None:
    label, (kept, withdrawn) = requested(api, 2)
    assert api.delete(f"/mailboxes/{withdrawn}").status_code == 200

    answer = api.get("/mailboxes", params={"requested_by": label, "state": "withdrawn"})

    assert [m["email"] for m in answer.json()["mailboxes"]] == [withdrawn]
    assert kept != withdrawn


@pytest.mark.parametrize(
    ("params", "named"),
    [({"cursor": "bm90LWEta2V5"}, "cursor"), ({"limit": "500"}, "limit")],
)
def test_list_bad_query_is_422_naming_it(
    api: httpx.Client, params: dict[str, str], named: str
) -> None:
    answer = api.get("/mailboxes", params=params)

    assert answer.status_code == 422
    assert answer.json()["message"].startswith(f"{named}: ")


def test_client_list_all_and_the_cli(local_stack: LocalStack, api: httpx.Client) -> None:
    label, emails = requested(api, 3)

    with WarmgateClient(local_stack.api_url, "eu-west-1", KEYS) as client:
        found = [m.email for m in client.list_all(requested_by=label, limit=2)]
    result = cli(local_stack, "list", "--requested-by", label, "--limit", "1", "--all")

    assert sorted(found) == sorted(emails)
    assert result.returncode == 0, result.stderr
    answer = json.loads(result.stdout)
    assert sorted(m["email"] for m in answer["mailboxes"]) == sorted(emails)
    assert answer["next_cursor"] is None
