"""openapi.yaml is a valid OpenAPI 3.1 document and stays in step with the code: the template's
routes and their authorization, the request model, the mailbox states and every error code a
handler can answer. (Answers themselves are checked against it in tests/e2e.)"""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st
from openapi_spec_validator import validate

from devstack.api_gateway import HttpRoute, routes_from_template
from devstack.template import load_template
from tests.openapi_contract import (
    ROOT,
    Operation,
    answer_problems,
    find_operation,
    load_document,
    operations,
    resolve,
)
from tests.properties import examples
from warmgate.domain.emails import normalize_email
from warmgate.domain.mailboxes import MailboxState
from warmgate.services.mailbox_requests import MailboxRequest

# States the lifecycle rework adds (resume and pause); the document describes the target.
# Once warmgate.domain.mailboxes has them, this set adds nothing and can go.
# Where each function's answers are made: (status, code) pairs are read from these sources.
ERROR_SOURCES = {
    "OnboardingFunction": (
        "functions/onboarding/app.py",
        "layers/common/warmgate/api/http.py",
        "layers/common/warmgate/services/onboarding.py",
        "layers/common/warmgate/services/mailbox_requests.py",
    ),
    "WebhookFunction": ("functions/webhook/app.py", "layers/common/warmgate/api/webhook_intake.py"),
}


def template_routes() -> list[HttpRoute]:
    return routes_from_template(load_template())


def operation_of(route: HttpRoute) -> Operation:
    found = next(
        (op for op in operations() if (op.method, op.path) == (route.method, route.path)), None
    )
    assert found is not None, f"{route.route_key} ({route.event_id}) is not in openapi.yaml"
    return found


def documented_codes(operation: Operation, status: int) -> set[str]:
    """The `code` values the document allows for one answer of one operation."""
    response = operation.spec["responses"].get(str(status))
    if response is None:
        return set()
    codes: set[str] = set()
    for media in (resolve(response).get("content") or {}).values():
        alternatives = [media["schema"], *media["schema"].get("oneOf", [])]
        for part in (p for alt in alternatives for p in alt.get("allOf", [])):
            code = part.get("properties", {}).get("code", {})
            codes |= set(code.get("enum", [])) | ({code["const"]} if "const" in code else set())
    return codes


def answered_codes(source: Path) -> set[tuple[int, str]]:
    """(status, code) of every literal answer in `source`: ApiError(status, "CODE", …),
    OnboardingConflict("CODE", …) (always 409) and WebhookAnswer(status, {"code": "CODE", …})."""
    found = set()
    for node in ast.walk(ast.parse(source.read_text())):
        if not isinstance(node, ast.Call) or not isinstance(node.func, ast.Name):
            continue
        args = node.args
        match node.func.id, args:
            case "ApiError", [ast.Constant(int(status)), ast.Constant(str(code)), *_]:
                found.add((status, code))
            case "OnboardingConflict", [ast.Constant(str(code)), *_]:
                found.add((409, code))
            case "WebhookAnswer", [ast.Constant(int(status)), ast.Dict(keys, values)]:
                for key, value in zip(keys, values, strict=True):
                    if (
                        isinstance(key, ast.Constant)
                        and key.value == "code"
                        and isinstance(value, ast.Constant)
                    ):
                        found.add((status, str(value.value)))
    return found


def test_openapi_document_is_valid_openapi_3_1() -> None:
    document = load_document()

    validate(document)

    assert document["openapi"].startswith("3.1.")


def test_openapi_operations_are_exactly_the_templates_http_api_routes() -> None:
    in_template = {(route.method, route.path) for route in template_routes()}
    documented = {(op.method, op.path) for op in operations()}

    assert documented == in_template


@pytest.mark.parametrize("route", template_routes(), ids=lambda r: r.route_key)
def test_openapi_security_matches_route_authorization(route: HttpRoute) -> None:
    operation = operation_of(route)

    expected = [{"sigv4": []}] if route.authorization == "AWS_IAM" else []
    assert operation.spec.get("security") == expected


@pytest.mark.parametrize("function", sorted(ERROR_SOURCES))
def test_openapi_documents_every_error_code_a_function_answers(function: str) -> None:
    answered = set().union(*(answered_codes(ROOT / path) for path in ERROR_SOURCES[function]))
    ops = [operation_of(r) for r in template_routes() if r.function_id == function]

    undocumented = {
        (status, code)
        for status, code in answered
        if not any(code in documented_codes(op, status) for op in ops)
    }

    assert undocumented == set()


def test_answered_codes_reads_each_kind_of_answer() -> None:
    # The test above is only as good as this reader: it must see all three shapes.
    onboarding = answered_codes(ROOT / "layers/common/warmgate/services/onboarding.py")
    requests = answered_codes(ROOT / "layers/common/warmgate/services/mailbox_requests.py")
    http = answered_codes(ROOT / "layers/common/warmgate/api/http.py")
    webhook = answered_codes(ROOT / "layers/common/warmgate/api/webhook_intake.py")

    assert (409, "REQUESTED_BY_ANOTHER") in onboarding
    assert {(409, "CONCURRENT_UPDATE"), (409, "CLAIM_HELD")} <= requests
    assert {(404, "NOT_FOUND"), (503, "MS_GRAPH_FEATURE_DISABLED")} <= http
    assert {(404, "NOT_FOUND"), (413, "PAYLOAD_TOO_LARGE")} <= webhook


def test_openapi_mailbox_states_are_the_domains() -> None:
    documented = set(resolve({"$ref": "#/components/schemas/MailboxState"})["enum"])

    assert documented == {state.value for state in MailboxState}


def test_openapi_mailbox_request_is_the_request_model() -> None:
    schema = resolve({"$ref": "#/components/schemas/MailboxRequest"})
    model_fields = MailboxRequest.model_fields

    assert set(schema["properties"]) == set(model_fields)
    assert set(schema["required"]) == {n for n, f in model_fields.items() if f.is_required()}
    assert schema["additionalProperties"] is False  # the model forbids extra fields too


def test_openapi_request_example_is_accepted_by_the_model() -> None:
    operation = find_operation("POST", "/mailboxes")
    assert operation is not None
    example = operation.spec["requestBody"]["content"]["application/json"]["example"]

    request = MailboxRequest.model_validate(example)

    assert request.email == example["email"]


@pytest.mark.parametrize("name", ["Email", "PathEmail"])
@settings(max_examples=examples(50))  # generating from these patterns is slow: ~40 ms an example
@given(data=st.data())
def test_openapi_email_patterns_only_admit_addresses_warmgate_accepts(
    name: str, data: st.DataObject
) -> None:
    schema = resolve({"$ref": f"#/components/schemas/{name}"})
    # Generated without the pattern's local-part lookahead (Hypothesis cannot generate through
    # it), which the full pattern then applies.
    lookahead = "(?=[^@]{1,64}@)"
    assert schema["pattern"].startswith(f"^{lookahead}")
    email = data.draw(
        st.from_regex(schema["pattern"].replace(lookahead, ""), fullmatch=True).filter(
            lambda s: len(s) <= schema["maxLength"]
        )
    )
    assume(re.fullmatch(schema["pattern"], email))

    assert normalize_email(email) == email.lower()


# --- the answer check the e2e tests rely on -----------------------------------------------------


def _problems(method: str, path: str, status: int, body: Any, **headers: str) -> list[str]:
    operation = find_operation(method, path)
    assert operation is not None
    return answer_problems(
        operation,
        status,
        httpx.Headers({"content-type": "application/json", **headers}),
        httpx.Response(status, json=body).content,
    )


def test_answer_check_accepts_a_documented_answer() -> None:
    body = {"code": "CONSENT_REQUEST_IN_PROGRESS", "message": "retry shortly"}

    assert _problems("POST", "/mailboxes", 409, body, **{"Retry-After": "2"}) == []


@pytest.mark.parametrize(
    ("status", "body", "headers", "problem"),
    [
        (418, {"code": "X", "message": "m"}, {}, "status not documented"),
        (409, {"code": "NO_SUCH_CODE", "message": "m"}, {}, "body code: 'NO_SUCH_CODE' is not"),
        (409, {"code": "REQUEST_MISMATCH"}, {}, "'message' is a required property"),
        (409, {"code": "REQUEST_MISMATCH", "message": "m", "x": 1}, {}, "Additional properties"),
        (409, {"code": "REQUEST_MISMATCH", "message": "m"}, {"Retry-After": "soon"}, "Retry-Af"),
        (201, {"email": "a@b.co", "state": "consent_requested"}, {}, "'consent_url' is a requi"),
    ],
)
def test_answer_check_names_what_departs(
    status: int, body: Any, headers: dict[str, str], problem: str
) -> None:
    problems = _problems("POST", "/mailboxes", status, body, **headers)

    assert any(problem in p for p in problems), problems


def test_answer_check_matches_templated_paths() -> None:
    operation = find_operation("POST", "/mailboxes/ada@contoso.com/resume")

    assert operation is not None
    assert operation.path == "/mailboxes/{email}/resume"
    assert find_operation("PUT", "/mailboxes") is None


@pytest.mark.parametrize(
    ("method", "path", "status", "body"),
    [
        ("POST", "/mailboxes", 500, {"code": "INTERNAL_ERROR", "message": "see the logs"}),
        # The function died (timeout, out of memory): API Gateway answers for it.
        ("POST", "/mailboxes", 500, {"message": "Internal Server Error"}),
        ("DELETE", "/mailboxes/ada@contoso.com", 403, {"code": "FORBIDDEN", "message": "m"}),
        ("DELETE", "/mailboxes/ada@contoso.com", 403, {"message": "Forbidden"}),
    ],
)
def test_answer_check_accepts_warmgates_and_api_gateways_own_errors(
    method: str, path: str, status: int, body: dict[str, str]
) -> None:
    assert _problems(method, path, status, body) == []


def test_answer_check_refuses_an_api_gateway_message_with_a_code() -> None:
    body = {"code": "SOMETHING_ELSE", "message": "Internal Server Error"}

    assert _problems("POST", "/mailboxes", 500, body) != []
