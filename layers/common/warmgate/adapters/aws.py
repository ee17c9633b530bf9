"""AWS clients made by botocore directly, from one session per process.

The functions use only the client API, which is botocore's. `import boto3` adds its resource
layer and, through `boto3.compat`, s3transfer: for nothing the functions call, a tenth of the
webhook's cold start on the benchmark's machine (`make bench`, cold_init before and after).
The operator CLI (ops/, warmgate_ops) and tests may still use boto3; both make clients of the
same kind.

The session reads what boto3's default session would: AWS_DEFAULT_REGION, the credential
chain, and AWS_ENDPOINT_URL (the local stack's moto).

Every client skips botocore's client-side parameter validation: the requests are built by this
code (and tested), the services validate them again, and the walk through every attribute of
a mailbox record cost about a tenth of a worker message's CPU (`make bench`, warm_cpu).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Literal, overload

from botocore.config import Config
from botocore.session import Session, get_session

if TYPE_CHECKING:
    from botocore.client import BaseClient
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_events import EventBridgeClient
    from mypy_boto3_secretsmanager import SecretsManagerClient
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_ssm import SSMClient

CLIENT_CONFIG = Config(parameter_validation=False)

_session: Session | None = None


def session() -> Session:
    """The process's botocore session: service models and credentials are loaded once."""
    global _session
    if _session is None:
        _session = get_session()
    return _session


def reset_session() -> None:
    """Forget the session (local stacks and tests): the next client gets a new one, with the
    credentials, endpoint and event handlers (moto's) of the environment as it is then."""
    global _session
    _session = None


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
@overload
def client(service_name: Literal["events"], config: Config | None = None) -> EventBridgeClient: ...
def client(service_name: str, config: Config | None = None) -> BaseClient:
    """A client of the process's session: CLIENT_CONFIG, then `config` over it."""
    merged = CLIENT_CONFIG if config is None else CLIENT_CONFIG.merge(config)
    return session().create_client(service_name, config=merged)
