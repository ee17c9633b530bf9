"""A local stand-in for the Mailivery API: a test and dev tool, never deployed.

It speaks the vendor contract (`mailivery-contract.md`, §1-§4) over real HTTP so the client,
the webhook handler and the worker can be exercised end to end without the vendor, and
it adds a control surface under `/_sandbox` that plays the parts nobody can script against the
real service: the mailbox owner consenting at Microsoft, vendor-side events (pauses, connection
problems) and misbehaviour (faults, lost / duplicated / reordered webhooks, rate limiting).

It deliberately does not import `warmgate`: it stands in for the vendor, so sharing code with the
integration under test would let one bug hide another.

Where the contract says [guess] or [unknown], the sandbox picks one answer and, where the answer
matters to the integration, makes it switchable (`POST /_sandbox/options`) so tests can cover
both. Choices that are the sandbox's own and not the vendor's are marked "Sandbox choice".

Fault semantics (`POST /_sandbox/faults`), chosen to model what a client cannot tell apart:
- ``error``/``html``: the vendor never saw the call; nothing changes.
- ``timeout``: the vendor *did* process the call, only the answer is late (`hang_ms`). This is
  the dangerous case for a non-idempotent create, which is why it is modelled this way.
- ``empty``/``garbage``: the call was processed; only the 200 body is lost or unrecognisable.
- ``lost``: the call was processed at once, then its answer never comes (`hang_ms`, then 504):
  the client's read times out while the effect is already visible to a re-read.
- ``reset``: the connection is reset at once, without an answer, and the call is processed
  `hang_ms` later (a proxy dropped the client while the vendor went on): the client sees a
  broken connection, not a timeout, and the effect shows to a re-read only after a while.

Several rules may be in force at once (`{"rules": [...]}`), each with its own seed and count.
A storm (`POST /_sandbox/storm`) answers every call with 429 and Retry-After for a while, as
the vendor's rate limiter has been seen to: logged with `fault: "storm"`.

This module is the HTTP surface (routing, auth, rate limit and fault application, the control
endpoints, lifecycle, command line); the vendor's state and rules live in `sandbox_model`.

Run on its own: ``python -m devstack.sandbox --port 8700 --webhook-url http://.../TOKEN``.
"""

from __future__ import annotations

import argparse
import hashlib
import html
import json
import math
import re
import signal
import socket
import struct
import sys
import threading
import time
import traceback
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, replace
from types import FrameType, TracebackType
from typing import TYPE_CHECKING, Any, Final, cast, get_args
from urllib.parse import parse_qs, quote, urlencode, urlsplit

from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.routing import Map, Rule
from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request, Response

from devstack.sandbox_control import SandboxControl
from devstack.sandbox_model import (
    DEFAULT_EMAIL_PER_DAY,
    DEFAULT_RESPONSE_RATE,
    EMAIL_PER_DAY_RANGE,
    EMAIL_RE,
    ERROR_BODIES,
    ApiError,
    CallFault,
    Campaign,
    CampaignStatus,
    CampaignStore,
    ConsentRequest,
    ExistingMailbox,
    FaultConfig,
    FaultInjector,
    FieldValidator,
    RateLimiter,
    ReconnectEvent,
    SandboxOptions,
    StatusField,
    ValidationFailed,
    ValidationShape,
    WebhookDispatcher,
    WebhookEvent,
    WebhookSettings,
    bad_request,
    connection_problem_event,
    deleted_event,
    fault_configs_from_json,
    non_negative_int,
    pending_event,
    reconnect_event,
    utc_now_iso,
)

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment

__all__ = ["CONSENT_CLIENT_ID", "MailiverySandbox", "main"]

API_PREFIX: Final = "/api/v1"
CONTROL_PREFIX: Final = "/_sandbox"
# Invented: Mailivery's Azure application id is not public. Fixed so tests can assert on it.
CONSENT_CLIENT_ID: Final = "7d1c3f52-9b4e-4a8d-b6f0-2e5a9c8d1f34"
CONSENT_SCOPES: Final = (
    "offline_access",
    "https://graph.microsoft.com/Mail.ReadWrite",
    "https://graph.microsoft.com/Mail.Send",
    "https://graph.microsoft.com/User.Read",
)
MAX_BODY_BYTES: Final = 1024 * 1024
LOGGED_BODY_CHARS: Final = 2000
PROXY_HTML: Final = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)


# --------------------------------------------------------------------------- HTTP helpers


def key_fingerprint(key: str | None) -> str | None:
    """What the call log keeps instead of the key: enough to tell keys apart, useless to reuse."""
    if key is None:
        return None
    return "sha256:" + hashlib.sha256(key.encode()).hexdigest()[:12]


def json_response(
    body: Any, status: int = 200, headers: Mapping[str, str] | None = None
) -> Response:
    return Response(
        json.dumps(body), status=status, headers=dict(headers or {}), mimetype="application/json"
    )


def error_response(
    status: int, code: str, message: str, headers: Mapping[str, str] | None = None
) -> Response:
    return json_response({"code": code, "message": message}, status, headers)


def _bearer_token(request: Request) -> str | None:
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    token = token.strip()
    return token if scheme.lower() == "bearer" and token else None


def _form_to_nested(form: MultiDict[str, str]) -> dict[str, Any]:
    """Form fields the way PHP reads them: `tags[]=a&tags[]=b`, `meta[tags]=a,b`, `tags[0]=a`."""
    nested: dict[str, Any] = {}
    for key in form:
        values = form.getlist(key)
        if key.endswith("[]"):
            nested[key[:-2]] = values
        elif match := re.fullmatch(r"([^\[\]]+)\[([^\[\]]+)\]", key):
            group = nested.setdefault(match[1], {})
            if isinstance(group, dict):
                group[match[2]] = values[-1]
        else:
            nested[key] = values[-1]
    for name, value in nested.items():
        if isinstance(value, dict) and value and all(k.isdigit() for k in value):
            nested[name] = [value[k] for k in sorted(value, key=int)]
    return nested


def _parse_vendor_body(request: Request) -> tuple[dict[str, Any], Any]:
    """Returns (fields, what the call log keeps). Malformed JSON reads as no input, like Laravel."""
    if request.mimetype in ("application/x-www-form-urlencoded", "multipart/form-data"):
        fields = _form_to_nested(request.form)
        return fields, fields
    raw = request.get_data(as_text=True)
    if not raw.strip():
        return {}, None
    try:
        parsed = json.loads(raw)
    except ValueError:
        return {}, raw[:LOGGED_BODY_CHARS]
    return (parsed if isinstance(parsed, dict) else {}), parsed


def _http_error(exc: HTTPException) -> Response:
    """Routing and body-size errors, in the vendor's error envelope."""
    if isinstance(exc, NotFound):
        return error_response(404, "NOT_FOUND", "Not found.")
    if isinstance(exc, MethodNotAllowed):
        return error_response(405, "METHOD_NOT_ALLOWED", "Method not allowed.")
    status = exc.code or 400
    return error_response(status, exc.name.upper().replace(" ", "_"), exc.description or exc.name)


class _ConnectionReset(Response):
    """The answer of a `reset` fault, written to a connection already reset: the client never
    sees it, the call log shows its status."""

    def __init__(self) -> None:
        super().__init__(b"", status=502)


def _close_connection(environ: WSGIEnvironment) -> None:
    """Reset the client's connection now, without an answer (SO_LINGER 0). werkzeug's later
    write of the response finds the socket shut and drops it quietly."""
    connection = environ.get("werkzeug.socket")
    if isinstance(connection, socket.socket):
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.shutdown(socket.SHUT_RDWR)


def _sandbox_bug() -> Response:
    # A bug in the sandbox must not pass for vendor behaviour: loud on stderr, distinct code.
    traceback.print_exc()
    return error_response(500, "SANDBOX_BUG", "Unexpected sandbox error; see its stderr.")


def _key_set(keys: Iterable[str]) -> frozenset[str]:
    # A lone string is one key, not a set of one-character keys.
    return frozenset([keys] if isinstance(keys, str) else keys)


def _choice(body: Mapping[str, Any], name: str, literal: Any) -> Any:
    allowed = get_args(literal)
    if body[name] not in allowed:
        raise bad_request(f"{name} must be one of {list(allowed)}.")
    return body[name]


# --------------------------------------------------------------------------- the server


class _QuietRequestHandler(WSGIRequestHandler):
    """Keeps test output readable; the call log is the record of what happened."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass


_API_ROUTES: Final = Map(
    [
        Rule("/api/v1/campaigns/ms-graph", methods=["POST"], endpoint="create_ms_graph"),
        Rule("/api/v1/campaigns", methods=["GET"], endpoint="list_campaigns"),
        Rule("/api/v1/campaigns/email/<email>", methods=["GET"], endpoint="get_by_email"),
        Rule("/api/v1/campaigns/<int:campaign_id>", methods=["GET"], endpoint="get_campaign"),
        Rule("/api/v1/campaigns/<int:campaign_id>", methods=["DELETE"], endpoint="delete"),
        Rule(
            "/api/v1/campaigns/<int:campaign_id>/start-warmup", methods=["PATCH"], endpoint="start"
        ),
        Rule(
            "/api/v1/campaigns/<int:campaign_id>/resume-warmup",
            methods=["PATCH"],
            endpoint="resume",
        ),
        Rule(
            "/api/v1/campaigns/<int:campaign_id>/pause-warmup", methods=["PATCH"], endpoint="pause"
        ),
        Rule("/api/v1/account/limits", methods=["GET"], endpoint="limits"),
    ],
    strict_slashes=False,
)

_CONTROL_ROUTES: Final = Map(
    [
        Rule("/_sandbox", methods=["GET"], endpoint="index"),
        Rule("/_sandbox/health", methods=["GET"], endpoint="health"),
        Rule("/_sandbox/consent", methods=["GET", "POST"], endpoint="consent"),
        # The redirect_uri in consent URLs: Microsoft would send the browser here.
        Rule("/_sandbox/oauth/callback", methods=["GET"], endpoint="consent"),
        Rule("/_sandbox/consents", methods=["GET"], endpoint="consents"),
        Rule("/_sandbox/campaigns", methods=["GET", "POST"], endpoint="campaigns"),
        Rule("/_sandbox/campaigns/<int:campaign_id>/pause", methods=["POST"], endpoint="pause"),
        Rule(
            "/_sandbox/campaigns/<int:campaign_id>/connection-problem",
            methods=["POST"],
            endpoint="connection_problem",
        ),
        Rule(
            "/_sandbox/campaigns/<int:campaign_id>/webhook",
            methods=["POST"],
            endpoint="send_webhook",
        ),
        Rule("/_sandbox/mailboxes/connection", methods=["POST"], endpoint="connection"),
        Rule("/_sandbox/faults", methods=["GET", "POST"], endpoint="faults"),
        Rule("/_sandbox/storm", methods=["POST"], endpoint="storm"),
        Rule("/_sandbox/webhooks", methods=["GET", "POST"], endpoint="webhooks"),
        Rule("/_sandbox/webhooks/flush", methods=["POST"], endpoint="flush"),
        Rule("/_sandbox/calls", methods=["GET"], endpoint="calls"),
        Rule("/_sandbox/options", methods=["GET", "POST"], endpoint="options"),
        Rule("/_sandbox/reset", methods=["POST"], endpoint="reset"),
    ],
    strict_slashes=False,
)


class MailiverySandbox:
    """The vendor API under /api/v1 plus the /_sandbox control surface, on 127.0.0.1.

    Usable as a context manager. One instance serves once: start(), then stop().
    """

    def __init__(
        self,
        *,
        port: int = 0,
        webhook_url: str | None = None,
        api_keys: Iterable[str] = ("sandbox-key",),
        allowlisted_keys: Iterable[str] | None = None,
        rate_limit_per_minute: int = 240,
        consent_host: str = "login.microsoftonline.com",
        log_requests: bool = False,
        time_scale: float = 1.0,
    ) -> None:
        """`time_scale` > 1 runs the rate-limit clock faster (10 → a 6 s "minute"), so a load
        test can cross several windows quickly; storms last scaled seconds too. Retry-After
        stays in real seconds (what a client must actually wait)."""
        self._port = port
        self._log_requests = log_requests
        self._api_keys = _key_set(api_keys)
        if not self._api_keys:
            raise ValueError("at least one API key is needed")
        self._allowlisted = (
            self._api_keys if allowlisted_keys is None else _key_set(allowlisted_keys)
        )
        if rate_limit_per_minute < 1:
            raise ValueError("rate_limit_per_minute must be at least 1")
        self._initial_rate_limit = rate_limit_per_minute
        self._consent_host = consent_host
        self._stopping = threading.Event()
        self._lock = threading.Lock()  # guards options and the call log
        self._options = SandboxOptions()
        self._calls: list[dict[str, Any]] = []
        self._store = CampaignStore()
        if time_scale <= 0:
            raise ValueError("time_scale must be positive")
        self._rate_limiter = RateLimiter(
            rate_limit_per_minute,
            clock=lambda: time.monotonic() * time_scale,
            time_scale=time_scale,
        )
        self._faults = FaultInjector()
        self._webhooks = WebhookDispatcher(webhook_url, self._stopping)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle

    def start(self) -> MailiverySandbox:
        if self._server is not None:
            raise RuntimeError("sandbox already started")
        handler = WSGIRequestHandler if self._log_requests else _QuietRequestHandler
        self._server = make_server(
            "127.0.0.1", self._port, self._wsgi, threaded=True, request_handler=handler
        )
        self._webhooks.start()
        self._thread = threading.Thread(
            # A short poll interval keeps stop() fast; the loop idles in select(), not a spin.
            target=self._server.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="mailivery-sandbox-http",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Returns within about a second, even with hang faults or delayed webhooks in flight."""
        self._stopping.set()  # wakes every latency/hang/delay wait at once
        if self._server is not None and self._thread is not None and self._thread.is_alive():
            self._server.shutdown()
            self._thread.join(2.0)
        self._webhooks.stop()

    def __enter__(self) -> MailiverySandbox:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("sandbox not started")
        return f"http://127.0.0.1:{self._server.server_port}"

    @property
    def api_base_url(self) -> str:
        return self.url + API_PREFIX

    @property
    def consent_callback_url(self) -> str:
        return self.url + CONTROL_PREFIX + "/oauth/callback"

    # ---- in-process helpers (tests should prefer HTTP via SandboxControl)

    def control(self) -> SandboxControl:
        return SandboxControl(self.url)

    @property
    def webhook_url(self) -> str | None:
        return self._webhooks.url

    @webhook_url.setter
    def webhook_url(self, value: str | None) -> None:
        self._webhooks.url = value

    def campaigns(self) -> list[dict[str, Any]]:
        return [c.to_api() for c in self._store.all()]

    def reset(self) -> None:
        """Clears campaigns, consents, logs, faults and switches; keeps keys and webhook URL."""
        self._store.clear()
        self._faults.configure(FaultConfig())
        self._webhooks.reset()
        self._rate_limiter.set_limit(self._initial_rate_limit)
        with self._lock:
            self._options = SandboxOptions()
            self._calls.clear()

    # ---- WSGI

    def _wsgi(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = MAX_BODY_BYTES
        if request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/"):
            response = self._handle_api(request)
        elif request.path == CONTROL_PREFIX or request.path.startswith(CONTROL_PREFIX + "/"):
            response = self._handle_control(request)
        else:
            response = error_response(404, "NOT_FOUND", "Not found.")
        return response(environ, start_response)

    def _options_snapshot(self) -> SandboxOptions:
        with self._lock:
            return self._options

    # ---- vendor API

    def _handle_api(self, request: Request) -> Response:
        started = time.monotonic()
        key = _bearer_token(request)
        logged_body: Any = None
        fault: CallFault | None = None
        try:
            endpoint, args = _API_ROUTES.bind_to_environ(request.environ).match()
            response, logged_body, fault = self._serve_api(request, key, str(endpoint), dict(args))
        except HTTPException as exc:
            response = _http_error(exc)
        except Exception:
            response = _sandbox_bug()
        self._record_call(request, key, response.status_code, logged_body, fault, started)
        return response

    def _serve_api(
        self, request: Request, key: str | None, endpoint: str, args: dict[str, Any]
    ) -> tuple[Response, Any, CallFault | None]:
        """Auth → rate limit → request id → faults → endpoint. Returns (response, body, fault)."""
        options = self._options_snapshot()
        body: dict[str, Any] = {}
        logged_body: Any = None
        if request.method in ("POST", "PATCH", "PUT", "DELETE"):
            body, logged_body = _parse_vendor_body(request)
        if key is None or key not in self._api_keys:
            return error_response(401, "UNAUTHENTICATED", "Unauthenticated."), logged_body, None
        # Every authenticated call spends budget, even one that then fails (as at the vendor).
        rate = self._rate_limiter.acquire(key)
        rate_headers = (
            {"X-RateLimit-Limit": str(rate.limit), "X-RateLimit-Remaining": str(rate.remaining)}
            if options.rate_limit_headers
            else {}
        )
        if not rate.allowed:
            if options.rate_limit_headers:
                rate_headers["Retry-After"] = str(rate.retry_after_s)
            response = error_response(
                429, "RATE_LIMIT_EXCEEDED", "Too many requests.", rate_headers
            )
            return response, logged_body, "storm" if rate.storm else None
        if not request.headers.get("X-Request-ID", "").strip():
            response = error_response(
                400, "MISSING_REQUEST_ID", "The X-Request-ID header is required."
            )
            return response, logged_body, None

        decision = self._faults.decide(request.method, request.path)
        if decision.latency_s and self._stopping.wait(decision.latency_s):
            return self._shutting_down(), logged_body, decision.kind
        if decision.kind == "error":
            code, message = ERROR_BODIES[decision.error_status]
            return error_response(decision.error_status, code, message), logged_body, "error"
        if decision.kind == "html":
            return Response(PROXY_HTML, 502, mimetype="text/html"), logged_body, "html"
        if decision.kind == "timeout" and self._stopping.wait(decision.hang_s):
            return self._shutting_down(), logged_body, "timeout"
        if decision.kind == "reset":
            _close_connection(request.environ)
            if self._stopping.wait(decision.hang_s):
                return _ConnectionReset(), logged_body, "reset"

        try:
            response = self._api_endpoint(endpoint, request, key, body, args, options)
        except ApiError as exc:
            response = error_response(exc.status, exc.code, exc.message, exc.headers)
        except ValidationFailed as exc:
            response = self._validation_response(exc, options)
        # empty/garbage/lost replace the answer of a call that was really processed.
        if decision.kind == "lost":
            self._stopping.wait(decision.hang_s)
            response = error_response(504, *ERROR_BODIES[504])
        elif decision.kind == "empty":
            response = Response(b"", 200, mimetype="application/json")
        elif decision.kind == "garbage":
            response = json_response({"foo": 1})
        elif decision.kind == "reset":
            response = _ConnectionReset()  # nobody reads it: the client is gone
        response.headers.update(rate_headers)
        return response, logged_body, decision.kind

    @staticmethod
    def _shutting_down() -> Response:
        return error_response(503, "SERVICE_UNAVAILABLE", "The sandbox is shutting down.")

    @staticmethod
    def _validation_response(exc: ValidationFailed, options: SandboxOptions) -> Response:
        if options.validation_error_shape == "code":
            first = next(iter(exc.errors.values()))[0]
            return error_response(422, "VALIDATION_ERROR", first)
        return json_response({"message": "The given data was invalid.", "errors": exc.errors}, 422)

    def _api_endpoint(
        self,
        endpoint: str,
        request: Request,
        key: str,
        body: Mapping[str, Any],
        args: Mapping[str, Any],
        options: SandboxOptions,
    ) -> Response:
        field_name = options.status_field
        if endpoint == "create_ms_graph":
            if key not in self._allowlisted:
                raise ApiError(
                    403,
                    "MS_GRAPH_FEATURE_DISABLED",
                    "Microsoft Graph campaigns are not enabled for this account.",
                )
            consent = self._validate_consent_request(body, options)
            url = self._store.add_consent(consent, self._consent_url)
            return json_response({"success": True, "data": {"url": url}})
        if endpoint == "list_campaigns":
            return self._list_campaigns(request, options)
        if endpoint == "get_by_email":
            campaign = self._store.find_by_email(str(args["email"]))
            return json_response({"success": True, "data": campaign.to_api(field_name)})
        if endpoint == "limits":
            limits = self._store.limits(options.daily_email_total)
            return json_response({"success": True, "data": limits})

        campaign_id = int(args["campaign_id"])
        if endpoint == "get_campaign":
            campaign = self._store.get(campaign_id)
        elif endpoint == "start":
            campaign = self._store.start(campaign_id)
        elif endpoint == "resume":
            campaign = self._store.resume(campaign_id)
        elif endpoint == "pause":
            campaign = self._store.pause(campaign_id)
        elif endpoint == "delete":
            deleted = self._store.delete(campaign_id)
            self._webhooks.publish(deleted_event(deleted))
            return json_response({"success": True, "data": {"id": deleted.id, "deleted": True}})
        else:  # pragma: no cover - the route map and this dispatch are kept in step
            raise ApiError(404, "NOT_FOUND", "Not found.")
        return json_response({"success": True, "data": campaign.to_api(field_name)})

    def _validate_consent_request(
        self, body: Mapping[str, Any], options: SandboxOptions
    ) -> ConsentRequest:
        check = FieldValidator(body)
        email = check.email("email")
        first_name = check.string("first_name", required=True)
        last_name = check.string("last_name")
        email_per_day = check.integer("email_per_day", *EMAIL_PER_DAY_RANGE)
        response_rate = check.integer("response_rate", 0, 100)
        audience = check.string("warmup_audience_type")
        tags, meta = check.tags_and_meta()
        if (
            email is not None
            and options.existing_mailbox == "reject"
            and self._store.has_mailbox(email)
        ):
            check.fail("email", "The email has already been taken.")
        check.check()
        assert email is not None
        assert first_name is not None
        return ConsentRequest(
            email=email,
            first_name=first_name,
            last_name=last_name,
            tags=tags,
            meta=meta,
            email_per_day=DEFAULT_EMAIL_PER_DAY if email_per_day is None else email_per_day,
            response_rate=DEFAULT_RESPONSE_RATE if response_rate is None else response_rate,
            warmup_audience_type=audience,
        )

    def _consent_url(self, state: str) -> str:
        query = urlencode(
            {
                "client_id": CONSENT_CLIENT_ID,
                "response_type": "code",
                "redirect_uri": self.consent_callback_url,
                "response_mode": "query",
                "scope": " ".join(CONSENT_SCOPES),
                "state": state,
            },
            quote_via=quote,
        )
        return f"https://{self._consent_host}/common/oauth2/v2.0/authorize?{query}"

    def _list_campaigns(self, request: Request, options: SandboxOptions) -> Response:
        check = FieldValidator(request.args)
        page = check.integer("page", 1, 1_000_000) or 1
        per_page = check.integer("per_page", 1, 100) or 50
        # Accept the filter under either status key name, whichever the option serves.
        status = request.args.get("status") or request.args.get("status_code") or None
        if status is not None and status not in get_args(CampaignStatus):
            check.fail("status", "The selected status is invalid.")
        check.check()
        campaigns = self._store.all(status)
        total = len(campaigns)
        start = (page - 1) * per_page
        return json_response(
            {
                "success": True,
                "data": [
                    c.to_api(options.status_field) for c in campaigns[start : start + per_page]
                ],
                "meta": {
                    "current_page": page,
                    "last_page": max(1, math.ceil(total / per_page)),
                    "per_page": per_page,
                    "total": total,
                },
            }
        )

    def _record_call(
        self,
        request: Request,
        key: str | None,
        status: int,
        body: Any,
        fault: CallFault | None,
        started: float,
    ) -> None:
        entry = {
            "method": request.method,
            "path": request.path,
            "query": request.query_string.decode("latin-1"),
            "request_id": request.headers.get("X-Request-ID"),
            "status": status,
            "key_fingerprint": key_fingerprint(key),
            "fault": fault,
            "body": body,
            "time": utc_now_iso(),
            "duration_ms": round((time.monotonic() - started) * 1000, 1),
        }
        with self._lock:
            self._calls.append(entry)

    # ---- control surface

    def _handle_control(self, request: Request) -> Response:
        try:
            endpoint, args = _CONTROL_ROUTES.bind_to_environ(request.environ).match()
            body = self._control_body(request)
            return self._control_endpoint(str(endpoint), request, body, args)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message, exc.headers)
        except ValidationFailed as exc:
            return json_response(
                {"code": "BAD_REQUEST", "message": "Invalid seed data.", "errors": exc.errors}, 400
            )
        except HTTPException as exc:
            return _http_error(exc)
        except Exception:
            return _sandbox_bug()

    @staticmethod
    def _control_body(request: Request) -> dict[str, Any]:
        if request.method != "POST":
            return {}
        raw = request.get_data(as_text=True)
        if not raw.strip():
            return {}
        try:
            body = json.loads(raw)
        except ValueError as exc:
            raise bad_request("Control bodies are JSON objects.") from exc
        if not isinstance(body, dict):
            raise bad_request("Control bodies are JSON objects.")
        return body

    def _control_endpoint(
        self, endpoint: str, request: Request, body: dict[str, Any], args: Mapping[str, Any]
    ) -> Response:
        post = request.method == "POST"
        if endpoint == "index":
            rules = sorted({r.rule for r in _CONTROL_ROUTES.iter_rules()})
            return json_response({"api_base_url": self.api_base_url, "control": rules})
        if endpoint == "health":
            return json_response({"ok": True})
        if endpoint == "consent":
            return self._consent(request, body)
        if endpoint == "consents":
            return json_response({"consents": self._store.consents()})
        if endpoint == "campaigns":
            if post:
                return self._seed_campaign(body)
            return json_response({"campaigns": [c.to_api() for c in self._store.all()]})
        if endpoint == "pause":
            # Vendor-side pause (e.g. by an operator in Mailivery's panel): no webhook [doc:
            # webhooks fire only for actions taken through the API].
            campaign = self._store.set_status(int(args["campaign_id"]), "paused")
            return json_response({"campaign": campaign.to_api()})
        if endpoint == "connection_problem":
            campaign = self._store.set_status(int(args["campaign_id"]), "connection_problem")
            self._webhooks.publish(connection_problem_event(campaign))
            return json_response({"campaign": campaign.to_api()})
        if endpoint == "send_webhook":
            return self._send_webhook(int(args["campaign_id"]), body)
        if endpoint == "connection":
            email, ok, refusals = body.get("email"), body.get("ok"), body.get("refusals")
            if not isinstance(email, str) or not email.strip() or not isinstance(ok, bool):
                raise bad_request('Expected {"email": "<mailbox>", "ok": true|false}.')
            if refusals is not None and (
                ok or not isinstance(refusals, int) or isinstance(refusals, bool) or refusals < 0
            ):
                raise bad_request('"refusals" is a count >= 0, and only goes with "ok": false.')
            self._store.set_connection(email, ok, refusals)
            return json_response({"connections": self._store.connection_switches()})
        if endpoint == "faults":
            if post:
                self._faults.configure(*fault_configs_from_json(body))
            return json_response({"faults": self._faults.status()})
        if endpoint == "storm":
            seconds = body.get("seconds")
            if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
                raise bad_request('Expected {"seconds": <how long, on the rate-limit clock>}.')
            self._rate_limiter.storm(float(seconds))
            return json_response({"storm_seconds": seconds})
        if endpoint == "webhooks":
            return self._webhooks_endpoint(request, body)
        if endpoint == "flush":
            return json_response({"flushed": self._webhooks.flush()})
        if endpoint == "calls":
            with self._lock:
                return json_response({"calls": list(self._calls)})
        if endpoint == "options":
            if post:
                self._set_options(body)
            return json_response({"options": self._options_view()})
        if endpoint == "reset":
            self.reset()
            return json_response({"reset": True})
        raise ApiError(404, "NOT_FOUND", "Unknown sandbox control endpoint.")  # pragma: no cover

    def _consent(self, request: Request, body: Mapping[str, Any]) -> Response:
        params: Mapping[str, Any] = body if request.method == "POST" else request.args
        state, url, email = params.get("state"), params.get("url"), params.get("email")
        if not state and isinstance(url, str):
            state = parse_qs(urlsplit(url).query).get("state", [None])[0]
        if not isinstance(state, str) or not state:
            raise bad_request('Give "state" or the consent "url".')
        if email is not None and (not isinstance(email, str) or not EMAIL_RE.match(email.strip())):
            raise bad_request('"email" must be an email address.')
        options = self._options_snapshot()
        campaign, outcome = self._store.complete_consent(
            state, email, options.consent_ttl_seconds, options.existing_mailbox
        )
        created = outcome == "created"
        if outcome == "reconnected":
            self._webhooks.publish(reconnect_event(campaign, options.reconnect_event))
        else:
            # Sandbox choice: a repeated consent (Microsoft redirect replayed, owner clicking
            # twice) re-sends campaign.pending for the same campaign: a duplicate to tolerate.
            self._webhooks.publish(pending_event(campaign))
        status = 201 if created else 200
        if request.method == "GET":
            text = (
                f"<!doctype html><title>Mailivery sandbox</title><p>Consent recorded for "
                f"{html.escape(campaign.email)}: campaign {campaign.id} is "
                f"{html.escape(campaign.status)}.</p>"
            )
            return Response(text, status, mimetype="text/html")
        return json_response(
            {"created": created, "outcome": outcome, "campaign": campaign.to_api()}, status
        )

    def _send_webhook(self, campaign_id: int, body: Mapping[str, Any]) -> Response:
        """Mailivery sends (again) one webhook about a campaign: a late duplicate, or the
        campaign.updated it sends when something about the campaign changed."""
        builders: dict[str, Callable[[Campaign], WebhookEvent]] = {
            "campaign.pending": pending_event,
            "campaign.updated": lambda c: reconnect_event(c, "campaign.updated"),
            "campaign.connection_problem": connection_problem_event,
        }
        event_type = body.get("type")
        if event_type not in builders:
            raise bad_request(f"type must be one of {sorted(builders)}.")
        event = builders[event_type](self._store.get(campaign_id))
        self._webhooks.publish(event)
        return json_response({"sent": event.payload})

    def _seed_campaign(self, body: Mapping[str, Any]) -> Response:
        check = FieldValidator(body)
        email = check.email("email")
        first_name = check.string("first_name", required=True)
        last_name = check.string("last_name")
        status = check.choice("status", get_args(CampaignStatus), "pending")
        email_per_day = check.integer("email_per_day", *EMAIL_PER_DAY_RANGE)
        response_rate = check.integer("response_rate", 0, 100)
        tags, meta = check.tags_and_meta()
        audience = check.string("warmup_audience_type")
        explicit_id = check.integer("id", 1, 2**31 - 1)
        notify = body.get("notify", False)
        if not isinstance(notify, bool):
            check.fail("notify", "The notify field must be true or false.")
        check.check()
        assert email is not None
        assert first_name is not None
        campaign = self._store.seed(
            Campaign(
                id=explicit_id or 0,
                email=email,
                first_name=first_name,
                last_name=last_name,
                status=cast(CampaignStatus, status),
                tags=tags,
                meta=meta,
                email_per_day=DEFAULT_EMAIL_PER_DAY if email_per_day is None else email_per_day,
                response_rate=DEFAULT_RESPONSE_RATE if response_rate is None else response_rate,
                warmup_audience_type=audience,
                created_at=utc_now_iso(),
            ),
            explicit_id=explicit_id is not None,
        )
        if notify:
            self._webhooks.publish(pending_event(campaign))
        return json_response({"campaign": campaign.to_api()}, 201)

    def _webhooks_endpoint(self, request: Request, body: Mapping[str, Any]) -> Response:
        if request.method == "POST":
            self._webhooks.settings = WebhookSettings.from_json(body)
            return json_response(self._webhooks.status())
        event_type = request.args.get("type") or None
        min_count = request.args.get("min_count", type=int)
        timeout_s = request.args.get("timeout", default=0.0, type=float)
        if min_count is not None and timeout_s > 0:
            deliveries = self._webhooks.wait_for(min_count, timeout_s, event_type)
        else:
            deliveries = self._webhooks.deliveries(event_type)
        return json_response({**self._webhooks.status(), "deliveries": deliveries})

    def _set_options(self, body: Mapping[str, Any]) -> None:
        allowed = {*SandboxOptions.__dataclass_fields__, "webhook_url", "rate_limit_per_minute"}
        unknown = sorted(set(body) - allowed)
        if unknown:
            raise bad_request(f"Unknown options: {', '.join(unknown)}.")
        # Validate everything before applying anything, so a bad body changes nothing.
        changes: dict[str, Any] = {}
        if "status_field" in body:
            changes["status_field"] = _choice(body, "status_field", StatusField)
        if "validation_error_shape" in body:
            changes["validation_error_shape"] = _choice(
                body, "validation_error_shape", ValidationShape
            )
        if "existing_mailbox" in body:
            changes["existing_mailbox"] = _choice(body, "existing_mailbox", ExistingMailbox)
        if "reconnect_event" in body:
            changes["reconnect_event"] = _choice(body, "reconnect_event", ReconnectEvent)
        if "rate_limit_headers" in body:
            if not isinstance(body["rate_limit_headers"], bool):
                raise bad_request("rate_limit_headers must be a boolean.")
            changes["rate_limit_headers"] = body["rate_limit_headers"]
        if "consent_ttl_seconds" in body:
            ttl = body["consent_ttl_seconds"]
            if ttl is not None and (not isinstance(ttl, int | float) or isinstance(ttl, bool)):
                raise bad_request("consent_ttl_seconds must be a number or null.")
            changes["consent_ttl_seconds"] = ttl
        if "daily_email_total" in body:
            changes["daily_email_total"] = non_negative_int(body, "daily_email_total")
        rate_limit: int | None = None
        if "rate_limit_per_minute" in body:
            rate_limit = non_negative_int(body, "rate_limit_per_minute")
            if rate_limit < 1:
                raise bad_request("rate_limit_per_minute must be at least 1.")
        webhook_url = body.get("webhook_url")
        if webhook_url is not None and not (
            isinstance(webhook_url, str) and webhook_url.startswith(("http://", "https://"))
        ):
            raise bad_request("webhook_url must be an http(s) URL or null.")

        with self._lock:
            self._options = replace(self._options, **changes)
        if rate_limit is not None:
            self._rate_limiter.set_limit(rate_limit)
        if "webhook_url" in body:
            self._webhooks.url = webhook_url

    def _options_view(self) -> dict[str, Any]:
        return {
            **asdict(self._options_snapshot()),
            "webhook_url": self._webhooks.url,
            "rate_limit_per_minute": self._rate_limiter.per_minute,
        }


# --------------------------------------------------------------------------- command line


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m devstack.sandbox", description="Local Mailivery API sandbox."
    )
    parser.add_argument("--port", type=int, default=8700, help="0 picks a free port")
    parser.add_argument("--webhook-url", help="where webhooks go (the warmgate webhook URL)")
    parser.add_argument(
        "--api-key", action="append", dest="api_keys", help="valid key (repeatable)"
    )
    parser.add_argument(
        "--allowlisted-key",
        action="append",
        dest="allowlisted_keys",
        help="key allowed to create ms-graph campaigns (repeatable; default: every valid key)",
    )
    parser.add_argument("--rate-limit", type=int, default=240, help="requests/minute per key")
    parser.add_argument("--consent-host", default="login.microsoftonline.com")
    parser.add_argument("--verbose", action="store_true", help="log every HTTP request")
    args = parser.parse_args(argv)

    api_keys: list[str] = args.api_keys or ["sandbox-key"]
    sandbox = MailiverySandbox(
        port=args.port,
        webhook_url=args.webhook_url,
        api_keys=api_keys,
        allowlisted_keys=args.allowlisted_keys,
        rate_limit_per_minute=args.rate_limit,
        consent_host=args.consent_host,
        log_requests=args.verbose,
    )
    done = threading.Event()

    def _on_signal(signum: int, frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGINT, _on_signal)
    signal.signal(signal.SIGTERM, _on_signal)
    with sandbox:
        default_key = " (Bearer sandbox-key)" if args.api_keys is None else ""
        print(f"Mailivery sandbox: {sandbox.url}", flush=True)
        print(f"  vendor API: {sandbox.api_base_url}{default_key}", flush=True)
        print(f"  control:    {sandbox.url}{CONTROL_PREFIX}", flush=True)
        print(
            f"  webhooks:   {args.webhook_url or '(none; set via POST /_sandbox/options)'}",
            flush=True,
        )
        print("Ctrl-C to stop.", file=sys.stderr, flush=True)
        done.wait()  # the signal handlers set it
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
