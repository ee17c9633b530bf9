"""devstack.api_gateway: routes read from template.yaml, HTTP → payload-2.0 events → HTTP."""

from __future__ import annotations

import base64
import json
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.utilities.data_classes import APIGatewayProxyEventV2

from devstack.api_gateway import (
    HttpRequest,
    HttpRoute,
    RouteError,
    http_api_event,
    http_api_response,
    match_route,
    routes_from_template,
)
from devstack.template import load_template

ROOT = Path(__file__).resolve().parents[2]
ACCOUNT = "123456789012"


def function(*events: tuple[str, dict[str, Any]]) -> dict[str, Any]:
    return {
        "Type": "AWS::Serverless::Function",
        "Properties": {
            "Events": {name: {"Type": "HttpApi", "Properties": p} for name, p in events}
        },
    }


def template_with(**resources: dict[str, Any]) -> dict[str, Any]:
    api = {
        "Type": "AWS::Serverless::HttpApi",
        "Properties": {"Auth": {"DefaultAuthorizer": "AWS_IAM"}},
    }
    return {"Resources": {"Api": api, **resources}}


def on_api(path: str, method: str = "GET", **extra: Any) -> dict[str, Any]:
    return {"ApiId": {"Ref": "Api"}, "Path": path, "Method": method, **extra}


def request(method: str = "POST", path: str = "/mailboxes", **changes: Any) -> HttpRequest:
    fields: dict[str, Any] = {
        "method": method,
        "path": path,
        "query_string": "",
        "headers": [("Host", "127.0.0.1:3000"), ("Content-Type", "application/json")],
        "body": b'{"email": "ada@contoso.com"}',
        "source_ip": "127.0.0.1",
    }
    return HttpRequest(**(fields | changes))


def route(path: str = "/mailboxes", method: str = "POST", auth: str = "AWS_IAM") -> HttpRoute:
    return HttpRoute("OnboardingFunction", "Event", method, path, auth)


# --- routes -------------------------------------------------------------------------------------


def test_routes_from_template_mailboxes_iam_and_webhook_open() -> None:
    routes = {
        r.route_key: (r.function_id, r.authorization) for r in routes_from_template(load_template())
    }

    assert routes["POST /mailboxes"] == ("OnboardingFunction", "AWS_IAM")
    assert routes["GET /mailboxes/{email}"] == ("OnboardingFunction", "AWS_IAM")
    assert routes["DELETE /mailboxes/{email}"] == ("OnboardingFunction", "AWS_IAM")
    assert routes["POST /webhooks/mailivery/{token}"] == ("WebhookFunction", "NONE")


def test_match_route_literal_segment_beats_parameter() -> None:
    routes = routes_from_template(
        template_with(
            ByEmail=function(("One", on_api("/mailboxes/{email}"))),
            Export=function(("All", on_api("/mailboxes/export"))),
        )
    )

    found = match_route(routes, "GET", "/mailboxes/export")
    by_email = match_route(routes, "GET", "/mailboxes/ada@contoso.com")

    assert found is not None
    assert found[0].function_id == "Export"
    assert by_email is not None
    assert by_email == (routes[1], {"email": "ada@contoso.com"})


def test_match_route_explicit_method_beats_any_and_greedy_comes_last() -> None:
    routes = routes_from_template(
        template_with(
            Anything=function(("Any", on_api("/files/{key}", "ANY"))),
            Getter=function(("Get", on_api("/files/{key}", "get"))),
            Proxy=function(("Proxy", on_api("/{proxy+}", "ANY"))),
        )
    )

    def target(method: str, path: str) -> str | None:
        found = match_route(routes, method, path)
        return None if found is None else found[0].function_id

    assert target("GET", "/files/a.txt") == "Getter"
    assert target("PUT", "/files/a.txt") == "Anything"
    assert target("PUT", "/files/a/b.txt") == "Proxy"


def test_match_route_wrong_method_is_no_route() -> None:
    routes = routes_from_template(load_template())

    assert match_route(routes, "PUT", "/mailboxes") is None
    assert match_route(routes, "GET", "/mailboxes/a/b") is None


def test_routes_from_template_unsupported_authorizer_names_the_event() -> None:
    template = template_with(
        Fn=function(("Jwt", on_api("/x", Auth={"Authorizer": "MyJwt"}))),
    )

    with pytest.raises(RouteError, match=r"Fn\.Events\.Jwt: authorizer 'MyJwt'"):
        routes_from_template(template)


# --- events ---------------------------------------------------------------------------------------


def test_http_api_event_has_the_shape_of_the_sample_event() -> None:
    sample = json.loads((ROOT / "events" / "onboarding-request-consent.json").read_text())

    event = http_api_event(request(), route(), {}, account_id=ACCOUNT)

    assert set(event) == set(sample)
    assert set(event["requestContext"]) == set(sample["requestContext"])
    assert set(event["requestContext"]["http"]) == set(sample["requestContext"]["http"])
    assert set(event["requestContext"]["authorizer"]["iam"]) == set(
        sample["requestContext"]["authorizer"]["iam"]
    )


def test_http_api_event_iam_route_carries_local_identity_and_open_route_none() -> None:
    protected = http_api_event(request(), route(auth="AWS_IAM"), {}, account_id=ACCOUNT)
    open_ = http_api_event(request(), route(auth="NONE"), {}, account_id=ACCOUNT)

    parsed = APIGatewayProxyEventV2(protected)
    assert parsed.request_context.authorizer.iam.user_arn == (
        f"arn:aws:iam::{ACCOUNT}:user/local-developer"
    )
    assert "authorizer" not in open_["requestContext"]


def test_http_api_event_headers_query_cookies_and_path_parameters() -> None:
    http = request(
        method="GET",
        path="/mailboxes/ada@contoso.com",
        query_string="a=1&a=2&b=x%20y",
        headers=[
            ("Host", "127.0.0.1:3000"),
            ("X-Trace", "one"),
            ("x-trace", "two"),
            ("Cookie", "s=1; t=2"),
            ("User-Agent", "curl/8"),
        ],
        body=b"",
    )
    now = datetime(2026, 11, 25, 23, 15, tzinfo=UTC)

    event = http_api_event(
        http,
        route("/mailboxes/{email}", "GET"),
        {"email": "ada@contoso.com"},
        account_id=ACCOUNT,
        request_id="rid",
        now=now,
    )

    assert event["routeKey"] == "GET /mailboxes/{email}"
    assert event["rawPath"] == "/mailboxes/ada@contoso.com"
    assert event["rawQueryString"] == "a=1&a=2&b=x%20y"
    assert event["queryStringParameters"] == {"a": "1,2", "b": "x y"}
    assert event["headers"]["x-trace"] == "one,two"
    assert "cookie" not in event["headers"]
    assert event["cookies"] == ["s=1", "t=2"]
    assert event["pathParameters"] == {"email": "ada@contoso.com"}
    assert "body" not in event
    assert event["isBase64Encoded"] is False
    context = event["requestContext"]
    assert context["http"] == {
        "method": "GET",
        "path": "/mailboxes/ada@contoso.com",
        "protocol": "HTTP/1.1",
        "sourceIp": "127.0.0.1",
        "userAgent": "curl/8",
    }
    assert context["requestId"] == "rid"
    assert context["time"] == "25/Nov/2026:23:15:00 +0000"
    assert context["timeEpoch"] == int(now.timestamp() * 1000)


def test_http_api_event_text_body_plain_binary_body_base64() -> None:
    text = http_api_event(request(), route(), {}, account_id=ACCOUNT)
    binary = http_api_event(
        request(headers=[("Content-Type", "application/octet-stream")], body=b"\x00\xff"),
        route(),
        {},
        account_id=ACCOUNT,
    )

    assert text["body"] == '{"email": "ada@contoso.com"}'
    assert text["isBase64Encoded"] is False
    assert binary["isBase64Encoded"] is True
    assert base64.b64decode(binary["body"]) == b"\x00\xff"


# --- responses ------------------------------------------------------------------------------------


def test_http_api_response_proxy_answer_taken_as_is_with_cookies() -> None:
    answer = http_api_response(
        {
            "statusCode": 201,
            "headers": {"Content-Type": "application/json", "Retry-After": 3},
            "cookies": ["a=1"],
            "body": '{"ok": true}',
        }
    )

    assert answer.status == 201
    assert ("content-type", "application/json") in answer.headers
    assert ("retry-after", "3") in answer.headers
    assert ("set-cookie", "a=1") in answer.headers
    assert answer.body == b'{"ok": true}'


def test_http_api_response_base64_body_is_decoded() -> None:
    answer = http_api_response(
        {"statusCode": 200, "body": base64.b64encode(b"\x01\x02").decode(), "isBase64Encoded": True}
    )

    assert answer.body == b"\x01\x02"


@pytest.mark.parametrize(
    ("result", "body"),
    [({"message": "hi"}, b'{"message": "hi"}'), ("plain", b"plain"), ([1, 2], b"[1, 2]")],
)
def test_http_api_response_without_status_code_is_200_json(result: Any, body: bytes) -> None:
    answer = http_api_response(result)

    assert answer.status == 200
    assert answer.headers == [("content-type", "application/json")]
    assert answer.body == body


@pytest.mark.parametrize(
    "result",
    [
        {"statusCode": "200", "body": ""},
        {"statusCode": 200, "body": {"not": "a string"}},
        {"statusCode": 200, "body": "%%%", "isBase64Encoded": True},
    ],
)
def test_http_api_response_malformed_answer_is_internal_server_error(result: Any) -> None:
    answer = http_api_response(result)

    assert answer.status == 500
    assert json.loads(answer.body) == {"message": "Internal Server Error"}
