"""The sandbox's HTTP plumbing: answers in the vendor's envelope, request bodies read the way
Laravel reads them, and the connection tricks the faults need."""

from __future__ import annotations

import hashlib
import json
import re
import socket
import struct
import traceback
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any, Final

from werkzeug.datastructures import MultiDict
from werkzeug.exceptions import HTTPException, MethodNotAllowed, NotFound
from werkzeug.serving import WSGIRequestHandler
from werkzeug.wrappers import Request, Response

if TYPE_CHECKING:
    from _typeshed.wsgi import WSGIEnvironment

MAX_BODY_BYTES: Final = 1024 * 1024
LOGGED_BODY_CHARS: Final = 2000


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


def bearer_token(request: Request) -> str | None:
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


def parse_vendor_body(request: Request) -> tuple[dict[str, Any], Any]:
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


def http_error(exc: HTTPException) -> Response:
    """Routing and body-size errors, in the vendor's error envelope."""
    if isinstance(exc, NotFound):
        return error_response(404, "NOT_FOUND", "Not found.")
    if isinstance(exc, MethodNotAllowed):
        return error_response(405, "METHOD_NOT_ALLOWED", "Method not allowed.")
    status = exc.code or 400
    return error_response(status, exc.name.upper().replace(" ", "_"), exc.description or exc.name)


class ConnectionReset(Response):
    """The answer of a `reset` fault, written to a connection already reset: the client never
    sees it, the call log shows its status."""

    def __init__(self) -> None:
        super().__init__(b"", status=502)


def close_connection(environ: WSGIEnvironment) -> None:
    """Reset the client's connection now, without an answer (SO_LINGER 0). werkzeug's later
    write of the response finds the socket shut and drops it quietly."""
    connection = environ.get("werkzeug.socket")
    if isinstance(connection, socket.socket):
        connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        connection.shutdown(socket.SHUT_RDWR)


def sandbox_bug() -> Response:
    # A bug in the sandbox must not pass for vendor behaviour: loud on stderr, distinct code.
    traceback.print_exc()
    return error_response(500, "SANDBOX_BUG", "Unexpected sandbox error; see its stderr.")


class QuietRequestHandler(WSGIRequestHandler):
    """Keeps test output readable; the call log is the record of what happened."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        pass
