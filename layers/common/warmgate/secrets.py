"""Secrets from Secrets Manager or SSM Parameter Store, fetched once and cached (Powertools).

A reference is an SSM parameter name when it starts with "/" or "ssm:" (SecureString,
decrypted), otherwise a Secrets Manager id or ARN. Values are never logged.
"""

from __future__ import annotations

from aws_lambda_powertools.utilities import parameters

SSM_PREFIX = "ssm:"


def fetch_secret(reference: str, *, max_age: int) -> str:
    """The secret's current value, served from Powertools' in-memory cache for `max_age` s."""
    if reference.startswith(SSM_PREFIX) or reference.startswith("/"):
        name = reference.removeprefix(SSM_PREFIX)
        value = parameters.get_parameter(name, decrypt=True, max_age=max_age)
    else:
        value = parameters.get_secret(reference, max_age=max_age)
    if not isinstance(value, str) or not value:
        raise ValueError(f"secret {reference!r} is empty or not a string")
    return value
