"""The sandbox as one HTTP server: the vendor API and the control surface on 127.0.0.1, with
its lifecycle (start, stop, context manager) and the in-process helpers tests may use."""

from __future__ import annotations

import threading
from collections.abc import Iterable
from typing import TYPE_CHECKING, Any, Self

from werkzeug.serving import BaseWSGIServer, WSGIRequestHandler, make_server
from werkzeug.wrappers import Request

from devstack.sandbox.control import CONTROL_PREFIX, SandboxControl
from devstack.sandbox.control_api import ControlApi
from devstack.sandbox.http import MAX_BODY_BYTES, QuietRequestHandler, error_response
from devstack.sandbox.state import SandboxState
from devstack.sandbox.vendor_api import API_PREFIX, VendorApi, consent_url
from devstack.service import Service

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIEnvironment


class MailiverySandbox(Service):
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
        keys = _key_set(api_keys)
        if not keys:
            raise ValueError("at least one API key is needed")
        self._stopping = threading.Event()
        self._state = SandboxState(
            webhook_url=webhook_url,
            rate_limit_per_minute=rate_limit_per_minute,
            time_scale=time_scale,
            stopping=self._stopping,
        )
        self._vendor = VendorApi(
            self._state,
            api_keys=keys,
            allowlisted_keys=keys if allowlisted_keys is None else _key_set(allowlisted_keys),
            consent_url_for=lambda state: consent_url(
                consent_host, self.consent_callback_url, state
            ),
        )
        self._control = ControlApi(self._state, lambda: self.api_base_url)
        self._server: BaseWSGIServer | None = None
        self._thread: threading.Thread | None = None

    # ---- lifecycle

    def start(self) -> Self:
        if self._server is not None:
            raise RuntimeError("sandbox already started")
        handler = WSGIRequestHandler if self._log_requests else QuietRequestHandler
        self._server = make_server(
            "127.0.0.1", self._port, self._wsgi, threaded=True, request_handler=handler
        )
        self._state.webhooks.start()
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
        self._state.webhooks.stop()

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
        return self._state.webhooks.url

    @webhook_url.setter
    def webhook_url(self, value: str | None) -> None:
        self._state.webhooks.url = value

    def campaigns(self) -> list[dict[str, Any]]:
        return [c.to_api() for c in self._state.store.all()]

    def reset(self) -> None:
        """Clears campaigns, consents, logs, faults and switches; keeps keys and webhook URL."""
        self._state.reset()

    def _wsgi(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        request = Request(environ)
        request.max_content_length = MAX_BODY_BYTES
        if request.path == API_PREFIX or request.path.startswith(API_PREFIX + "/"):
            response = self._vendor.handle(request)
        elif request.path == CONTROL_PREFIX or request.path.startswith(CONTROL_PREFIX + "/"):
            response = self._control.handle(request)
        else:
            response = error_response(404, "NOT_FOUND", "Not found.")
        return response(environ, start_response)


def _key_set(keys: Iterable[str]) -> frozenset[str]:
    # A lone string is one key, not a set of one-character keys.
    return frozenset([keys] if isinstance(keys, str) else keys)
