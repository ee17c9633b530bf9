"""AWS clients made by botocore directly, from one session per process.

The functions use only the client API, which is botocore's. `import boto3` adds its resource
layer and, through `boto3.compat`, s3transfer: about half of the webhook's cold start on the
benchmark's machine (`make bench`, cold_init), for nothing the functions call. Operator tools
(warmgate.ops) and tests may still use boto3; both make clients of the same kind.

The session reads what boto3's default session would: AWS_DEFAULT_REGION, the credential
chain, and AWS_ENDPOINT_URL (the local stack's moto).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, overload

from botocore.session import Session, get_session

if TYPE_CHECKING:
    from botocore.client import BaseClient
    from botocore.config import Config
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_ssm import SSMClient

_session: Session | None = None


def session() -> Session:
    """The process's botocore session: service models and credentials are loaded once."""
    global _session
    if _session is None:
        _session = get_session()
    return _session


@overload
def client(service_name: Literal["dynamodb"], config: Config | None = None) -> DynamoDBClient: ...
@overload
def client(service_name: Literal["sqs"], config: Config | None = None) -> SQSClient: ...
@overload
def client(
    service_name: Literal["secretsmanager"], config: Config | None = None
) -> SecretsManagerClient: ...
@overload
def client(service_name: Literal["ssm"], config: Config | None = None) -> SSMClient: ...
def client(service_name: str, config: Config | None = None) -> BaseClient:
    return session().create_client(service_name, config=config)
