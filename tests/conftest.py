"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

from tests.properties import FULL, examples

if TYPE_CHECKING:
    from devstack.sandbox import MailiverySandbox

# Hypothesis' default is 100 examples a test (tests/properties.py says when each profile runs).
# These machines are shared and noisy: how fast inputs are generated says nothing about the code,
# so the speed health check and per-example deadlines are off in both profiles.
_SHARED_MACHINE = {"deadline": None, "suppress_health_check": [HealthCheck.too_slow]}
settings.register_profile("full", max_examples=100, **_SHARED_MACHINE)
settings.register_profile("unit", max_examples=examples(100), **_SHARED_MACHINE)
settings.load_profile("full" if FULL else "unit")


@pytest.fixture
def sandbox() -> Iterator[MailiverySandbox]:
    """A started Mailivery sandbox on 127.0.0.1 and a free port, key `sandbox-key`, no webhook URL.

    Function-scoped: starting one takes milliseconds, and a fresh one per test means no state
    (campaigns, rate-limit windows, faults, webhook threads) can leak between tests.
    """
    # Imported here so unit tests, which never use the sandbox, do not import a web server.
    from devstack.sandbox import MailiverySandbox

    with MailiverySandbox() as started:
        yield started
