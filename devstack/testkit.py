"""One test kit for tests/, bench/ and devstack/: a handler module imported fresh, a Lambda
context, an environment applied for a block, and moto's DynamoDB made as atomic as DynamoDB.

Light to import (moto is imported only when its patch is entered), so the unit tier can use it.
"""

from __future__ import annotations

import contextlib
import importlib.util
import itertools
import os
import threading
import time
import uuid
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType
from typing import Any, Final

ROOT: Final = Path(__file__).resolve().parents[1]
ACCOUNT_ID: Final = "123456789012"  # moto's default account: the queue URLs and ARNs it makes

_loaded = itertools.count()


def import_fresh(path: Path, module_name: str) -> ModuleType:
    """The file as a new module object, never registered in sys.modules: its globals (settings,
    clients) bind to the environment of this moment and are shared with no other import."""
    spec = importlib.util.spec_from_file_location(module_name, path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def load_function(name: str) -> ModuleType:
    """functions/<name>/app.py imported fresh, as Lambda does on a cold start: set the
    environment first. A unique module name per load, so two instances are told apart in
    tracebacks and loggers (the warmgate package itself is shared, as in one Lambda process)."""
    return import_fresh(
        ROOT / "functions" / name / "app.py", f"functions.{name}.app_{next(_loaded)}"
    )


class LambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read. The
    remaining time counts down from `remaining_ms` (default: Lambda's longest timeout)."""

    def __init__(
        self,
        function_name: str = "warmgate-test",
        *,
        remaining_ms: int = 900_000,
        memory_mb: int = 512,
        region: str = "eu-west-1",
    ) -> None:
        now = datetime.now(UTC)
        self.function_name = function_name
        self.function_version = "$LATEST"
        self.invoked_function_arn = f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{function_name}"
        self.memory_limit_in_mb = memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{function_name}"
        self.log_stream_name = f"{now:%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + remaining_ms / 1000

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


@contextlib.contextmanager
def applied_environment(changes: Mapping[str, str | None]) -> Iterator[None]:
    """`changes` in os.environ (None = unset) while the block runs; the previous values after."""
    previous = {name: os.environ.get(name) for name in changes}
    try:
        _set_environ(changes)
        yield
    finally:
        _set_environ(previous)


def _set_environ(values: Mapping[str, str | None]) -> None:
    for name, value in values.items():
        if value is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = value


# DynamoDBBackend methods that check a condition and then write.
CONDITIONAL_WRITES: Final = ("put_item", "update_item", "delete_item", "transact_write_items")


@contextlib.contextmanager
def atomic_dynamodb_writes() -> Iterator[None]:
    """DynamoDB evaluates a condition and applies the write as one step (per item; a whole
    transaction at once). moto's backend has no lock, and its server is threaded, so two threads
    could both pass the same condition: serialise its conditional writes while this is open.
    Re-entrant, because a transaction writes through put_item / update_item.

    Transactions also go through `_transaction` instead of moto's own, whose rollback copies
    every table the transaction touches: O(table size) per call, 48 ms with 1,000 mailboxes,
    which a benchmark draining 1,000 campaigns would measure instead of warmgate."""
    from moto.dynamodb.models import DynamoDBBackend

    lock = threading.RLock()
    originals = {name: getattr(DynamoDBBackend, name) for name in CONDITIONAL_WRITES}
    replacements = {**originals, "transact_write_items": _transaction}
    for name, implementation in replacements.items():

        def locked(self: Any, *args: Any, _run: Any = implementation, **kwargs: Any) -> Any:
            with lock:
                return _run(self, *args, **kwargs)

        setattr(DynamoDBBackend, name, locked)
    try:
        yield
    finally:
        for name, original in originals.items():
            setattr(DynamoDBBackend, name, original)


def _transaction(backend: Any, transact_items: list[dict[str, Any]]) -> None:
    """TransactWriteItems as DynamoDB runs it: every condition checked first, nothing written
    unless all hold (CancellationReasons as moto reports them, the item with ALL_OLD); then
    each Put, Update and Delete applied. Called under atomic_dynamodb_writes' lock."""
    from moto.dynamodb.exceptions import (
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )

    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    operations: list[tuple[str, dict[str, Any], dict[str, Any]]] = []
    reasons: list[tuple[str | None, str | None, dict[str, Any] | None]] = []
    targets: set[tuple[str, str]] = set()
    for entry in transact_items:
        if len(entry) != 1:
            raise TransactWriteSingleOpException
        (kind, operation), *_ = entry.items()
        table = backend.get_table(operation["TableName"])
        if kind == "Put":
            attributes = operation["Item"]
            key = {table.hash_key_attr: attributes[table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = attributes[table.range_key_attr]
        else:
            key = operation["Key"]
        target = (operation["TableName"], str(sorted(key.items())))
        if target in targets:
            raise MultipleTransactionsException()
        targets.add(target)
        operations.append((kind, operation, key))
        reasons.append(_condition_check(backend, operation, key))
    if any(code is not None for code, _, _ in reasons):
        raise TransactionCanceledException(reasons)
    for kind, operation, key in operations:
        _apply(backend, kind, operation, key)


def _condition_check(
    backend: Any, operation: dict[str, Any], key: dict[str, Any]
) -> tuple[str | None, str | None, dict[str, Any] | None]:
    """One CancellationReason: (None, None, None) when the condition holds."""
    from moto.dynamodb.comparisons import get_filter_expression

    current = backend.get_item(operation["TableName"], key)
    condition = operation.get("ConditionExpression")
    if condition is None or get_filter_expression(
        condition,
        operation.get("ExpressionAttributeNames"),
        operation.get("ExpressionAttributeValues"),
    ).expr(current):
        return None, None, None
    old = operation.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current
    item = current.to_json()["Attributes"] if old else None
    return "ConditionalCheckFailed", "The conditional request failed", item


def _apply(backend: Any, kind: str, operation: dict[str, Any], key: dict[str, Any]) -> None:
    name = operation["TableName"]
    if kind == "Put":
        backend.put_item(name, operation["Item"])
    elif kind == "Update":
        backend.update_item(
            name,
            key,
            update_expression=operation["UpdateExpression"],
            expression_attribute_names=operation.get("ExpressionAttributeNames"),
            expression_attribute_values=operation.get("ExpressionAttributeValues"),
        )
    elif kind == "Delete":
        backend.delete_item(name, key)
