"""The local stack for end-to-end tests: started once on free ports, driven over real HTTP.

One stack serves the whole session (starting one takes about a second, and moto's backends are
process-wide, so two at once would share state). Tests keep out of each other's way by using
their own mailboxes, and by filtering the sandbox's logs by campaign id.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import httpx
import pytest

from devstack.sandbox import SandboxControl
from devstack.stack import LocalStack, StackOptions
from tests.openapi_contract import assert_conforms

# Local-only speed-up: a failing message is received 5 times before WorkDLQ, one visibility
# timeout apart; 1 s instead of WorkQueue's 210 s makes that ~5 s.
VISIBILITY_TIMEOUT_S = 1


@pytest.fixture(scope="session")
def local_stack() -> Iterator[LocalStack]:
    options = StackOptions(
        visibility_timeout_seconds=VISIBILITY_TIMEOUT_S,
        # The reconciler re-queues pending campaigns; firing on its own it would race the
        # scenarios (e.g. start a campaign a test holds back to pause it). Tests fire it.
        schedule_seconds=3600,
        poll_idle_seconds=0.05,
        # The template's batching window (1 s) would make every hop through WorkQueue wait and
        # batches longer in a stack that runs one invocation at a time; bench/e2e measures it.
        batching_window_seconds=0,
    )
    with LocalStack(options) as stack:
        yield stack


@pytest.fixture
def api(local_stack: LocalStack) -> Iterator[httpx.Client]:
    """The integrator's view: every answer from a route in openapi.yaml must conform to it."""
    with httpx.Client(
        base_url=local_stack.api_url,
        # The local stack runs one invocation at a time: a request can wait behind a worker
        # invocation stuck on the reliability suite's slow vendor (10 s per slow call, the
        # client's read timeout), which Lambda would run alongside it.
        timeout=60.0,
        event_hooks={"response": [assert_conforms]},
    ) as client:
        yield client


@pytest.fixture
def control(local_stack: LocalStack) -> Iterator[SandboxControl]:
    """The sandbox's control surface; webhooks are back to plain delivery after each test."""
    with local_stack.sandbox_control() as client:
        client.set_webhooks("deliver")
        yield client
        client.set_webhooks("deliver")
        client.flush_webhooks()


@pytest.fixture
def sqs(local_stack: LocalStack) -> Any:
    """An SQS client on the stack's moto endpoint (HTTP, like the handlers' own)."""
    assert local_stack.aws is not None
    return local_stack.aws.client("sqs")


def unique_email(name: str) -> str:
    return f"{name}-{uuid.uuid4().hex[:8]}@contoso.com"


def eventually[T](
    probe: Callable[[], T | None], what: str, timeout: float = 10.0, interval: float = 0.05
) -> T:
    """Polls `probe` until it returns something other than None; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        result = probe()
        if result is not None:
            return result
        if time.monotonic() > deadline:
            pytest.fail(f"waited {timeout:g} s for {what}")
        time.sleep(interval)
