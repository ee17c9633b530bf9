"""`warmgate-client`: the API from a shell, signed with the default AWS credentials.

    warmgate-client onboard ada@contoso.com --first-name Ada --requested-by me
    warmgate-client get ada@contoso.com
    warmgate-client list --state paused --state connection_problem --all

The answer goes to stdout as JSON; an error to stderr as `error: <status> <code>: <message>`.
Exit codes: 0 done; 1 no such mailbox; 2 refused (bad input, conflict, access denied) or bad
configuration; 3 try again later (Retry-After, throttled, unavailable, unreachable).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import re
import sys
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from botocore.session import Session

from warmgate_client.client import WarmgateClient
from warmgate_client.errors import (
    ApiError,
    NotFound,
    Throttled,
    TransportError,
    WarmgateError,
)
from warmgate_client.models import MAILBOX_STATES, MailboxListing

EXIT_NOT_FOUND, EXIT_REFUSED, EXIT_RETRY_LATER = 1, 2, 3
API_URL_VARIABLE = "WARMGATE_API_URL"
# https://{api id}.execute-api.{region}.amazonaws.com[.cn]
_EXECUTE_API_HOST = re.compile(r"^https://[^./]+\.execute-api\.([a-z0-9-]+)\.amazonaws\.com")


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="warmgate-client",
        description="Call the warmgate onboarding API, signed with SigV4 (execute-api).",
    )
    parser.add_argument(
        "--api-url",
        default=os.environ.get(API_URL_VARIABLE),
        help=f"the stack's ApiUrl output (default: ${API_URL_VARIABLE})",
    )
    parser.add_argument(
        "--region",
        help="signing region (default: the execute-api URL's, else AWS_REGION or the profile's)",
    )
    parser.add_argument("--timeout", type=float, default=30.0, help="seconds per request")
    commands = parser.add_subparsers(dest="command", required=True)

    onboard = commands.add_parser("onboard", help="request a consent link for a mailbox")
    onboard.add_argument("email")
    onboard.add_argument("--first-name", required=True)
    onboard.add_argument("--last-name")
    onboard.add_argument("--requested-by", required=True, help="who asked, in your terms")
    onboard.add_argument("--tag", action="append", default=[], dest="tags", help="repeatable")
    onboard.add_argument("--email-per-day", type=int)
    onboard.add_argument("--response-rate", type=int)

    listing = commands.add_parser("list", help="your mailboxes, newest change first")
    listing.add_argument(
        "--state", action="append", default=[], choices=MAILBOX_STATES, help="repeatable"
    )
    listing.add_argument("--requested-by")
    listing.add_argument("--limit", type=int, help="per page (1-100, default 50)")
    pages = listing.add_mutually_exclusive_group()
    pages.add_argument("--cursor", help="the next_cursor of the page before")
    pages.add_argument("--all", action="store_true", help="every page, as one listing")

    for name, text in (
        ("get", "show a mailbox's record and history"),
        ("withdraw", "withdraw a live request"),
        ("resume", "resume a paused campaign"),
    ):
        commands.add_parser(name, help=text).add_argument("email")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not args.api_url:
        parser.error(f"--api-url or ${API_URL_VARIABLE} is required")
    region = args.region or signing_region(args.api_url)
    if region is None:
        parser.error("--region is required for this URL: set it, AWS_REGION or a profile region")
    try:
        client = WarmgateClient(args.api_url, region, timeout=args.timeout)
    except ValueError as exc:  # a bad --api-url
        parser.error(str(exc))
    except WarmgateError as exc:  # no credentials
        return _failed(exc)
    with client:
        try:
            result = _run(client, args)
        except WarmgateError as exc:
            return _failed(exc)
    print(json.dumps(_jsonable(result), indent=2))
    return 0


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())


def signing_region(api_url: str) -> str | None:
    """The region of an execute-api URL (the only one its signature is valid for), else the
    configured one (AWS_REGION, AWS_DEFAULT_REGION, the profile's): for a custom domain."""
    match = _EXECUTE_API_HOST.match(api_url)
    if match:
        return match.group(1)
    configured = os.environ.get("AWS_REGION") or Session().get_config_variable("region")
    return str(configured) if configured else None


def _run(client: WarmgateClient, args: argparse.Namespace) -> object:
    if args.command == "onboard":
        return client.onboard(
            args.email,
            first_name=args.first_name,
            last_name=args.last_name,
            requested_by=args.requested_by,
            tags=args.tags,
            email_per_day=args.email_per_day,
            response_rate=args.response_rate,
        )
    if args.command == "list":
        if args.all:
            found = client.list_all(
                state=args.state, requested_by=args.requested_by, limit=args.limit or 100
            )
            return MailboxListing(tuple(found), next_cursor=None)
        return client.list(
            state=args.state, requested_by=args.requested_by, limit=args.limit, cursor=args.cursor
        )
    by_email = {"get": client.get, "withdraw": client.withdraw, "resume": client.resume}
    return by_email[args.command](args.email)


def _failed(exc: WarmgateError) -> int:
    print(f"error: {exc}{_retry_hint(exc)}", file=sys.stderr)
    return _exit_code(exc)


def _exit_code(exc: WarmgateError) -> int:
    if isinstance(exc, NotFound):
        return EXIT_NOT_FOUND
    if isinstance(exc, TransportError | Throttled):
        return EXIT_RETRY_LATER
    if isinstance(exc, ApiError) and (exc.retry_after is not None or exc.status >= 500):
        return EXIT_RETRY_LATER
    return EXIT_REFUSED


def _retry_hint(exc: WarmgateError) -> str:
    if isinstance(exc, ApiError) and exc.retry_after is not None:
        return f" (retry after {exc.retry_after} s)"
    return ""


def _jsonable(value: object) -> Any:
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, tuple | list):
        return [_jsonable(item) for item in value]
    if isinstance(value, datetime):
        return value.isoformat().replace("+00:00", "Z")
    return value
