"""The /_sandbox control surface: plays the parts nobody can script against the real service
(the mailbox owner consenting at Microsoft, vendor-side events, misbehaviour) and shows what
the vendor API saw (the call log, the webhook deliveries)."""

from __future__ import annotations

import html
import json
from collections.abc import Callable, Mapping
from typing import Any, Final
from urllib.parse import parse_qs, urlsplit

from werkzeug.exceptions import HTTPException
from werkzeug.routing import Map, Rule
from werkzeug.wrappers import Request, Response

from devstack.sandbox.errors import ApiError, ValidationFailed, bad_request
from devstack.sandbox.faults import fault_configs_from_json
from devstack.sandbox.http import error_response, http_error, json_response, sandbox_bug
from devstack.sandbox.options import options_update
from devstack.sandbox.state import SandboxState
from devstack.sandbox.store import Campaign
from devstack.sandbox.validation import EMAIL_RE, seed_request
from devstack.sandbox.webhooks import (
    WebhookEvent,
    WebhookSettings,
    connection_problem_event,
    pending_event,
    reconnect_event,
)

CONTROL_ROUTES: Final = Map(
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

# What `POST /_sandbox/campaigns/<id>/webhook` may send again.
_RESENDABLE: Final[Mapping[str, Callable[[Campaign], WebhookEvent]]] = {
    "campaign.pending": pending_event,
    "campaign.updated": lambda c: reconnect_event(c, "campaign.updated"),
    "campaign.connection_problem": connection_problem_event,
}

# An endpoint's answer to (the request, its JSON body, the route's arguments).
_Endpoint = Callable[[Request, dict[str, Any], Mapping[str, Any]], Response]


class ControlApi:
    def __init__(self, state: SandboxState, api_base_url: Callable[[], str]) -> None:
        self._state = state
        self._api_base_url = api_base_url
        self._endpoints: Mapping[str, _Endpoint] = {
            "index": self._index,
            "health": lambda _r, _b, _a: json_response({"ok": True}),
            "consent": self._consent,
            "consents": lambda _r, _b, _a: json_response({"consents": state.store.consents()}),
            "campaigns": self._campaigns,
            "pause": self._pause,
            "connection_problem": self._connection_problem,
            "send_webhook": self._send_webhook,
            "connection": self._connection,
            "faults": self._faults,
            "storm": self._storm,
            "webhooks": self._webhooks,
            "flush": lambda _r, _b, _a: json_response({"flushed": state.webhooks.flush()}),
            "calls": lambda _r, _b, _a: json_response({"calls": state.calls()}),
            "options": self._options,
            "reset": self._reset,
        }

    def handle(self, request: Request) -> Response:
        try:
            endpoint, args = CONTROL_ROUTES.bind_to_environ(request.environ).match()
            return self._endpoints[str(endpoint)](request, _control_body(request), args)
        except ApiError as exc:
            return error_response(exc.status, exc.code, exc.message, exc.headers)
        except ValidationFailed as exc:
            return json_response(
                {"code": "BAD_REQUEST", "message": "Invalid seed data.", "errors": exc.errors}, 400
            )
        except HTTPException as exc:
            return http_error(exc)
        except Exception:
            return sandbox_bug()

    def _index(self, request: Request, body: dict[str, Any], args: Mapping[str, Any]) -> Response:
        rules = sorted({r.rule for r in CONTROL_ROUTES.iter_rules()})
        return json_response({"api_base_url": self._api_base_url(), "control": rules})

    def _consent(self, request: Request, body: dict[str, Any], args: Mapping[str, Any]) -> Response:
        params: Mapping[str, Any] = body if request.method == "POST" else request.args
        state, url, email = params.get("state"), params.get("url"), params.get("email")
        if not state and isinstance(url, str):
            state = parse_qs(urlsplit(url).query).get("state", [None])[0]
        if not isinstance(state, str) or not state:
            raise bad_request('Give "state" or the consent "url".')
        if email is not None and (not isinstance(email, str) or not EMAIL_RE.match(email.strip())):
            raise bad_request('"email" must be an email address.')
        options = self._state.options
        campaign, outcome = self._state.store.complete_consent(
            state, email, options.consent_ttl_seconds, options.existing_mailbox
        )
        if outcome == "reconnected":
            self._state.webhooks.publish(reconnect_event(campaign, options.reconnect_event))
        else:
            # Sandbox choice: a repeated consent (Microsoft redirect replayed, owner clicking
            # twice) re-sends campaign.pending for the same campaign: a duplicate to tolerate.
            self._state.webhooks.publish(pending_event(campaign))
        created = outcome == "created"
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

    def _campaigns(
        self, request: Request, body: dict[str, Any], args: Mapping[str, Any]
    ) -> Response:
        if request.method != "POST":
            return json_response({"campaigns": [c.to_api() for c in self._state.store.all()]})
        seed = seed_request(body)
        campaign = self._state.store.seed(seed.campaign, explicit_id=seed.explicit_id)
        if seed.notify:
            self._state.webhooks.publish(pending_event(campaign))
        return json_response({"campaign": campaign.to_api()}, 201)

    def _pause(self, request: Request, body: dict[str, Any], args: Mapping[str, Any]) -> Response:
        # Vendor-side pause (e.g. by an operator in Mailivery's panel): no webhook [doc:
        # webhooks fire only for actions taken through the API].
        campaign = self._state.store.set_status(int(args["campaign_id"]), "paused")
        return json_response({"campaign": campaign.to_api()})

    def _connection_problem(
        self, request: Request, body: dict[str, Any], args: Mapping[str, Any]
    ) -> Response:
        campaign = self._state.store.set_status(int(args["campaign_id"]), "connection_problem")
        self._state.webhooks.publish(connection_problem_event(campaign))
        return json_response({"campaign": campaign.to_api()})

    def _send_webhook(
        self, request: Request, body: dict[str, Any], args: Mapping[str, Any]
    ) -> Response:
        """Mailivery sends (again) one webhook about a campaign: a late duplicate, or the
        campaign.updated it sends when something about the campaign changed."""
        event_type = body.get("type")
        if not isinstance(event_type, str) or event_type not in _RESENDABLE:
            raise bad_request(f"type must be one of {sorted(_RESENDABLE)}.")
        event = _RESENDABLE[event_type](self._state.store.get(int(args["campaign_id"])))
        self._state.webhooks.publish(event)
        return json_response({"sent": event.payload})

    def _connection(
        self, request: Request, body: dict[str, Any], args: Mapping[str, Any]
    ) -> Response:
        email, ok, refusals = body.get("email"), body.get("ok"), body.get("refusals")
        if not isinstance(email, str) or not email.strip() or not isinstance(ok, bool):
            raise bad_request('Expected {"email": "<mailbox>", "ok": true|false}.')
        if refusals is not None and (
            ok or not isinstance(refusals, int) or isinstance(refusals, bool) or refusals < 0
        ):
            raise bad_request('"refusals" is a count >= 0, and only goes with "ok": false.')
        self._state.store.set_connection(email, ok, refusals)
        return json_response({"connections": self._state.store.connection_switches()})

    def _faults(self, request: Request, body: dict[str, Any], args: Mapping[str, Any]) -> Response:
        if request.method == "POST":
            self._state.faults.configure(*fault_configs_from_json(body))
        return json_response({"faults": self._state.faults.status()})

    def _storm(self, request: Request, body: dict[str, Any], args: Mapping[str, Any]) -> Response:
        seconds = body.get("seconds")
        if not isinstance(seconds, int | float) or isinstance(seconds, bool) or seconds <= 0:
            raise bad_request('Expected {"seconds": <how long, on the rate-limit clock>}.')
        self._state.rate_limiter.storm(float(seconds))
        return json_response({"storm_seconds": seconds})

    def _webhooks(
        self, request: Request, body: dict[str, Any], args: Mapping[str, Any]
    ) -> Response:
        webhooks = self._state.webhooks
        if request.method == "POST":
            webhooks.settings = WebhookSettings.from_json(body)
            return json_response(webhooks.status())
        event_type = request.args.get("type") or None
        min_count = request.args.get("min_count", type=int)
        timeout_s = request.args.get("timeout", default=0.0, type=float)
        if min_count is not None and timeout_s > 0:
            deliveries = webhooks.wait_for(min_count, timeout_s, event_type)
        else:
            deliveries = webhooks.deliveries(event_type)
        return json_response({**webhooks.status(), "deliveries": deliveries})

    def _options(self, request: Request, body: dict[str, Any], args: Mapping[str, Any]) -> Response:
        if request.method == "POST":
            self._state.apply(options_update(body))
        return json_response({"options": self._state.options_view()})

    def _reset(self, request: Request, body: dict[str, Any], args: Mapping[str, Any]) -> Response:
        self._state.reset()
        return json_response({"reset": True})


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
