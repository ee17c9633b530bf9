"""AWS API calls counted with botocore event hooks: per service and operation, and for DynamoDB
the read and write units each call consumes by DynamoDB's published sizing rules.

The hooks go on a botocore session (the functions make their clients from
`warmgate.adapters.aws.session()`); a client copies its session's hooks when it is created, so only
clients made while an `AwsCalls` is open are counted: open it before loading the handlers.

Capacity is computed here, not read from the service: moto answers ReturnConsumedCapacity with
a constant, whatever the item. The rules (on-demand and provisioned alike): a strongly
consistent read takes 1 RRU per 4 KB of each item read, rounded up per item (at least 1, found
or not); a write takes 1 WRU per 1 KB of the item written, rounded up (at least 1, also when its
condition fails); a transactional write takes twice that per item. Item size: attribute names
plus values (a string's UTF-8 bytes, a number's ~1 byte per two significant digits + 1, 1 byte
for a boolean or null, 3 bytes and 1 per element for a list or map, plus their contents). For an
update, the size written is taken from the request's values plus the key (the budget's item is
tens of bytes: 1 WRU either way).
"""

from __future__ import annotations

import math
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from warmgate.adapters import aws

READ_UNIT_BYTES = 4096
WRITE_UNIT_BYTES = 1024


@dataclass
class CallLog:
    """What one scope (a function, a path) made: calls by "service.Operation", and units."""

    calls: Counter[str] = field(default_factory=Counter)
    read_units: float = 0.0
    write_units: float = 0.0

    def count(self, service: str, operation: str | None = None) -> int:
        prefix = f"{service}." if operation is None else f"{service}.{operation}"
        return sum(n for name, n in self.calls.items() if name.startswith(prefix))

    def add(self, other: CallLog) -> None:
        self.calls.update(other.calls)
        self.read_units += other.read_units
        self.write_units += other.write_units


class AwsCalls:
    """Counts every API call of clients made from `session` while open, per scope.

    `scope(name)` attributes the calls made inside it (this thread) to `name`; calls outside any
    scope go to "other". Thread-safe: the local stack's pollers and API run in threads."""

    def __init__(self, session: Any | None = None) -> None:
        """`session`: the botocore session whose clients to count; by default warmgate's as it
        is when the count starts (a local stack starts with a fresh one)."""
        self._given = session
        self._session: Any = None
        self._lock = threading.Lock()
        self._local = threading.local()
        self.logs: dict[str, CallLog] = {}
        self._handlers: list[tuple[str, Callable[..., Any]]] = [
            ("before-parameter-build", self._keep_params),
            ("after-call", self._after_call),
        ]

    def __enter__(self) -> AwsCalls:
        self._session = self._given if self._given is not None else aws.session()
        for event, handler in self._handlers:
            self._session.register(event, handler)
        return self

    def __exit__(self, *exc_info: object) -> None:
        for event, handler in self._handlers:
            self._session.unregister(event, handler)

    @contextmanager
    def scope(self, name: str) -> Iterator[CallLog]:
        """Attribute this thread's calls to `name` while inside; yields a log of just these."""
        previous = getattr(self._local, "scopes", ())
        mine = CallLog()
        self._local.scopes = (*previous, mine)
        try:
            yield mine
        finally:
            self._local.scopes = previous
            with self._lock:
                self.logs.setdefault(name, CallLog()).add(mine)

    def total(self) -> CallLog:
        with self._lock:
            total = CallLog()
            for log in self.logs.values():
                total.add(log)
            return total

    def _record(self, model: Any, params: Mapping[str, Any], parsed: Mapping[str, Any]) -> None:
        service = model.service_model.service_name
        name = f"{service}.{model.name}"
        reads, writes = (
            dynamodb_units(model.name, params, parsed) if service == "dynamodb" else (0.0, 0.0)
        )
        scopes = getattr(self._local, "scopes", ())
        targets = list(scopes) if scopes else [self._unscoped()]
        for log in targets:
            log.calls[name] += 1
            log.read_units += reads
            log.write_units += writes

    def _unscoped(self) -> CallLog:
        with self._lock:
            return self.logs.setdefault("other", CallLog())

    @staticmethod
    def _keep_params(params: Any, context: Any, **_: Any) -> None:
        # after-call gets the parsed answer but not the API parameters: keep them for it.
        context[_PARAMS] = params

    def _after_call(self, model: Any, parsed: Any, context: Any, **_: Any) -> None:
        # Answers with an error (a refused condition) come here too: DynamoDB bills them.
        self._record(model, context.get(_PARAMS, {}), parsed)


_PARAMS = "bench.aws_calls.params"


# --------------------------------------------------------------------------- DynamoDB units


def attribute_size(value: Mapping[str, Any]) -> int:
    (kind, content), *_ = value.items()
    if kind == "S":
        return len(str(content).encode())
    if kind == "N":
        digits = str(content).lstrip("-").replace(".", "").lstrip("0") or "0"
        return (len(digits) + 1) // 2 + 1
    if kind == "B":
        return len(content)
    if kind in ("BOOL", "NULL"):
        return 1
    if kind == "L":
        return 3 + sum(1 + attribute_size(v) for v in content)
    if kind == "M":
        return 3 + sum(1 + len(k.encode()) + attribute_size(v) for k, v in content.items())
    if kind in ("SS", "NS", "BS"):
        return sum(attribute_size({kind[0]: v}) for v in content)
    raise ValueError(f"unknown attribute type {kind!r}")


def item_size(item: Mapping[str, Any]) -> int:
    return sum(len(name.encode()) + attribute_size(value) for name, value in item.items())


def read_units(item: Mapping[str, Any] | None) -> int:
    return max(1, math.ceil(item_size(item or {}) / READ_UNIT_BYTES))


def write_units(item: Mapping[str, Any] | None) -> int:
    return max(1, math.ceil(item_size(item or {}) / WRITE_UNIT_BYTES))


def _written(request: Mapping[str, Any]) -> Mapping[str, Any]:
    """The item a Put writes, or for an Update/Delete its key and the values it sets."""
    if "Item" in request:
        return dict(request["Item"])
    values = request.get("ExpressionAttributeValues", {})
    return {**request.get("Key", {}), **{name.lstrip(":"): v for name, v in values.items()}}


def dynamodb_units(
    operation: str, params: Mapping[str, Any], parsed: Mapping[str, Any]
) -> tuple[float, float]:
    """(RRU, WRU) one DynamoDB call consumes; eventually consistent reads count half."""
    if operation == "GetItem":
        factor = 1.0 if params.get("ConsistentRead") else 0.5
        return factor * read_units(parsed.get("Item")), 0.0
    if operation == "BatchGetItem":
        units = 0.0
        for table, request in params.get("RequestItems", {}).items():
            factor = 1.0 if request.get("ConsistentRead") else 0.5
            found = {
                str(item.get("pk")): item for item in parsed.get("Responses", {}).get(table, [])
            }
            for key in request.get("Keys", []):
                units += factor * read_units(found.get(str(key.get("pk"))))
        return units, 0.0
    if operation in ("PutItem", "UpdateItem", "DeleteItem"):
        return 0.0, float(write_units(_written(params)))
    if operation == "TransactWriteItems":
        units = sum(
            2 * write_units(_written(next(iter(entry.values()))))
            for entry in params.get("TransactItems", [])
        )
        return 0.0, float(units)
    if operation in ("Scan", "Query"):
        factor = 1.0 if params.get("ConsistentRead") else 0.5
        size = sum(item_size(item) for item in parsed.get("Items", []))
        return factor * max(1, math.ceil(size / READ_UNIT_BYTES)), 0.0
    return 0.0, 0.0
