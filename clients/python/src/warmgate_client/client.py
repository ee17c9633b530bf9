"""WarmgateClient: the onboarding API's routes as methods, each request signed with SigV4.

The API is an API Gateway HTTP API with IAM authorization: every request carries an AWS
Signature Version 4 for the service `execute-api`, made by botocore's own signer from the default
credential chain (or the credentials given). The bytes signed are the bytes sent: the URL, the
body and the signed headers are built once and handed unchanged to httpx.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from types import TracebackType
from typing import Any
from urllib.parse import quote, urlencode

import httpx
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.credentials import Credentials
from botocore.session import Session

from warmgate_client.errors import MissingCredentials, TransportError, UnexpectedAnswer, error_for
from warmgate_client.models import ConsentLink, MailboxListing, MailboxRecord, MailboxSummary

SERVICE = "execute-api"
DEFAULT_TIMEOUT_SECONDS = 30.0  # the API's functions time out after 30 s


class WarmgateClient:
    """A client of one deployed API (`ApiUrl` output of the stack) in its region.

    `credentials=None` uses botocore's default chain (environment, shared profile, SSO, container
    or instance role); temporary credentials are refreshed before they expire.
    """

    def __init__(
        self,
        api_url: str,
        region: str,
        credentials: Credentials | None = None,
        *,
        timeout: float = DEFAULT_TIMEOUT_SECONDS,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        if not api_url.startswith(("https://", "http://")):
            raise ValueError(f"api_url must be an http(s) URL, got {api_url!r}")
        if not region:
            raise ValueError("region is required: the API's region signs every request")
        self.api_url = api_url.rstrip("/")
        self.region = region
        self._credentials = credentials if credentials is not None else _default_credentials()
        self._http = httpx.Client(timeout=timeout, transport=transport)

    # --- the routes ---------------------------------------------------------------------------

    def onboard(
        self,
        email: str,
        *,
        first_name: str,
        requested_by: str,
        last_name: str | None = None,
        tags: Sequence[str] = (),
        email_per_day: int | None = None,
        response_rate: int | None = None,
    ) -> ConsentLink:
        """`POST /mailboxes`: the consent link for the mailbox's owner (`created` False when the
        same request was answered again from the stored link)."""
        body: dict[str, Any] = {
            "email": email,
            "first_name": first_name,
            "requested_by": requested_by,
        }
        optional = {
            "last_name": last_name,
            "tags": list(tags) or None,
            "email_per_day": email_per_day,
            "response_rate": response_rate,
        }
        body |= {name: value for name, value in optional.items() if value is not None}
        response = self._call("POST", "/mailboxes", body)
        data = _answer(response, expected=(200, 201))
        return ConsentLink.from_json(data, created=response.status_code == 201)

    def get(self, email: str) -> MailboxRecord:
        """`GET /mailboxes/{email}`: the record, its state and history."""
        response = self._call("GET", _mailbox_path(email))
        return MailboxRecord.from_json(_answer(response, expected=(200,)))

    def list(
        self,
        *,
        state: Sequence[str] = (),
        requested_by: str | None = None,
        limit: int | None = None,
        cursor: str | None = None,
    ) -> MailboxListing:
        """`GET /mailboxes`: one page of the caller's mailboxes (an admin's: all), newest change
        first, in one of `state` (any if empty); `cursor` is the previous page's `next_cursor`."""
        query = {
            "state": ",".join(state) or None,
            "requested_by": requested_by,
            "limit": limit,
            "cursor": cursor,
        }
        given = {name: value for name, value in query.items() if value is not None}
        path = "/mailboxes" + (f"?{urlencode(given)}" if given else "")
        return MailboxListing.from_json(_answer(self._call("GET", path), expected=(200,)))

    def list_all(
        self, *, state: Sequence[str] = (), requested_by: str | None = None, limit: int = 100
    ) -> Iterator[MailboxSummary]:
        """Every mailbox `list` finds, page after page (`limit` per page)."""
        cursor = None
        while True:
            page = self.list(state=state, requested_by=requested_by, limit=limit, cursor=cursor)
            yield from page.mailboxes
            if page.next_cursor is None:
                return
            cursor = page.next_cursor

    def withdraw(self, email: str) -> MailboxRecord:
        """`DELETE /mailboxes/{email}`: withdraw a live request (state `withdrawn`)."""
        response = self._call("DELETE", _mailbox_path(email))
        return MailboxRecord.from_json(_answer(response, expected=(200,)))

    def resume(self, email: str) -> MailboxRecord:
        """`POST /mailboxes/{email}/resume`: resume a paused campaign (state `resume_requested`)."""
        response = self._call("POST", _mailbox_path(email) + "/resume")
        return MailboxRecord.from_json(_answer(response, expected=(202,)))

    # --- signing and transport ----------------------------------------------------------------

    def _signed_headers(
        self, method: str, url: str, headers: Mapping[str, str], body: bytes | None
    ) -> dict[str, str]:
        """`headers` plus X-Amz-Date, Authorization (and X-Amz-Security-Token) for this request."""
        request = AWSRequest(method=method, url=url, data=body or b"", headers=dict(headers))
        frozen = self._credentials.get_frozen_credentials()  # refreshes temporary credentials
        SigV4Auth(frozen, SERVICE, self.region).add_auth(request)
        return {name: str(value) for name, value in request.headers.items()}

    def _call(
        self, method: str, path: str, body: Mapping[str, Any] | None = None
    ) -> httpx.Response:
        url = self.api_url + path
        content = None if body is None else json.dumps(body).encode()
        headers = {"Accept": "application/json"}
        if content is not None:
            headers["Content-Type"] = "application/json"
        signed = self._signed_headers(method, url, headers, content)
        try:
            return self._http.request(method, url, headers=signed, content=content)
        except httpx.HTTPError as exc:
            raise TransportError(f"{method} {url}: {type(exc).__name__}: {exc}") from exc

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> WarmgateClient:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.close()


def _default_credentials() -> Credentials:
    credentials = Session().get_credentials()
    if credentials is None:
        raise MissingCredentials(
            "no AWS credentials found (environment, shared profile, SSO or instance role): "
            "the API only accepts SigV4-signed requests"
        )
    return credentials


def _mailbox_path(email: str) -> str:
    # One path segment: everything but "@" percent-encoded ("/" included).
    return "/mailboxes/" + quote(email, safe="@")


def _answer(response: httpx.Response, *, expected: tuple[int, ...]) -> object:
    """The JSON of an expected answer; the matching ApiError for a refusal."""
    status = response.status_code
    try:
        data: object = response.json()
    except ValueError:
        data = None
    if status in expected:
        if data is None:
            raise UnexpectedAnswer(f"{status} answer is not JSON: {response.text[:200]!r}")
        return data
    if status < 400:
        raise UnexpectedAnswer(f"unexpected status {status}: {response.text[:200]!r}")
    fields: Mapping[str, object] = data if isinstance(data, Mapping) else {}
    code, message = fields.get("code"), fields.get("message")
    raise error_for(
        status,
        code if isinstance(code, str) else None,
        message if isinstance(message, str) else response.text[:200],
        _retry_after(response.headers.get("Retry-After")),
    )


def _retry_after(value: str | None) -> int | None:
    """Retry-After in seconds; the API sends whole seconds (an HTTP date is not used)."""
    if value is None or not value.strip().isdigit():
        return None
    return int(value)
