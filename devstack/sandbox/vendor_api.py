"""The vendor API under /api/v1: auth, the rate limit, the X-Request-ID rule and injected
faults in front of the campaign endpoints, and a call log entry for every call."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from typing import Any, Final, get_args
from urllib.parse import quote, urlencode

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from devstack.sandbox.errors import ApiError, ValidationFailed
from devstack.sandbox.faults import ERROR_BODIES, CallFault, FaultDecision
from devstack.sandbox.http import (
    ConnectionReset,
    bearer_token,
    close_connection,
    error_response,
    http_error,
    json_response,
    key_fingerprint,
    parse_vendor_body,
    sandbox_bug,
)
from devstack.sandbox.options import SandboxOptions
from devstack.sandbox.state import SandboxState
from devstack.sandbox.store import CampaignStatus, utc_now_iso
from devstack.sandbox.validation import FieldValidator, consent_request
from devstack.sandbox.webhooks import deleted_event

API_PREFIX: Final = "/api/v1"
# Invented: Mailivery's Azure application id is not public. Fixed so tests can assert on it.
CONSENT_CLIENT_ID: Final = "7d1c3f52-9b4e-4a8d-b6f0-2e5a9c8d1f34"
CONSENT_SCOPES: Final = (
    "offline_access",
    "https://graph.microsoft.com/Mail.ReadWrite",
    "https://graph.microsoft.com/Mail.Send",
    "https://graph.microsoft.com/User.Read",
)
PROXY_HTML: Final = (
    "<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    "<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx</center>\r\n"
    "</body>\r\n</html>\r\n"
)

API_ROUTES: Final = Map(
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


def consent_url(host: str, redirect_uri: str, state: str) -> str:
    """The Microsoft sign-in link the vendor answers the create call with."""
    query = urlencode(
        {
            "client_id": CONSENT_CLIENT_ID,
            "response_type": "code",
            "redirect_uri": redirect_uri,
            "response_mode": "query",
            "scope": " ".join(CONSENT_SCOPES),
            "state": state,
        },
        quote_via=quote,
    )
    return f"https://{host}/common/oauth2/v2.0/authorize?{query}"


class VendorApi:
    def __init__(
        self,
        state: SandboxState,
        *,
        api_keys: frozenset[str],
        allowlisted_keys: frozenset[str],
        consent_url_for: Callable[[str], str],
    ) -> None:
        self._state = state
        self._api_keys = api_keys
        self._allowlisted = allowlisted_keys
        self._consent_url_for = consent_url_for

    def handle(self, request: Request) -> Response:
        started = time.monotonic()
        key = bearer_token(request)
        logged_body: Any = None
        fault: CallFault | None = None
        try:
            endpoint, args = API_ROUTES.bind_to_environ(request.environ).match()
            response, logged_body, fault = self._serve(request, key, str(endpoint), dict(args))
        except HTTPException as exc:
            response = http_error(exc)
        except Exception:
            response = sandbox_bug()
        self._record_call(request, key, response.status_code, logged_body, fault, started)
        return response

    def _serve(
        self, request: Request, key: str | None, endpoint: str, args: dict[str, Any]
    ) -> tuple[Response, Any, CallFault | None]:
        """Auth → rate limit → request id → faults → endpoint. Returns (response, body, fault)."""
        options = self._state.options
        body: dict[str, Any] = {}
        logged_body: Any = None
        if request.method in ("POST", "PATCH", "PUT", "DELETE"):
            body, logged_body = parse_vendor_body(request)
        refusal, rate_headers, fault = self._admit(request, key, options)
        if refusal is not None:
            return refusal, logged_body, fault
        assert key is not None  # admitted
        decision = self._state.faults.decide(request.method, request.path)
        early = self._answer_before_call(decision, request)
        if early is not None:
            return early, logged_body, decision.kind
        try:
            response = self._endpoint(endpoint, request, key, body, args, options)
        except ApiError as exc:
            response = error_response(exc.status, exc.code, exc.message, exc.headers)
        except ValidationFailed as exc:
            response = _validation_response(exc, options)
        response = self._answer_after_call(decision, response)
        response.headers.update(rate_headers)
        return response, logged_body, decision.kind

    def _admit(
        self, request: Request, key: str | None, options: SandboxOptions
    ) -> tuple[Response | None, dict[str, str], CallFault | None]:
        """(the refusal or None, the rate-limit headers, the fault it counts as)."""
        if key is None or key not in self._api_keys:
            return error_response(401, "UNAUTHENTICATED", "Unauthenticated."), {}, None
        # Every authenticated call spends budget, even one that then fails (as at the vendor).
        rate = self._state.rate_limiter.acquire(key)
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
            return response, rate_headers, "storm" if rate.storm else None
        if not request.headers.get("X-Request-ID", "").strip():
            response = error_response(
                400, "MISSING_REQUEST_ID", "The X-Request-ID header is required."
            )
            return response, rate_headers, None
        return None, rate_headers, None

    def _answer_before_call(self, decision: FaultDecision, request: Request) -> Response | None:
        """The faults that answer before (or instead of) the call: None lets the call run."""
        stopping = self._state.stopping
        if decision.latency_s and stopping.wait(decision.latency_s):
            return _shutting_down()
        if decision.kind == "error":
            code, message = ERROR_BODIES[decision.error_status]
            return error_response(decision.error_status, code, message)
        if decision.kind == "html":
            return Response(PROXY_HTML, 502, mimetype="text/html")
        if decision.kind == "timeout" and stopping.wait(decision.hang_s):
            return _shutting_down()
        if decision.kind == "reset":
            close_connection(request.environ)
            if stopping.wait(decision.hang_s):
                return ConnectionReset()
        return None

    def _answer_after_call(self, decision: FaultDecision, response: Response) -> Response:
        """empty/garbage/lost replace the answer of a call that was really processed."""
        if decision.kind == "lost":
            self._state.stopping.wait(decision.hang_s)
            return error_response(504, *ERROR_BODIES[504])
        if decision.kind == "empty":
            return Response(b"", 200, mimetype="application/json")
        if decision.kind == "garbage":
            return json_response({"foo": 1})
        if decision.kind == "reset":
            return ConnectionReset()  # nobody reads it: the client is gone
        return response

    def _endpoint(
        self,
        endpoint: str,
        request: Request,
        key: str,
        body: Mapping[str, Any],
        args: Mapping[str, Any],
        options: SandboxOptions,
    ) -> Response:
        store = self._state.store
        field_name = options.status_field
        if endpoint == "create_ms_graph":
            return self._create_ms_graph(key, body, options)
        if endpoint == "list_campaigns":
            return self._list_campaigns(request, options)
        if endpoint == "get_by_email":
            campaign = store.find_by_email(str(args["email"]))
            return json_response({"success": True, "data": campaign.to_api(field_name)})
        if endpoint == "limits":
            limits = store.limits(options.daily_email_total)
            return json_response({"success": True, "data": limits})

        campaign_id = int(args["campaign_id"])
        if endpoint == "get_campaign":
            campaign = store.get(campaign_id)
        elif endpoint == "start":
            campaign = store.start(campaign_id)
        elif endpoint == "resume":
            campaign = store.resume(campaign_id)
        elif endpoint == "pause":
            campaign = store.pause(campaign_id)
        elif endpoint == "delete":
            deleted = store.delete(campaign_id)
            self._state.webhooks.publish(deleted_event(deleted))
            return json_response({"success": True, "data": {"id": deleted.id, "deleted": True}})
        else:  # pragma: no cover - the route map and this dispatch are kept in step
            raise ApiError(404, "NOT_FOUND", "Not found.")
        return json_response({"success": True, "data": campaign.to_api(field_name)})

    def _create_ms_graph(
        self, key: str, body: Mapping[str, Any], options: SandboxOptions
    ) -> Response:
        if key not in self._allowlisted:
            raise ApiError(
                403,
                "MS_GRAPH_FEATURE_DISABLED",
                "Microsoft Graph campaigns are not enabled for this account.",
            )
        store = self._state.store
        taken = store.has_mailbox if options.existing_mailbox == "reject" else None
        url = store.add_consent(consent_request(body, taken=taken), self._consent_url_for)
        return json_response({"success": True, "data": {"url": url}})

    def _list_campaigns(self, request: Request, options: SandboxOptions) -> Response:
        check = FieldValidator(request.args)
        page = check.integer("page", 1, 1_000_000) or 1
        per_page = check.integer("per_page", 1, 100) or 50
        # Accept the filter under either status key name, whichever the option serves.
        status = request.args.get("status") or request.args.get("status_code") or None
        if status is not None and status not in get_args(CampaignStatus):
            check.fail("status", "The selected status is invalid.")
        check.check()
        campaigns = self._state.store.all(status)
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
        self._state.record_call(entry)


def _shutting_down() -> Response:
    return error_response(503, "SERVICE_UNAVAILABLE", "The sandbox is shutting down.")


def _validation_response(exc: ValidationFailed, options: SandboxOptions) -> Response:
    if options.validation_error_shape == "code":
        first = next(iter(exc.errors.values()))[0]
        return error_response(422, "VALIDATION_ERROR", first)
    return json_response({"message": "The given data was invalid.", "errors": exc.errors}, 422)
