"""openapi.yaml as the tests read it: its operations, and whether one answer conforms to it.

The e2e tests check every answer they receive from a documented route with `assert_conforms`
(an httpx response hook on their API client), so the document cannot drift from what the
handlers really answer without a test failing.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import httpx
import yaml
from openapi_schema_validator import OAS31Validator

ROOT = Path(__file__).resolve().parents[1]
DOCUMENT = ROOT / "openapi.yaml"
METHODS = ("get", "put", "post", "delete", "patch", "head", "options")


@cache
def load_document() -> dict[str, Any]:
    document: dict[str, Any] = yaml.safe_load(DOCUMENT.read_text())
    return document


@dataclass(frozen=True)
class Operation:
    method: str  # upper case
    path: str  # the template: /mailboxes/{email}
    spec: dict[str, Any]

    def matches(self, method: str, path: str) -> bool:
        """Whether a request for the percent-decoded `path` is this operation."""
        pattern = "/".join(
            "[^/]+" if re.fullmatch(r"\{[^}]+\}", part) else re.escape(part)
            for part in self.path.split("/")
        )
        return method.upper() == self.method and re.fullmatch(pattern, path) is not None


def operations() -> list[Operation]:
    return [
        Operation(method.upper(), path, spec)
        for path, item in load_document()["paths"].items()
        for method, spec in item.items()
        if method in METHODS
    ]


def find_operation(method: str, path: str) -> Operation | None:
    # Literal segments win over parameters, as in API Gateway (none overlap today).
    found = [op for op in operations() if op.matches(method, path)]
    return min(found, key=lambda op: op.path.count("{"), default=None)


def resolve(node: dict[str, Any]) -> dict[str, Any]:
    """Follow a local `$ref` (`#/components/...`) to what it names."""
    while "$ref" in node:
        target: Any = load_document()
        for part in node["$ref"].removeprefix("#/").split("/"):
            target = target[part]
        node = target
    return node


def answer_problems(
    operation: Operation, status: int, headers: httpx.Headers, body: bytes
) -> list[str]:
    """Where an answer departs from the document; empty when it conforms."""
    where = f"{operation.method} {operation.path} → {status}"
    documented = operation.spec["responses"].get(str(status))
    if documented is None:
        return [f"{where}: status not documented"]
    response = resolve(documented)
    problems = []
    for name, header in (response.get("headers") or {}).items():
        header = resolve(header)
        value = headers.get(name)
        if value is None:
            if header.get("required"):
                problems.append(f"{where}: header {name} missing")
            continue
        problems += [
            f"{where}: header {name}: {error.message}"
            for error in _validator(header["schema"]).iter_errors(_header_value(value))
        ]
    content = response.get("content")
    if content is None:
        return [*problems, *([f"{where}: undocumented body {body[:80]!r}"] if body else [])]
    content_type = headers.get("content-type", "").split(";", 1)[0].strip()
    if content_type not in content:
        return [*problems, f"{where}: content-type {content_type!r} not in {sorted(content)}"]
    try:
        document = json.loads(body)
    except ValueError:
        return [*problems, f"{where}: body is not JSON: {body[:80]!r}"]
    return problems + [
        f"{where}: body {'/'.join(map(str, error.absolute_path)) or '(root)'}: {error.message}"
        for error in _validator(content[content_type]["schema"]).iter_errors(document)
    ]


def assert_conforms(response: httpx.Response) -> None:
    """Fail when a documented route's answer departs from the document (others are ignored:
    API Gateway's own 404 for an unknown route, for instance)."""
    request = response.request
    operation = find_operation(request.method, httpx.URL(request.url).path)
    if operation is None:
        return
    response.read()
    problems = answer_problems(operation, response.status_code, response.headers, response.content)
    assert not problems, "answer departs from openapi.yaml:\n" + "\n".join(problems)


def _validator(schema: dict[str, Any]) -> OAS31Validator:
    # The schema is validated as part of the whole document, so `#/components/...` resolves.
    root = {**schema, "components": load_document()["components"]}
    return OAS31Validator(root, format_checker=OAS31Validator.FORMAT_CHECKER)


def _header_value(value: str) -> object:
    """Header values are text; an integer header is checked as the number it spells."""
    return int(value) if re.fullmatch(r"-?\d+", value) else value
