"""Secrets from Secrets Manager or SSM Parameter Store, fetched once and cached per process.

A reference is an SSM parameter name when it starts with "/" or "ssm:" (SecureString,
decrypted), otherwise a Secrets Manager id or ARN. Values are never logged.

The cache is this module's own, not Powertools' parameters utility: that one imports boto3
(and with it s3transfer) into the cold start of every function that reads a secret, the
webhook and the worker included, for one API call every few minutes (warmgate.adapters.aws).
"""

from __future__ import annotations

import functools
import time
from typing import TYPE_CHECKING

from warmgate.adapters import aws

if TYPE_CHECKING:
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_ssm import SSMClient

SSM_PREFIX = "ssm:"

_values: dict[str, tuple[str, float]] = {}  # reference → (value, monotonic time it was read)


def fetch_secret(reference: str, *, max_age: int) -> str:
    """The secret's current value, read at most once per `max_age` seconds per process."""
    cached = _values.get(reference)
    now = time.monotonic()
    if cached is not None and now - cached[1] < max_age:
        return cached[0]
    value = _read(reference)
    if not isinstance(value, str) or not value:
        raise ValueError(f"secret {reference!r} is empty or not a string")
    _values[reference] = (value, now)
    return value


def forget_secrets() -> None:
    """Drop every cached value: the next fetch of each reference reads its store."""
    _values.clear()


def reset_secrets() -> None:
    """Drop the cached values and clients too: for a process that moves to another AWS
    endpoint (the local stack, started again)."""
    forget_secrets()
    _ssm.cache_clear()
    _secrets_manager.cache_clear()


def _read(reference: str) -> object:
    if reference.startswith(SSM_PREFIX) or reference.startswith("/"):
        name = reference.removeprefix(SSM_PREFIX)
        return _ssm().get_parameter(Name=name, WithDecryption=True)["Parameter"].get("Value")
    return _secrets_manager().get_secret_value(SecretId=reference).get("SecretString")


# Made on first use, then kept: most invocations read the cached value and never get here.
@functools.cache
def _ssm() -> SSMClient:
    return aws.client("ssm")


@functools.cache
def _secrets_manager() -> SecretsManagerClient:
    return aws.client("secretsmanager")
