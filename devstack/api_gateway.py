"""API Gateway HTTP API (payload format 2.0) in front of local handlers, on 127.0.0.1.

Routes come from the template's own `HttpApi` events (`devstack.http_routes`). A request becomes
the v2 event API Gateway would send, and the handler's answer goes back the way API Gateway maps
it. What is deliberately not emulated: SigV4 verification (an AWS_IAM route sees a fixed local
IAM identity instead), throttling settings, and the access log. Errors API Gateway itself
answers are reproduced: an unknown route is `404 {"message":"Not Found"}`, a handler crash or a
malformed answer is `500 {"message":"Internal Server Error"}`.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import re
import secrets
import socket
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, Final

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from devstack.http_routes import HttpRoute, RouteError, match_route, routes_from_template

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = [
    "HttpRequest",
    "HttpResponse",
    "HttpRoute",
    "LocalHttpApi",
    "RouteError",
    "http_api_event",
    "http_api_response",
    "local_iam_identity",
    "match_route",
    "routes_from_template",
]

log = logging.getLogger("devstack")

MAX_PAYLOAD_BYTES: Final = 10 * 1024 * 1024  # HTTP API's request payload quota
NOT_FOUND: Final = b'{"message":"Not Found"}'
INTERNAL_ERROR: Final = b'{"message":"Internal Server Error"}'
TOO_LARGE: Final = b'{"message":"Request Entity Too Large"}'
LOCAL_USER: Final = "local-developer"
# Content types API Gateway passes as text; anything else reaches the handler base64-encoded.
_TEXT_TYPES: Final = re.compile(
    r"^(text/.*|application/(json|.*\+json|xml|.*\+xml|javascript|x-www-form-urlencoded))$"
)


# --------------------------------------------------------------------------- events


@dataclass(frozen=True)
class HttpRequest:
    """What the local server received, independent of the web framework."""

    method: str
    path: str  # percent-decoded
    query_string: str  # raw, still percent-encoded
    headers: list[tuple[str, str]]
    body: bytes
    source_ip: str
    protocol: str = "HTTP/1.1"


@dataclass(frozen=True)
class HttpResponse:
    status: int
    headers: list[tuple[str, str]]
    body: bytes


def local_iam_identity(account_id: str) -> dict[str, Any]:
    """What API Gateway puts in requestContext.authorizer.iam for a SigV4-signed request; locally
    every request on an AWS_IAM route is taken as signed by this IAM user."""
    return {
        "accessKey": "AKIALOCALDEVELOPER00",
        "accountId": account_id,
        "callerId": "AIDALOCALDEVELOPER00",
        "cognitoIdentity": None,
        "principalOrgId": None,
        "userArn": f"arn:aws:iam::{account_id}:user/{LOCAL_USER}",
        "userId": "AIDALOCALDEVELOPER00",
    }


def _request_id() -> str:
    # API Gateway's request ids look like "Jf3kHgqYIAMEbXw=": 10 random bytes, base64.
    return base64.b64encode(secrets.token_bytes(10)).decode()


def http_api_event(
    request: HttpRequest,
    route: HttpRoute,
    path_parameters: Mapping[str, str],
    *,
    account_id: str,
    api_id: str = "local",
    request_id: str | None = None,
    now: datetime | None = None,
) -> dict[str, Any]:
    """The payload-2.0 event API Gateway sends to the route's function."""
    headers, cookies = _joined_headers(request.headers)
    event: dict[str, Any] = {
        "version": "2.0",
        "routeKey": route.route_key,
        "rawPath": request.path,
        "rawQueryString": request.query_string,
    }
    if cookies:
        event["cookies"] = cookies
    event["headers"] = headers
    query = _query_parameters(request.query_string)
    if query:
        event["queryStringParameters"] = query
    event["requestContext"] = _request_context(
        request,
        route,
        headers,
        account_id=account_id,
        api_id=api_id,
        request_id=request_id or _request_id(),
        now=now or datetime.now(UTC),
    )
    if path_parameters:
        event["pathParameters"] = dict(path_parameters)
    if request.body:
        text = _as_text(request.body, headers.get("content-type", ""))
        event["body"] = text if text is not None else base64.b64encode(request.body).decode()
        event["isBase64Encoded"] = text is None
    else:
        event["isBase64Encoded"] = False
    return event


def _joined_headers(raw: Iterable[tuple[str, str]]) -> tuple[dict[str, str], list[str]]:
    """Lower-case headers, repeats joined with commas as v2 does, and the cookies apart."""
    headers: dict[str, str] = {}
    cookies: list[str] = []
    for name, value in raw:
        name = name.lower()
        if name == "cookie":
            cookies.extend(c.strip() for c in value.split(";") if c.strip())
        elif name in headers:
            headers[name] += "," + value
        else:
            headers[name] = value
    return headers, cookies


def _request_context(
    request: HttpRequest,
    route: HttpRoute,
    headers: Mapping[str, str],
    *,
    account_id: str,
    api_id: str,
    request_id: str,
    now: datetime,
) -> dict[str, Any]:
    host = headers.get("host", "127.0.0.1")
    context: dict[str, Any] = {
        "accountId": account_id,
        "apiId": api_id,
        "domainName": host,
        "domainPrefix": host.split(".", 1)[0],
        "http": {
            "method": request.method,
            "path": request.path,
            "protocol": request.protocol,
            "sourceIp": request.source_ip,
            "userAgent": headers.get("user-agent", ""),
        },
        "requestId": request_id,
        "routeKey": route.route_key,
        "stage": "$default",
        "time": now.strftime("%d/%b/%Y:%H:%M:%S +0000"),
        "timeEpoch": int(now.timestamp() * 1000),
    }
    if route.authorization == "AWS_IAM":
        context["authorizer"] = {"iam": local_iam_identity(account_id)}
    return context


def _query_parameters(raw: str) -> dict[str, str]:
    from urllib.parse import parse_qsl

    joined: dict[str, str] = {}
    for name, value in parse_qsl(raw, keep_blank_values=True):
        joined[name] = f"{joined[name]},{value}" if name in joined else value
    return joined


def _as_text(body: bytes, content_type: str) -> str | None:
    mime = content_type.split(";", 1)[0].strip().lower()
    if not _TEXT_TYPES.match(mime):
        return None
    try:
        return body.decode("utf-8")
    except UnicodeDecodeError:
        return None


def http_api_response(result: Any) -> HttpResponse:
    """How API Gateway (payload 2.0) turns the function's return value into the HTTP answer.

    A dict with `statusCode` is taken as is; any other JSON value is a 200 whose body is that
    value (a string verbatim, anything else as JSON). A malformed answer is API Gateway's 500.
    """
    if isinstance(result, dict) and "statusCode" in result:
        return _proxy_response(result)
    body = result if isinstance(result, str) else json.dumps(result)
    return HttpResponse(200, [("content-type", "application/json")], body.encode())


def _proxy_response(result: Mapping[str, Any]) -> HttpResponse:
    status = result["statusCode"]
    raw_headers = result.get("headers") or {}
    body = result.get("body")
    if (
        not isinstance(status, int)
        or isinstance(status, bool)
        or not 100 <= status <= 599
        or not isinstance(raw_headers, dict)
        or not (body is None or isinstance(body, str))
    ):
        log.error("malformed Lambda proxy response: %r", result)
        return _internal_error()
    headers = [(str(name).lower(), str(value)) for name, value in raw_headers.items()]
    headers += [("set-cookie", str(cookie)) for cookie in result.get("cookies") or []]
    if result.get("isBase64Encoded"):
        try:
            payload = base64.b64decode(body or "", validate=True)
        except (binascii.Error, ValueError):
            log.error("isBase64Encoded response whose body is not base64")
            return _internal_error()
    else:
        payload = (body or "").encode()
    return HttpResponse(status, headers, payload)


def _internal_error() -> HttpResponse:
    return HttpResponse(500, [("content-type", "application/json")], INTERNAL_ERROR)


# --------------------------------------------------------------------------- the server


class _QuietRequestHandler(WSGIRequestHandler):
    """The API logs one line per request itself, naming the function that answered."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


Invoke = Callable[[str, dict[str, Any]], Any]


class LocalHttpApi:
    """A threaded HTTP server on 127.0.0.1 that serves `routes` by calling `invoke(function id,
    event)`. The port is bound in the constructor (OSError if taken), requests are served from
    start() until stop()."""

    def __init__(
        self,
        routes: Iterable[HttpRoute],
        invoke: Invoke,
        *,
        port: int = 0,
        account_id: str,
        api_id: str = "local",
    ) -> None:
        self.routes = sorted(routes, key=HttpRoute.priority)
        self._invoke = invoke
        self._account_id = account_id
        self._api_id = api_id
        # Bound here rather than by werkzeug: werkzeug answers a taken port with sys.exit(1).
        listener = socket.create_server(("127.0.0.1", port))
        try:
            self._server: BaseWSGIServer = make_server(
                "127.0.0.1",
                0,
                self._wsgi,
                threaded=True,
                request_handler=_QuietRequestHandler,
                fd=listener.fileno(),
            )
        finally:
            listener.close()  # werkzeug listens on its own duplicate of the socket
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> LocalHttpApi:
        self._thread = threading.Thread(
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.1},
            name="devstack-http-api",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self, timeout: float = 5.0) -> None:
        if self._thread is not None and self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(timeout)
        self._server.server_close()

    def _wsgi(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        started = time.monotonic()
        request = Request(environ)
        answer, function_id = self._answer(request)
        elapsed_ms = (time.monotonic() - started) * 1000
        log.info(
            "%s %s → %s %d (%.0f ms)",
            request.method,
            request.path,
            function_id or "no route",
            answer.status,
            elapsed_ms,
        )
        response = Response(answer.body, status=answer.status)
        response.headers.clear()
        for name, value in answer.headers:
            response.headers.add(name, value)
        return response(environ, start_response)

    def _answer(self, request: Request) -> tuple[HttpResponse, str | None]:
        json_headers = [("content-type", "application/json")]
        request_id = _request_id()
        if (request.content_length or 0) > MAX_PAYLOAD_BYTES:
            return HttpResponse(413, json_headers, TOO_LARGE), None
        # HTTP APIs hand Lambda the percent-decoded path (rawPath included, unlike REST APIs),
        # and route on it; werkzeug's `path` is that decoded path.
        found = match_route(self.routes, request.method, request.path)
        if found is None:
            return HttpResponse(404, json_headers, NOT_FOUND), None
        route, parameters = found
        http_request = HttpRequest(
            method=request.method,
            path=request.path,
            query_string=request.query_string.decode("latin-1"),
            headers=list(request.headers.items()),
            body=request.get_data(cache=False),
            source_ip=request.remote_addr or "127.0.0.1",
            protocol=str(request.environ.get("SERVER_PROTOCOL", "HTTP/1.1")),
        )
        event = http_api_event(
            http_request,
            route,
            parameters,
            account_id=self._account_id,
            api_id=self._api_id,
            request_id=request_id,
        )
        try:
            result = self._invoke(route.function_id, event)
        except Exception:
            log.error("%s raised:\n%s", route.function_id, traceback.format_exc().rstrip())
            answer = _internal_error()
        else:
            answer = http_api_response(result)
        return (
            HttpResponse(
                answer.status, [*answer.headers, ("apigw-requestid", request_id)], answer.body
            ),
            route.function_id,
        )
