"""Local AWS for the stack: moto on 127.0.0.1, boto3 clients for it, and the template's tables,
queues, secrets and event buses created (or found) in it, with what `!Ref`/`!GetAtt` of each
give locally.

Never the developer's AWS account: explicit dummy credentials and the local endpoint only.
"""

from __future__ import annotations

import contextlib
import logging
import re
import secrets
import socket
import string
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Final

import boto3
import httpx
from moto.server import ThreadedMotoServer

from devstack.errors import StackError, TemplateError
from devstack.template import create_queues, create_table
from devstack.testkit import ACCOUNT_ID, atomic_dynamodb_writes

REGION: Final = "us-east-1"  # sam local's default
NAME_PREFIX: Final = "warmgate"  # warmgate-WorkQueue, warmgate-MailboxTable (as in env.json)
SANDBOX_API_KEY: Final = "sandbox-key"  # the sandbox's default key
# Template parameters that name a secret the deployer creates by hand, and its local value.
SECRET_PARAMETERS: Final = {"MailiveryApiKeySecret": SANDBOX_API_KEY}
EVENT_BUS: Final = "AWS::Events::EventBus"


@dataclass(frozen=True)
class LocalResource:
    """What `!Ref` and `!GetAtt` of one template resource give locally."""

    logical_id: str
    type: str
    ref: str
    attributes: Mapping[str, str] = field(default_factory=dict)


class _MotoServer(ThreadedMotoServer):
    # werkzeug answers a taken port with sys.exit(1) inside the server thread, which would leave
    # start() waiting forever for "ready": record the failure and release the wait instead.
    error: BaseException | None = None

    def _server_entry(self) -> None:
        try:
            super()._server_entry()
        except BaseException as exc:
            self.error = exc
            self._server_ready_event.set()


class MotoEndpoint:
    """moto on 127.0.0.1 in this process; `port=0` picks a free one."""

    def __init__(self, port: int = 0) -> None:
        self._port = free_port("moto", port)
        self._server = _MotoServer(ip_address="127.0.0.1", port=self._port, verbose=False)
        self._werkzeug_level: int | None = None
        self._patches = contextlib.ExitStack()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> MotoEndpoint:
        # moto's request handler logs every call through werkzeug's logger; at 10 polls a second
        # that drowns the handlers' logs.
        werkzeug_log = logging.getLogger("werkzeug")
        self._werkzeug_level = werkzeug_log.level
        werkzeug_log.setLevel(logging.WARNING)
        # DynamoDB's write atomicity, and transactions that do not copy every table they touch
        # (the table grows with every scenario run against the stack).
        self._patches.enter_context(atomic_dynamodb_writes())
        self._server.start()
        if self._server.error is not None:
            raise StackError(port_message("moto", self._port)) from self._server.error
        # moto's backends are process-wide: start from an empty account every time.
        httpx.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()
        return self

    def stop(self) -> None:
        if self._server.error is None:
            with contextlib.suppress(Exception):
                self._server.stop()
        if self._werkzeug_level is not None:
            logging.getLogger("werkzeug").setLevel(self._werkzeug_level)
        self._patches.close()


def free_port(name: str, port: int) -> int:
    """`port` if it can be bound on 127.0.0.1 (a free one for 0), else StackError naming it."""
    try:
        with socket.create_server(("127.0.0.1", port)) as probe:
            return int(probe.getsockname()[1])
    except OSError as exc:
        raise StackError(port_message(name, port)) from exc


def port_message(name: str, port: int) -> str:
    return (
        f"port {port} ({name}) on 127.0.0.1 is already in use: stop what listens there "
        f"(e.g. `lsof -i :{port}`) or choose another port (0 = any free port)"
    )


class LocalAws:
    """boto3 clients for the local endpoint, and the template's resources in it."""

    def __init__(self, endpoint_url: str, region: str = REGION) -> None:
        self.endpoint_url = endpoint_url
        self.region = region
        # Explicit dummy credentials and endpoint: never the developer's profile or real AWS.
        self._session = boto3.session.Session(
            aws_access_key_id="local",
            aws_secret_access_key="local",  # noqa: S106 - moto takes any
            region_name=region,
        )

    def client(self, service: str) -> Any:
        return self._session.client(service, endpoint_url=self.endpoint_url)  # type: ignore[call-overload]

    def _data_clients(self) -> tuple[Any, Any, Any]:
        """DynamoDB, SQS and Secrets Manager: the services the template's resources live in."""
        return self.client("dynamodb"), self.client("sqs"), self.client("secretsmanager")

    def provision(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, str],
        *,
        secret_values: Mapping[str, str],
        visibility_timeout_seconds: int | None = None,
    ) -> dict[str, LocalResource]:
        """Creates the template's tables, queues and secrets; returns every resource's Ref."""
        resources: Mapping[str, Any] = template["Resources"]
        local: dict[str, LocalResource] = {}
        dynamodb, sqs, secretsmanager = self._data_clients()
        for logical_id, definition in resources.items():
            if definition.get("Type") == "AWS::DynamoDB::Table":
                name = create_table(dynamodb, logical_id, local_name(logical_id))
                local[logical_id] = self._table(dynamodb, logical_id, name)
        for logical_id, url in create_queues(sqs, NAME_PREFIX, dict(template)).items():
            if visibility_timeout_seconds is not None:
                sqs.set_queue_attributes(
                    QueueUrl=url,
                    Attributes={"VisibilityTimeout": str(visibility_timeout_seconds)},
                )
            local[logical_id] = self._queue(sqs, logical_id, url)
        for parameter, value in SECRET_PARAMETERS.items():
            if parameter in parameters:
                secretsmanager.create_secret(Name=parameters[parameter], SecretString=value)
        for logical_id, definition in resources.items():
            if definition.get("Type") == "AWS::SecretsManager::Secret":
                value = secret_values.get(logical_id) or _secret_value(logical_id, definition)
                arn = secretsmanager.create_secret(
                    Name=_secret_name(logical_id), SecretString=value
                )["ARN"]
                local[logical_id] = LocalResource(logical_id, definition["Type"], arn)
        events = self.client("events")
        for logical_id, definition in resources.items():
            if definition.get("Type") == EVENT_BUS and _condition_holds(
                template, parameters, definition
            ):
                name = local_name(logical_id)
                arn = events.create_event_bus(Name=name)["EventBusArn"]
                local[logical_id] = LocalResource(logical_id, EVENT_BUS, name, {"Arn": arn})
        return self._with_other_refs(resources, local)

    def attach(
        self, template: Mapping[str, Any], parameters: Mapping[str, str]
    ) -> dict[str, LocalResource]:
        """Finds the resources a running stack created at this endpoint (by their local names)."""
        resources: Mapping[str, Any] = template["Resources"]
        local: dict[str, LocalResource] = {}
        dynamodb, sqs, secretsmanager = self._data_clients()
        try:
            for logical_id, definition in resources.items():
                kind = definition.get("Type")
                if kind == "AWS::DynamoDB::Table":
                    local[logical_id] = self._table(dynamodb, logical_id, local_name(logical_id))
                elif kind == "AWS::SQS::Queue":
                    url = sqs.get_queue_url(QueueName=local_name(logical_id))["QueueUrl"]
                    local[logical_id] = self._queue(sqs, logical_id, url)
                elif kind == "AWS::SecretsManager::Secret":
                    arn = secretsmanager.describe_secret(SecretId=_secret_name(logical_id))["ARN"]
                    local[logical_id] = LocalResource(logical_id, kind, arn)
                elif kind == EVENT_BUS and _condition_holds(template, parameters, definition):
                    name = local_name(logical_id)
                    arn = self.client("events").describe_event_bus(Name=name)["Arn"]
                    local[logical_id] = LocalResource(logical_id, kind, name, {"Arn": arn})
        except Exception as exc:
            raise StackError(
                f"no local stack at {self.endpoint_url} ({type(exc).__name__}: {exc}); "
                "start one with `make run`, or leave out --endpoint-url"
            ) from exc
        return self._with_other_refs(resources, local)

    @staticmethod
    def _table(dynamodb: Any, logical_id: str, name: str) -> LocalResource:
        table = dynamodb.describe_table(TableName=name)["Table"]
        attributes = {"Arn": table["TableArn"]}
        if "LatestStreamArn" in table:
            attributes["StreamArn"] = table["LatestStreamArn"]
        return LocalResource(logical_id, "AWS::DynamoDB::Table", name, attributes)

    @staticmethod
    def _queue(sqs: Any, logical_id: str, url: str) -> LocalResource:
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        attributes = {"Arn": arn, "QueueName": url.rsplit("/", 1)[1], "QueueUrl": url}
        return LocalResource(logical_id, "AWS::SQS::Queue", url, attributes)

    def _with_other_refs(
        self, resources: Mapping[str, Any], local: dict[str, LocalResource]
    ) -> dict[str, LocalResource]:
        """Refs for the resource types with a plain local name; anything else stays unknown,
        so an environment variable pointing at it fails with a clear TemplateError."""
        arn = f"arn:aws:{{service}}:{self.region}:{ACCOUNT_ID}:{{rest}}"
        for logical_id, definition in resources.items():
            kind = definition.get("Type")
            if logical_id in local:
                continue
            name = local_name(logical_id)
            if kind == "AWS::Serverless::Function":
                fn_arn = arn.format(service="lambda", rest=f"function:{logical_id}")
                local[logical_id] = LocalResource(logical_id, kind, logical_id, {"Arn": fn_arn})
            elif kind == "AWS::Logs::LogGroup":
                group = f"/aws/lambda/{name}"
                group_arn = arn.format(service="logs", rest=f"log-group:{group}:*")
                local[logical_id] = LocalResource(logical_id, kind, group, {"Arn": group_arn})
            elif kind == "AWS::Serverless::HttpApi":
                local[logical_id] = LocalResource(logical_id, kind, "local")
            elif kind == "AWS::Serverless::LayerVersion":
                layer_arn = arn.format(service="lambda", rest=f"layer:{name}:1")
                local[logical_id] = LocalResource(logical_id, kind, layer_arn)
        return local


def _condition_holds(
    template: Mapping[str, Any], parameters: Mapping[str, str], definition: Mapping[str, Any]
) -> bool:
    """Whether a resource with a `Condition` is part of the stack for these parameters."""
    condition = definition.get("Condition")
    if condition is None:
        return True
    from devstack.environment import Intrinsics  # it builds on this module

    return Intrinsics(template, parameters, {}).condition(str(condition), "Condition")


def local_name(logical_id: str) -> str:
    """The local name of a template resource: WorkQueue → warmgate-WorkQueue (the queue names
    create_queues gives with NAME_PREFIX)."""
    return f"{NAME_PREFIX}-{logical_id}"


def _secret_name(logical_id: str) -> str:
    """WebhookTokenSecret → warmgate/local/webhook-token (the name env.json uses)."""
    base = logical_id.removesuffix("Secret") or logical_id
    return f"{NAME_PREFIX}/local/" + re.sub(r"(?<!^)(?=[A-Z])", "-", base).lower()


def _secret_value(logical_id: str, definition: Mapping[str, Any]) -> str:
    props = definition.get("Properties") or {}
    if isinstance(props.get("SecretString"), str):
        return str(props["SecretString"])
    generate = props.get("GenerateSecretString") or {}
    if "SecretStringTemplate" in generate:
        raise TemplateError(
            f"{logical_id}.Properties.GenerateSecretString.SecretStringTemplate: "
            "JSON secrets are not generated locally"
        )
    alphabet = string.ascii_letters + string.digits
    if not generate.get("ExcludePunctuation"):
        alphabet += "!#$%&()*+,-.:;<=>?@[]^_{|}~"
    length = generate.get("PasswordLength", 32)
    return "".join(secrets.choice(alphabet) for _ in range(int(length)))
