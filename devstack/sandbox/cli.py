"""`python -m devstack.sandbox`: the sandbox on its own, until Ctrl-C."""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from devstack.sandbox.app import MailiverySandbox
from devstack.sandbox.control import CONTROL_PREFIX


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
