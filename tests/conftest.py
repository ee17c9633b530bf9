"""Shared pytest fixtures."""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING

import pytest
from hypothesis import HealthCheck, settings

if TYPE_CHECKING:
    from devstack.sandbox import MailiverySandbox

# These machines are shared and noisy: how fast inputs are generated says nothing about the code,
# so Hypothesis's speed health checks and per-example deadlines are off for every test. Each
# property keeps its own number of examples; correctness checks are unchanged.
settings.register_profile("warmgate", deadline=None, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile("warmgate")


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
