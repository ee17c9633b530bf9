"""Faults in the functions' own AWS calls, injected through botocore's event hooks (local only).

The local stack runs every handler in this process (devstack.functions). While a handler runs,
`invocation()` names it; a `before-call` hook on every botocore client then looks up the
current rules and may, for a call of that function:
- raise a ClientError shaped as AWS sends it (`ProvisionedThroughputExceededException`,
  `ThrottlingException`, `TransactionConflictException` on DynamoDB; `InternalError` on SQS;
  `InternalServiceError` on Secrets Manager …) instead of making the call. The hook runs
  after botocore's retry handler would have: the function sees what the SDK raises once its
  own retries gave up;
- with `applied=True`, let the call go through and raise that error from `after-call`: the
  write happened, the answer was lost (a timeout after AWS applied it);
- raise SimulatedCrash, a BaseException: the invocation dies there, as a Lambda timeout or an
  out-of-memory kill ends it. No `except Exception` in the handler can catch it, and the
  stack treats it as the Lambda runtime would (devstack.functions: FunctionCrashed, the
  environment re-initialised; an SQS batch returns after its visibility timeout).

Calls made outside an invocation (the stack's own pollers, provisioning, tests' clients) are
never touched. Rules are seeded (`AwsFaults.configure(rules, seed=…)`), so a run repeats; every
fault injected, every invocation and every message the functions sent is kept in a ledger the
tests reconcile against the queues and the table.

The hook is registered on every botocore session made after `install()` (botocore's
BUILTIN_HANDLERS: Powertools' parameter providers make sessions of their own, and the Secrets
Manager faults must reach them too) and on boto3's default session if it already exists.
"""

from __future__ import annotations

import contextlib
import fnmatch
import itertools
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextvars import ContextVar
from dataclasses import dataclass, field
from typing import Any, Final

import boto3
import botocore.handlers
from botocore.exceptions import ClientError

__all__ = [
    "FAULTS",
    "AwsFault",
    "AwsFaults",
    "InjectedFault",
    "Invocation",
    "SentMessage",
    "SimulatedCrash",
    "install",
    "invocation",
]

# The HTTP status AWS answers each error code with (what botocore's error parser would see).
ERROR_STATUS: Final[Mapping[str, int]] = {
    "ProvisionedThroughputExceededException": 400,
    "ThrottlingException": 400,
    "TransactionConflictException": 400,
    "RequestLimitExceeded": 400,
    "InternalServerError": 500,
    "InternalError": 500,
    "ServiceUnavailable": 503,
    "RequestThrottled": 400,
    "InternalServiceError": 500,
}


class SimulatedCrash(BaseException):
    """The invocation dies here (a Lambda timeout or an out-of-memory kill): a BaseException,
    so no `except Exception` in the code under test can catch it."""


@dataclass(frozen=True)
class AwsFault:
    """One rule: which of the functions' calls, how often, and what happens to them.

    `operation` is `<service-id>.<Operation>` as botocore's events name it, fnmatch patterns
    allowed: `dynamodb.PutItem`, `sqs.SendMessage`, `secrets-manager.GetSecretValue`,
    `dynamodb.*`. `when` looks at the call's parameters (the request as the handler passed
    it). `nth_in_invocation` fires only on that matching call of an invocation (2: its second
    claim write, i.e. mid-batch). `rate` is the chance per matching call (1.0 by default), after
    the `first` matching calls, which always fire (so that a short run surely sees the fault);
    `count` caps the injections of this rule.
    """

    name: str
    operation: str
    error: str | None = None
    crash: bool = False
    applied: bool = False
    functions: tuple[str, ...] = ()
    rate: float = 1.0
    first: int = 0
    count: int | None = None
    nth_in_invocation: int | None = None
    when: Callable[[Mapping[str, Any]], bool] | None = None

    def __post_init__(self) -> None:
        if self.crash == (self.error is not None):
            raise ValueError(f"{self.name}: give either an error code or crash=True")
        if self.error is not None and self.error not in ERROR_STATUS:
            raise ValueError(f"{self.name}: unknown error code {self.error!r}")
        if not 0 <= self.rate <= 1:
            raise ValueError(f"{self.name}: rate must be between 0 and 1")
        if self.crash and self.applied:
            raise ValueError(f"{self.name}: a crash before the call cannot be applied")

    def matches(self, function: str, operation: str) -> bool:
        return (not self.functions or function in self.functions) and fnmatch.fnmatchcase(
            operation, self.operation
        )


@dataclass
class Invocation:
    """One handler invocation: what the hooks see of it, and what the ledger keeps."""

    id: int
    function: str
    records: Mapping[str, str]  # its SQS batch: message id → body (empty for other events)
    body: str | None = None  # an HTTP event's body (what a webhook said)
    matched: Counter[str] = field(default_factory=Counter)  # calls per rule name
    started_at: float = field(default_factory=time.time)
    ended_at: float | None = None
    outcome: str = "running"  # ok | error | crashed
    result: Any = None
    sent: list[str] = field(default_factory=list)  # message ids of its SendMessage calls


@dataclass(frozen=True)
class InjectedFault:
    rule: str
    function: str
    operation: str
    invocation: int
    record_ids: tuple[str, ...]
    key: str | None  # the item key or queue the call was about, for the failure report


@dataclass(frozen=True)
class SentMessage:
    message_id: str
    function: str
    invocation: int
    body: str
    delay_seconds: int


# Where `before-parameter-build` leaves the handler's parameters for the later hooks: botocore
# passes the same request context to every hook of one call.
_PARAMS: Final = "devstack_api_params"
_current: ContextVar[Invocation | None] = ContextVar("devstack_invocation", default=None)


class AwsFaults:
    """The rules in force and the ledger of what they did; one per process (FAULTS)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._rules: tuple[AwsFault, ...] = ()
        self._rng = random.Random(0)
        self._injected_per_rule: Counter[str] = Counter()
        self._ids = itertools.count(1)
        # The ledger is kept only between configure() and clear(): `make run` keeps none.
        self.recording = False
        self.invocations: list[Invocation] = []
        self.injected: list[InjectedFault] = []
        self.sent: list[SentMessage] = []

    def configure(self, rules: Sequence[AwsFault] = (), *, seed: int = 0) -> None:
        """Replaces the rules and starts (or goes on) recording the ledger; the same seed
        repeats the same draws."""
        names = [rule.name for rule in rules]
        if len(set(names)) != len(names):
            raise ValueError(f"rule names must be unique: {names}")
        with self._lock:
            self._rules = tuple(rules)
            self._rng = random.Random(seed)
            self._injected_per_rule.clear()
            self.recording = True

    def clear(self) -> None:
        """No rules, an empty ledger, no recording."""
        with self._lock:
            self._rules = ()
            self.recording = False
            self._injected_per_rule.clear()
            self.invocations.clear()
            self.injected.clear()
            self.sent.clear()

    def injected_count(self, rule: str) -> int:
        with self._lock:
            return self._injected_per_rule[rule]

    # ---- the ledger's intake, from devstack.functions and the hooks

    def begin(self, function: str, event: Any) -> Invocation:
        batch = event.get("Records") if isinstance(event, dict) else None
        records = {
            str(r["messageId"]): str(r.get("body", ""))
            for r in batch or ()
            if isinstance(r, dict) and "messageId" in r
        }
        body = event.get("body") if isinstance(event, dict) else None
        with self._lock:
            current = Invocation(
                next(self._ids), function, records, body if isinstance(body, str) else None
            )
            if self.recording:
                self.invocations.append(current)
        return current

    def _decide(
        self, current: Invocation, operation: str, params: Mapping[str, Any], *, after: bool
    ) -> AwsFault | None:
        with self._lock:
            for rule in self._rules:
                if rule.applied != after or not rule.matches(current.function, operation):
                    continue
                if rule.when is not None and not rule.when(params):
                    continue
                current.matched[rule.name] += 1
                if rule.nth_in_invocation not in (None, current.matched[rule.name]):
                    continue
                if rule.count is not None and self._injected_per_rule[rule.name] >= rule.count:
                    continue
                certain = self._injected_per_rule[rule.name] < rule.first
                if not certain and rule.rate < 1 and self._rng.random() >= rule.rate:
                    continue
                self._injected_per_rule[rule.name] += 1
                self.injected.append(
                    InjectedFault(
                        rule.name,
                        current.function,
                        operation,
                        current.id,
                        tuple(current.records),
                        _key_of(params),
                    )
                )
                return rule
        return None

    def _record_sent(self, current: Invocation, params: Mapping[str, Any], parsed: Any) -> None:
        message_id = parsed.get("MessageId") if isinstance(parsed, dict) else None
        if not message_id or not self.recording:
            return
        with self._lock:
            current.sent.append(str(message_id))
            self.sent.append(
                SentMessage(
                    str(message_id),
                    current.function,
                    current.id,
                    str(params.get("MessageBody", "")),
                    int(params.get("DelaySeconds", 0)),
                )
            )

    # ---- the hooks

    def before_call(self, event_name: str, context: Mapping[str, Any], **_: Any) -> None:
        current = _current.get()
        if current is None:
            return
        operation = event_name.removeprefix("before-call.")
        params = context.get(_PARAMS) or {}
        rule = self._decide(current, operation, params, after=False)
        if rule is None:
            return
        if rule.crash:
            raise SimulatedCrash(f"{rule.name}: {current.function} died before {operation}")
        raise _client_error(rule, operation)

    def after_call(
        self, event_name: str, parsed: Any, context: Mapping[str, Any], **_: Any
    ) -> None:
        current = _current.get()
        if current is None:
            return
        operation = event_name.removeprefix("after-call.")
        params = context.get(_PARAMS) or {}
        if operation == "sqs.SendMessage" and not (parsed or {}).get("Error"):
            self._record_sent(current, params, parsed)
        rule = self._decide(current, operation, params, after=True)
        if rule is not None:
            raise _client_error(rule, operation)

    @staticmethod
    def keep_params(params: Mapping[str, Any], context: dict[str, Any], **_: Any) -> None:
        """`before-parameter-build`: keep the handler's own parameters for `after-call`."""
        if _current.get() is not None:
            context[_PARAMS] = dict(params)


FAULTS: Final = AwsFaults()
_installed = threading.Lock()
_HANDLERS: Final = (
    ("before-parameter-build", AwsFaults.keep_params),
    ("before-call", FAULTS.before_call),
    ("after-call", FAULTS.after_call),
)


def install() -> AwsFaults:
    """Puts the hooks on every botocore session of this process (idempotent); returns FAULTS."""
    with _installed:
        builtin = botocore.handlers.BUILTIN_HANDLERS
        for handler in _HANDLERS:
            if handler not in builtin:
                builtin.append(handler)
                if boto3.DEFAULT_SESSION is not None:
                    boto3.DEFAULT_SESSION.events.register(*handler)
    return FAULTS


@contextlib.contextmanager
def invocation(function: str, event: Any) -> Iterator[Invocation]:
    """Marks the calls made inside the block as `function`'s; records how the block ended
    (the block sets `result`)."""
    current = FAULTS.begin(function, event)
    token = _current.set(current)
    try:
        yield current
        current.outcome = "ok"
    except SimulatedCrash:
        current.outcome = "crashed"
        raise
    except BaseException:
        current.outcome = "error"
        raise
    finally:
        current.ended_at = time.time()
        _current.reset(token)


def _key_of(params: Mapping[str, Any]) -> str | None:
    item = params.get("Item") or params.get("Key") or {}
    if isinstance(item, dict) and isinstance(item.get("pk"), dict):
        return str(item["pk"].get("S"))
    for name in ("QueueUrl", "SecretId"):
        if name in params:
            return str(params[name])
    return None


def _client_error(rule: AwsFault, operation: str) -> ClientError:
    assert rule.error is not None
    status = ERROR_STATUS[rule.error]
    response: Any = {
        "Error": {"Code": rule.error, "Message": f"injected by devstack ({rule.name})"},
        "ResponseMetadata": {"HTTPStatusCode": status},  # what botocore's parser keeps
    }
    return ClientError(response, operation.partition(".")[2])
