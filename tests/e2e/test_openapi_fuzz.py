"""Schemathesis against the local stack, from openapi.yaml: generated requests (valid and invalid)
to every route the handlers serve. No answer may be a 5xx or depart from the document.

Bounded and reproducible: a fixed number of examples per route and a fixed seed. The local API
does not check signatures, so the requests go unsigned and schemathesis's `ignored_auth` check
(which expects a refusal without credentials) is not run; signing is tested with the client
(tests/e2e/test_python_client.py).
"""

from __future__ import annotations

import pytest
import schemathesis
from hypothesis import HealthCheck, seed, settings
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from devstack.stack import LocalStack
from tests.openapi_contract import DOCUMENT

pytestmark = pytest.mark.slow

SEED = 20261126
EXAMPLES_PER_ROUTE = 30
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]

schema = schemathesis.openapi.from_path(DOCUMENT)
schema.config.generation.update(modes=[GenerationMode.POSITIVE, GenerationMode.NEGATIVE])


@schema.parametrize()
@seed(SEED)
@settings(
    max_examples=EXAMPLES_PER_ROUTE,
    deadline=None,
    database=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_openapi_fuzz_answers_conform_and_never_fail(
    case: schemathesis.Case, local_stack: LocalStack
) -> None:
    case.call_and_validate(base_url=local_stack.api_url, checks=CHECKS, timeout=10)
