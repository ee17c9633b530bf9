"""GET /mailboxes through the onboarding handler (moto, the table and its index from
template.yaml, the sandbox): whose mailboxes a caller sees, filters, pages and their cursor,
bad queries, and that the request path never scans the table."""

from __future__ import annotations

import json
from typing import Any

import pytest

from devstack.testkit import LambdaContext, load_function
from tests.integration.harness import Stack, read_event
from warmgate.adapters import dynamodb as repository

ALICE = "arn:aws:sts::123456789012:assumed-role/alice-backend"
BOB = "arn:aws:iam::123456789012:user/bob"
ADMIN = "arn:aws:sts::123456789012:assumed-role/warmgate-operators"


def as_caller(event: dict[str, Any], principal: str) -> dict[str, Any]:
    event["requestContext"]["authorizer"]["iam"]["userArn"] = principal
    return event


def request(stack: Stack, email: str, principal: str, requested_by: str = "user-42") -> None:
    event = as_caller(read_event("onboarding-request-consent.json"), principal)
    event["body"] = json.dumps(
        json.loads(event["body"]) | {"email": email, "requested_by": requested_by}
    )
    response = stack.onboarding.lambda_handler(event, LambdaContext())
    assert response["statusCode"] == 201, response["body"]


def listing(
    stack: Stack, principal: str, module: Any = None, **query: str
) -> tuple[int, dict[str, Any]]:
    event = as_caller(read_event("onboarding-list-mailboxes.json"), principal)
    event["queryStringParameters"] = query or None
    event["rawQueryString"] = "&".join(f"{k}={v}" for k, v in query.items())
    response = (module or stack.onboarding).lambda_handler(event, LambdaContext())
    return response["statusCode"], json.loads(response["body"])


def emails(body: dict[str, Any]) -> list[str]:
    return [mailbox["email"] for mailbox in body["mailboxes"]]


def every_page(stack: Stack, principal: str, **query: str) -> list[list[str]]:
    pages, cursor = [], None
    for _ in range(20):
        status, body = listing(stack, principal, **query, **({"cursor": cursor} if cursor else {}))
        assert status == 200, body
        pages.append(emails(body))
        cursor = body["next_cursor"]
        if cursor is None:
            return pages
    pytest.fail("more than 20 pages")


@pytest.fixture
def no_scans(stack: Stack) -> None:
    """The handler's DynamoDB client refuses Scan: the listing must come from the index."""

    def refuse(**_: Any) -> None:
        raise AssertionError("GET /mailboxes scanned the table")

    stack.onboarding.dynamodb.meta.events.register("before-call.dynamodb.Scan", refuse)


@pytest.fixture
def mailboxes(stack: Stack, no_scans: None) -> Stack:
    """alice requested three mailboxes (two as user-1), bob one."""
    for name, who in (("a1", "user-1"), ("a2", "user-1"), ("a3", "user-2")):
        request(stack, f"{name}@contoso.com", ALICE, requested_by=who)
    request(stack, "b1@contoso.com", BOB)
    return stack


def test_list_shows_a_principal_only_its_own_mailboxes_newest_change_first(
    mailboxes: Stack,
) -> None:
    status, body = listing(mailboxes, f"{ALICE}/session-7")  # any session of the role

    assert status == 200
    assert sorted(emails(body)) == ["a1@contoso.com", "a2@contoso.com", "a3@contoso.com"]
    changed = [mailbox["updated_at"] for mailbox in body["mailboxes"]]
    assert changed == sorted(changed, reverse=True)
    assert body["next_cursor"] is None
    assert set(body["mailboxes"][0]) == {
        "email",
        "state",
        "expired",
        "parked",
        "request_kind",
        "open_request",
        "campaign_id",
        "requested_by",
        "requested_by_principal",
        "requested_at",
        "expires_at",
        "updated_at",
    }
    assert emails(listing(mailboxes, BOB)[1]) == ["b1@contoso.com"]


def test_list_by_an_admin_principal_shows_every_mailbox(
    mailboxes: Stack, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("ADMIN_PRINCIPALS", ADMIN)
    as_admin = load_function("onboarding")

    status, body = listing(mailboxes, f"{ADMIN}/carol", module=as_admin)

    assert status == 200
    assert sorted(emails(body)) == [
        "a1@contoso.com",
        "a2@contoso.com",
        "a3@contoso.com",
        "b1@contoso.com",
    ]


def test_list_pages_with_the_cursor_cover_every_mailbox_once(mailboxes: Stack) -> None:
    pages = every_page(mailboxes, ALICE, limit="2")

    assert [len(page) for page in pages] == [2, 1]
    assert sorted(email for page in pages for email in page) == [
        "a1@contoso.com",
        "a2@contoso.com",
        "a3@contoso.com",
    ]


def test_list_filters_by_state_and_requested_by(mailboxes: Stack) -> None:
    withdraw = as_caller(read_event("onboarding-withdraw-mailbox.json"), ALICE)
    for holder, key in ((withdraw, "rawPath"), (withdraw["requestContext"]["http"], "path")):
        holder[key] = "/mailboxes/a2%40contoso.com"
    withdraw["pathParameters"] = {"email": "a2@contoso.com"}
    assert mailboxes.onboarding.lambda_handler(withdraw, LambdaContext())["statusCode"] == 200

    assert emails(listing(mailboxes, ALICE, state="withdrawn")[1]) == ["a2@contoso.com"]
    both = listing(mailboxes, ALICE, state="withdrawn,consent_requested")[1]
    assert len(emails(both)) == 3
    assert sorted(emails(listing(mailboxes, ALICE, requested_by="user-1")[1])) == [
        "a1@contoso.com",
        "a2@contoso.com",
    ]
    assert emails(listing(mailboxes, ALICE, requested_by="user-1", state="withdrawn")[1]) == [
        "a2@contoso.com"
    ]


def test_list_with_a_filter_reads_a_bounded_number_of_index_pages(
    stack: Stack, no_scans: None
) -> None:
    for n in range(12):
        request(stack, f"m{n:02}@contoso.com", ALICE)
    queries = []
    stack.onboarding.dynamodb.meta.events.register(
        "before-call.dynamodb.Query", lambda **kwargs: queries.append(kwargs)
    )

    status, body = listing(stack, ALICE, state="warming", limit="2")

    assert (status, body["mailboxes"]) == (200, [])
    assert len(queries) == repository.MAX_LIST_READS  # 5 reads of 2, then a cursor
    assert body["next_cursor"] is not None
    assert every_page(stack, ALICE, state="warming", limit="2")[-1] == []


@pytest.mark.parametrize(
    ("query", "named"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "101"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"state": "sleeping"}, "state"),
        ({"requested_by": "  "}, "requested_by"),
        ({"cursor": "%%%"}, "cursor"),
        ({"cursor": "eyJwayI6IDF9"}, "cursor"),  # {"pk": 1}
        ({"owner": ALICE}, "owner"),
    ],
)
def test_list_bad_query_is_422_naming_the_parameter(
    mailboxes: Stack, query: dict[str, str], named: str
) -> None:
    status, body = listing(mailboxes, ALICE, **query)

    assert (status, body["code"]) == (422, "VALIDATION_FAILED")
    assert body["message"].startswith(named)


def test_list_cursor_of_another_principal_is_422(mailboxes: Stack) -> None:
    _, first = listing(mailboxes, ALICE, limit="1")

    status, body = listing(mailboxes, BOB, cursor=first["next_cursor"])

    assert (status, body["code"]) == (422, "VALIDATION_FAILED")
    assert body["message"] == "cursor: issued for another listing"
