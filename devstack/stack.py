"""The Docker-free local stack: template.yaml's functions, data and triggers in one process.

On 127.0.0.1, all read from the template itself:
- moto (`ThreadedMotoServer`) with the template's table(s), queues (+ redrive) and secrets;
- the API Gateway HTTP API stand-in (`devstack.api_gateway`) serving the `HttpApi` routes;
- one SQS poller per `SQS` event source (`devstack.sqs_poller`: BatchSize,
  ReportBatchItemFailures, "exception = whole batch fails"), one timer per `Schedule(V2)` event;
- the Mailivery sandbox, its webhooks pointed at the local webhook route and token.

How the handlers run, and why:
- Each `functions/<name>/app.py` is imported as its own module (`devstack_functions.<LogicalId>`),
  so the `app` modules never collide and each binds its own settings and clients.
- A handler reads its settings when it is imported, and `os.environ` is one per process. So each
  function's environment (template Globals + its Environment, intrinsics resolved; then
  `--env-vars`; then the local essentials below) is put into `os.environ` while that function
  is imported and again for each invocation, and the previous values are restored afterwards.
- Invocations are serialized process-wide: they share `os.environ` and the one Powertools Logger
  and Metrics of `warmgate.observability`; Lambda also gives one instance one event at a time.
  (Consequence: WorkerFunction's MaximumConcurrency 2 runs as 1 here.)
- Local essentials: WARMGATE_STAGE=local, MAILIVERY_BASE_URL=the sandbox, AWS_ENDPOINT_URL=moto
  (boto3 reads it when a client is created, i.e. at import), region, dummy credentials, and no
  AWS_PROFILE or service-specific endpoint variables, so nothing can reach a real AWS account.

Not emulated: IAM policies (moto does not enforce them), timeouts (a slow invocation is
reported, not killed), MaximumBatchingWindowInSeconds, event types other than HttpApi, SQS,
Schedule and ScheduleV2 (reported at start).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import logging
import os
import re
import secrets
import shlex
import socket
import string
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, Final, TextIO

import boto3
import httpx
from moto.server import ThreadedMotoServer

from devstack.api_gateway import HttpRoute, LocalHttpApi, RouteError, routes_from_template
from devstack.sandbox import MailiverySandbox
from devstack.sandbox_control import SandboxControl
from devstack.sqs_poller import poll_once
from devstack.template import ROOT, TEMPLATE, create_queues, create_table, load_template

__all__ = [
    "ACCOUNT_ID",
    "LOCAL_WEBHOOK_TOKEN",
    "FunctionLoadError",
    "FunctionSpec",
    "Intrinsics",
    "LocalAws",
    "LocalFunction",
    "LocalStack",
    "MotoEndpoint",
    "StackError",
    "StackOptions",
    "TemplateError",
    "function_environment",
    "function_specs",
    "load_env_vars",
    "parse_parameter_overrides",
    "resolve_parameters",
]

log = logging.getLogger("devstack")

ACCOUNT_ID: Final = "123456789012"  # moto's default account: the queue URLs and ARNs it makes
REGION: Final = "us-east-1"  # sam local's default
NAME_PREFIX: Final = "warmgate"  # warmgate-WorkQueue, warmgate-MailboxTable (as in env.json)
SANDBOX_API_KEY: Final = "sandbox-key"  # the sandbox's default key
# Fixed rather than generated: the sample events (events/webhook-*.json) carry this token, so
# `invoke WebhookFunction -e events/webhook-campaign-pending.json` is accepted. Local only.
LOCAL_WEBHOOK_TOKEN: Final = "local-webhook-token"  # noqa: S105 - local only, by design
WEBHOOK_FUNCTION: Final = "WebhookFunction"
WEBHOOK_TOKEN_SECRET: Final = "WebhookTokenSecret"  # noqa: S105 - a logical id
# Template parameters that name a secret the deployer creates by hand, and its local value.
SECRET_PARAMETERS: Final = {"MailiveryApiKeySecret": SANDBOX_API_KEY}
STOP_TIMEOUT_S: Final = 5.0

# One process, one os.environ, one Powertools Logger: one invocation at a time (module doc).
_INVOCATION_LOCK = threading.RLock()


class TemplateError(ValueError):
    """template.yaml holds something the local stack does not understand; names where."""


class StackError(RuntimeError):
    """The local stack cannot start or reach something (port taken, stack not running …)."""


class FunctionLoadError(StackError):
    """A handler module failed to import; names the function, the file and the exception."""


# --------------------------------------------------------------------------- the template


@dataclass(frozen=True)
class FunctionSpec:
    """One AWS::Serverless::Function with the template's Globals applied."""

    logical_id: str
    code_dir: Path
    handler: str  # "app.lambda_handler"
    timeout_s: int
    memory_mb: int
    variables: Mapping[str, Any]  # unresolved: literals and intrinsics
    layer_dirs: tuple[Path, ...]
    events: Mapping[str, Mapping[str, Any]]

    @property
    def handler_file(self) -> Path:
        module, _, _ = self.handler.rpartition(".")
        return self.code_dir / (module.replace(".", "/") + ".py")

    @property
    def handler_attribute(self) -> str:
        return self.handler.rpartition(".")[2]


def function_specs(template: Mapping[str, Any], root: Path = ROOT) -> dict[str, FunctionSpec]:
    """Every AWS::Serverless::Function, checked for what running it locally needs."""
    globals_ = (template.get("Globals") or {}).get("Function") or {}
    resources: Mapping[str, Any] = template.get("Resources") or {}
    specs = {}
    for logical_id, definition in resources.items():
        if definition.get("Type") != "AWS::Serverless::Function":
            continue
        own = definition.get("Properties") or {}
        props = {**globals_, **own}
        where = f"{logical_id}.Properties"
        if props.get("PackageType", "Zip") != "Zip" or "InlineCode" in props:
            raise TemplateError(f"{where}: only Zip functions with a local CodeUri run locally")
        runtime = props.get("Runtime", "")
        if not (isinstance(runtime, str) and runtime.startswith("python3")):
            raise TemplateError(f"{where}.Runtime: {runtime!r} is not a Python runtime")
        code_uri = props.get("CodeUri")
        if not isinstance(code_uri, str) or not (root / code_uri).is_dir():
            raise TemplateError(f"{where}.CodeUri: {code_uri!r} is not a local directory")
        handler = props.get("Handler")
        if not isinstance(handler, str) or "." not in handler:
            raise TemplateError(f"{where}.Handler: {handler!r} is not <module>.<function>")
        spec = FunctionSpec(
            logical_id=logical_id,
            code_dir=root / code_uri,
            handler=handler,
            timeout_s=_literal_int(props.get("Timeout", 3), f"{where}.Timeout"),
            memory_mb=_literal_int(props.get("MemorySize", 128), f"{where}.MemorySize"),
            variables={
                **((globals_.get("Environment") or {}).get("Variables") or {}),
                **((own.get("Environment") or {}).get("Variables") or {}),
            },
            # SAM adds a function's own Layers to the Globals ones instead of replacing them.
            layer_dirs=_layer_dirs(
                resources,
                [*(globals_.get("Layers") or []), *(own.get("Layers") or [])],
                where,
                root,
            ),
            events=props.get("Events") or {},
        )
        if not spec.handler_file.is_file():
            raise TemplateError(f"{where}.Handler: {spec.handler_file} does not exist")
        specs[logical_id] = spec
    return specs


def _literal_int(value: Any, where: str) -> int:
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    raise TemplateError(f"{where}: only a literal number is understood locally, not {value!r}")


def _layer_dirs(
    resources: Mapping[str, Any], layers: list[Any], where: str, root: Path
) -> tuple[Path, ...]:
    dirs = []
    for layer in layers:
        match layer:
            case {"Ref": str() as layer_id} if (
                resources.get(layer_id, {}).get("Type") == "AWS::Serverless::LayerVersion"
            ):
                content = (resources[layer_id].get("Properties") or {}).get("ContentUri")
                if not isinstance(content, str) or not (root / content).is_dir():
                    raise TemplateError(
                        f"{layer_id}.Properties.ContentUri: {content!r} is not a local directory"
                    )
                # A built layer puts packages under python/; a BuildMethod layer's source
                # directory (like CommonLayer) holds them at the top.
                path = root / content
                dirs.append(path / "python" if (path / "python").is_dir() else path)
            case str():
                log.warning(
                    "%s.Layers: %s is remote; its packages must be in the venv", where, layer
                )
            case _:
                raise TemplateError(f"{where}.Layers: {layer!r} is not understood locally")
    return tuple(dirs)


def resolve_parameters(
    template: Mapping[str, Any], overrides: Mapping[str, str] | None = None
) -> dict[str, str]:
    """Parameter values: the overrides, else the defaults; checked like CloudFormation would."""
    declared: Mapping[str, Any] = template.get("Parameters") or {}
    overrides = dict(overrides or {})
    unknown = sorted(set(overrides) - set(declared))
    if unknown:
        raise TemplateError(f"parameter override(s) {', '.join(unknown)}: not in the template")
    values = {}
    for name, definition in declared.items():
        value = overrides.get(name, definition.get("Default"))
        if value is None:
            raise TemplateError(f"Parameters.{name}: no Default; pass --parameter-overrides")
        text = _scalar_text(value, f"Parameters.{name}")
        allowed = definition.get("AllowedValues")
        if allowed and text not in [_scalar_text(a, name) for a in allowed]:
            raise TemplateError(f"Parameters.{name}: {text!r} is not one of {allowed}")
        values[name] = text
    return values


def parse_parameter_overrides(values: list[str] | None) -> dict[str, str]:
    """sam's `--parameter-overrides`: `Key=Value` or `ParameterKey=Key,ParameterValue=Value`."""
    overrides = {}
    for token in shlex.split(" ".join(values or [])):
        if token.startswith("ParameterKey="):
            fields = dict(part.split("=", 1) for part in token.split(",") if "=" in part)
            key, value = fields.get("ParameterKey"), fields.get("ParameterValue")
        else:
            key, _, value = token.partition("=")
        if not key or value is None:
            raise TemplateError(f"--parameter-overrides: {token!r} is not Key=Value")
        overrides[key] = value
    return overrides


def _scalar_text(value: Any, where: str) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float | str):
        return str(value)
    raise TemplateError(f"{where}: {value!r} is not a literal value")


# --------------------------------------------------------------------------- local AWS


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

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._port}"

    def start(self) -> MotoEndpoint:
        # moto's request handler logs every call through werkzeug's logger; at 10 polls a second
        # that drowns the handlers' logs.
        werkzeug_log = logging.getLogger("werkzeug")
        self._werkzeug_level = werkzeug_log.level
        werkzeug_log.setLevel(logging.WARNING)
        self._server.start()
        if self._server.error is not None:
            raise StackError(_port_message("moto", self._port)) from self._server.error
        # moto's backends are process-wide: start from an empty account every time.
        httpx.post(f"{self.url}/moto-api/reset", timeout=10).raise_for_status()
        return self

    def stop(self) -> None:
        if self._server.error is None:
            with contextlib.suppress(Exception):
                self._server.stop()
        if self._werkzeug_level is not None:
            logging.getLogger("werkzeug").setLevel(self._werkzeug_level)


def free_port(name: str, port: int) -> int:
    """`port` if it can be bound on 127.0.0.1 (a free one for 0), else StackError naming it."""
    try:
        with socket.create_server(("127.0.0.1", port)) as probe:
            return int(probe.getsockname()[1])
    except OSError as exc:
        raise StackError(_port_message(name, port)) from exc


def _port_message(name: str, port: int) -> str:
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
        dynamodb, sqs, secretsmanager = (
            self.client("dynamodb"),
            self.client("sqs"),
            self.client("secretsmanager"),
        )
        for logical_id, definition in resources.items():
            if definition.get("Type") == "AWS::DynamoDB::Table":
                name = create_table(dynamodb, logical_id, f"{NAME_PREFIX}-{logical_id}")
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
        return self._with_other_refs(resources, local)

    def attach(
        self, template: Mapping[str, Any], parameters: Mapping[str, str]
    ) -> dict[str, LocalResource]:
        """Finds the resources a running stack created at this endpoint (by their local names)."""
        resources: Mapping[str, Any] = template["Resources"]
        local: dict[str, LocalResource] = {}
        dynamodb, sqs, secretsmanager = (
            self.client("dynamodb"),
            self.client("sqs"),
            self.client("secretsmanager"),
        )
        try:
            for logical_id, definition in resources.items():
                kind = definition.get("Type")
                if kind == "AWS::DynamoDB::Table":
                    local[logical_id] = self._table(
                        dynamodb, logical_id, f"{NAME_PREFIX}-{logical_id}"
                    )
                elif kind == "AWS::SQS::Queue":
                    url = sqs.get_queue_url(QueueName=f"{NAME_PREFIX}-{logical_id}")["QueueUrl"]
                    local[logical_id] = self._queue(sqs, logical_id, url)
                elif kind == "AWS::SecretsManager::Secret":
                    arn = secretsmanager.describe_secret(SecretId=_secret_name(logical_id))["ARN"]
                    local[logical_id] = LocalResource(logical_id, kind, arn)
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
            name = f"{NAME_PREFIX}-{logical_id}"
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


# --------------------------------------------------------------------------- environment


class Intrinsics:
    """Resolves CloudFormation intrinsics in environment values to local values."""

    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, str],
        resources: Mapping[str, LocalResource],
        *,
        region: str = REGION,
    ) -> None:
        self._template = template
        self._parameters = parameters
        self._resources = resources
        self._pseudo = {
            "AWS::Region": region,
            "AWS::AccountId": ACCOUNT_ID,
            "AWS::Partition": "aws",
            "AWS::URLSuffix": "amazonaws.com",
            "AWS::StackName": f"{NAME_PREFIX}-local",
            "AWS::StackId": f"arn:aws:cloudformation:{region}:{ACCOUNT_ID}:stack/"
            f"{NAME_PREFIX}-local/00000000-0000-0000-0000-000000000000",
        }

    def resolve(self, value: Any, where: str) -> str | None:
        """The value as a string; None for AWS::NoValue (the variable is then left out)."""
        if isinstance(value, bool | int | float | str):
            return _scalar_text(value, where)
        if not (isinstance(value, dict) and len(value) == 1):
            raise TemplateError(f"{where}: {value!r} is not a value or an intrinsic function")
        ((function, argument),) = value.items()
        if function == "Ref":
            return self._ref(str(argument), where)
        if function == "Fn::GetAtt":
            if isinstance(argument, str):
                target, _, attribute = argument.partition(".")
            elif isinstance(argument, list) and len(argument) == 2:
                target, attribute = argument
            else:
                raise TemplateError(f"{where}: Fn::GetAtt {argument!r} is not understood")
            return self._get_att(str(target), str(attribute), where)
        if function == "Fn::Sub":
            return self._sub(argument, where)
        if function == "Fn::Join" and isinstance(argument, list) and len(argument) == 2:
            parts = [self.resolve(part, where) for part in argument[1]]
            return str(argument[0]).join(p for p in parts if p is not None)
        if function == "Fn::Select" and isinstance(argument, list) and len(argument) == 2:
            return self.resolve(argument[1][int(argument[0])], where)
        if function == "Fn::If" and isinstance(argument, list) and len(argument) == 3:
            chosen = argument[1] if self.condition(str(argument[0]), where) else argument[2]
            return self.resolve(chosen, where)
        raise TemplateError(f"{where}: {function} is not understood by the local stack")

    def condition(self, name: str, where: str) -> bool:
        conditions = self._template.get("Conditions") or {}
        if name not in conditions:
            raise TemplateError(f"{where}: condition {name!r} is not in Conditions")
        return self._evaluate(conditions[name], f"Conditions.{name}")

    def _evaluate(self, expression: Any, where: str) -> bool:
        match expression:
            case {"Fn::Equals": [left, right]}:
                return self.resolve(left, where) == self.resolve(right, where)
            case {"Fn::Not": [inner]}:
                return not self._evaluate(inner, where)
            case {"Fn::And": list(inner)}:
                return all(self._evaluate(i, where) for i in inner)
            case {"Fn::Or": list(inner)}:
                return any(self._evaluate(i, where) for i in inner)
            case {"Condition": str(name)}:
                return self.condition(name, where)
        raise TemplateError(f"{where}: {expression!r} is not understood by the local stack")

    def _ref(self, name: str, where: str) -> str | None:
        if name == "AWS::NoValue":
            return None
        if name in self._pseudo:
            return self._pseudo[name]
        if name in self._parameters:
            return self._parameters[name]
        if name in self._resources:
            return self._resources[name].ref
        kind = ((self._template.get("Resources") or {}).get(name) or {}).get("Type")
        if kind:
            raise TemplateError(f"{where}: !Ref {name} ({kind}) has no local equivalent")
        raise TemplateError(f"{where}: !Ref {name}: no such parameter or resource")

    def _get_att(self, target: str, attribute: str, where: str) -> str:
        local = self._resources.get(target)
        if local is None or attribute not in local.attributes:
            kind = local.type if local else "unknown resource"
            raise TemplateError(
                f"{where}: !GetAtt {target}.{attribute} ({kind}) has no local equivalent"
            )
        return local.attributes[attribute]

    def _sub(self, argument: Any, where: str) -> str:
        text, variables = (argument, {}) if isinstance(argument, str) else argument
        if not isinstance(text, str) or not isinstance(variables, dict):
            raise TemplateError(f"{where}: Fn::Sub {argument!r} is not understood")

        def substitute(match: re.Match[str]) -> str:
            name = match.group(1)
            if name.startswith("!"):
                return "${" + name[1:] + "}"
            if name in variables:
                return self.resolve(variables[name], where) or ""
            if "." in name and name not in self._pseudo:
                target, attribute = name.split(".", 1)
                return self._get_att(target, attribute, where)
            return self._ref(name, where) or ""

        return re.sub(r"\$\{([^}]+)\}", substitute, text)


def load_env_vars(path: Path, specs: Mapping[str, FunctionSpec]) -> dict[str, dict[str, str]]:
    """An `--env-vars` file as sam local reads it: {LogicalId: {VAR: value}} plus "Parameters"
    for every function; variables the template does not declare for a function are ignored."""
    try:
        document = json.loads(path.read_text())
    except OSError as exc:
        raise StackError(f"--env-vars {path}: {exc.strerror}") from exc
    except ValueError as exc:
        raise StackError(f"--env-vars {path}: not JSON ({exc})") from exc
    if not isinstance(document, dict) or not all(isinstance(v, dict) for v in document.values()):
        raise StackError(f"--env-vars {path}: expected {{LogicalId: {{VARIABLE: value}}}}")
    unknown = sorted(set(document) - set(specs) - {"Parameters"})
    if unknown:
        log.warning("--env-vars %s: no function %s in the template", path, ", ".join(unknown))
    overrides: dict[str, dict[str, str]] = {}
    for logical_id, spec in specs.items():
        given = {**document.get("Parameters", {}), **document.get(logical_id, {})}
        ignored = sorted(set(given) - set(spec.variables))
        if ignored and logical_id in document:
            log.warning(
                "--env-vars %s: %s ignored for %s (not declared in the template; sam local "
                "ignores them too)",
                path,
                ", ".join(ignored),
                logical_id,
            )
        overrides[logical_id] = {
            name: _scalar_text(value, f"{path}: {logical_id}.{name}")
            for name, value in given.items()
            if name in spec.variables and value is not None
        }
    return overrides


def function_environment(
    spec: FunctionSpec,
    intrinsics: Intrinsics,
    *,
    endpoint_url: str,
    mailivery_base_url: str,
    region: str = REGION,
    overrides: Mapping[str, str] | None = None,
) -> dict[str, str | None]:
    """Template variables (resolved) → `--env-vars` overrides → local essentials.
    A None value means "unset while this function runs"."""
    environment: dict[str, str | None] = {}
    for name, value in spec.variables.items():
        resolved = intrinsics.resolve(value, f"{spec.logical_id}.Environment.Variables.{name}")
        if resolved is not None:
            environment[name] = resolved
    environment.update(overrides or {})
    environment.update(
        {
            "WARMGATE_STAGE": "local",
            "MAILIVERY_BASE_URL": mailivery_base_url,
            "AWS_ENDPOINT_URL": endpoint_url,
            "AWS_REGION": region,
            "AWS_DEFAULT_REGION": region,
            "AWS_ACCESS_KEY_ID": "local",
            "AWS_SECRET_ACCESS_KEY": "local",
            "AWS_SESSION_TOKEN": None,
            "AWS_PROFILE": None,
            "AWS_DEFAULT_PROFILE": None,
            "AWS_IGNORE_CONFIGURED_ENDPOINT_URLS": None,
            # What sam local sets: Powertools' Tracer, for one, switches itself off on it.
            "AWS_SAM_LOCAL": "true",
            "AWS_LAMBDA_FUNCTION_NAME": spec.logical_id,
            "AWS_LAMBDA_FUNCTION_VERSION": "$LATEST",
            "AWS_LAMBDA_FUNCTION_MEMORY_SIZE": str(spec.memory_mb),
            "AWS_LAMBDA_FUNCTION_TIMEOUT": str(spec.timeout_s),
        }
    )
    # A service-specific endpoint (AWS_ENDPOINT_URL_SQS …) would win over AWS_ENDPOINT_URL.
    environment.update({name: None for name in os.environ if name.startswith("AWS_ENDPOINT_URL_")})
    return environment


@contextlib.contextmanager
def _environment(changes: Mapping[str, str | None]) -> Iterator[None]:
    previous = {name: os.environ.get(name) for name in changes}
    try:
        for name, value in changes.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value
        yield
    finally:
        for name, value in previous.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --------------------------------------------------------------------------- functions


class LocalLambdaContext:
    """The attributes of Lambda's context object that handlers and Powertools read."""

    def __init__(self, spec: FunctionSpec, region: str) -> None:
        now = datetime.now(UTC)
        self.function_name = spec.logical_id  # sam local also uses the logical id
        self.function_version = "$LATEST"
        self.invoked_function_arn = (
            f"arn:aws:lambda:{region}:{ACCOUNT_ID}:function:{spec.logical_id}"
        )
        self.memory_limit_in_mb = spec.memory_mb
        self.aws_request_id = str(uuid.uuid4())
        self.log_group_name = f"/aws/lambda/{spec.logical_id}"
        self.log_stream_name = f"{now:%Y/%m/%d}/[$LATEST]{uuid.uuid4().hex}"
        self.identity = None
        self.client_context = None
        self._deadline = time.monotonic() + spec.timeout_s

    def get_remaining_time_in_millis(self) -> int:
        return max(0, int((self._deadline - time.monotonic()) * 1000))


Handler = Callable[[Any, LocalLambdaContext], Any]


class LocalFunction:
    """One function's handler, imported and invoked inside its own environment."""

    def __init__(
        self,
        spec: FunctionSpec,
        environment: Mapping[str, str | None],
        *,
        region: str = REGION,
        stdout: TextIO | None = None,
    ) -> None:
        self.spec = spec
        self.environment = dict(environment)
        self.invocations = 0
        self._region = region
        self._stdout = stdout
        self._handler: Handler | None = None
        self.module: ModuleType | None = None

    @property
    def logical_id(self) -> str:
        return self.spec.logical_id

    def load(self) -> LocalFunction:
        """Imports the handler module as `devstack_functions.<LogicalId>`; FunctionLoadError
        names the function and the exception (a missing variable, a syntax error …)."""
        path = self.spec.handler_file
        shown = path.relative_to(ROOT) if path.is_relative_to(ROOT) else path
        for layer in self.spec.layer_dirs:
            if str(layer) not in sys.path:
                sys.path.append(str(layer))  # after the venv, as /opt/python comes after /var/task
        module_name = f"devstack_functions.{self.logical_id}"
        # Lambda runs the handler with its code directory (/var/task) first on sys.path; here it
        # is there only while the module imports, so two functions' helpers cannot shadow
        # each other later (a same-named helper module is still imported once per process).
        sys.path.insert(0, str(self.spec.code_dir))
        with _INVOCATION_LOCK, _environment(self.environment), self._output():
            try:
                loader_spec = importlib.util.spec_from_file_location(module_name, path)
                if loader_spec is None or loader_spec.loader is None:
                    raise ImportError(f"cannot load {path}")
                module = importlib.util.module_from_spec(loader_spec)
                loader_spec.loader.exec_module(module)
            except Exception as exc:
                raise FunctionLoadError(
                    f"{self.logical_id} ({shown}) failed to import: {type(exc).__name__}: {exc}"
                ) from exc
            finally:
                sys.path.remove(str(self.spec.code_dir))
        handler = getattr(module, self.spec.handler_attribute, None)
        if not callable(handler):
            raise FunctionLoadError(
                f"{self.logical_id} ({shown}) has no function {self.spec.handler_attribute!r}"
            )
        self.module, self._handler = module, handler
        return self

    def invoke(self, event: Any, context: LocalLambdaContext | None = None) -> Any:
        """Runs the handler once, like one Lambda invocation; its exceptions propagate."""
        if self._handler is None:
            raise RuntimeError(f"{self.logical_id} is not loaded")
        with _INVOCATION_LOCK, _environment(self.environment), self._output():
            context = context or LocalLambdaContext(self.spec, self._region)
            self.invocations += 1
            started = time.monotonic()
            try:
                return self._handler(event, context)
            finally:
                elapsed = time.monotonic() - started
                if elapsed > self.spec.timeout_s:
                    log.warning(
                        "%s ran %.1f s: Lambda would have stopped it at its %d s Timeout",
                        self.logical_id,
                        elapsed,
                        self.spec.timeout_s,
                    )

    def context(self) -> LocalLambdaContext:
        return LocalLambdaContext(self.spec, self._region)

    def _output(self) -> contextlib.AbstractContextManager[Any]:
        # Handlers print (Powertools' JSON logs, EMF metrics) to stdout, as in Lambda; `invoke`
        # sends that to stderr so its stdout carries only the response, like sam local invoke.
        if self._stdout is None:
            return contextlib.nullcontext()
        return contextlib.redirect_stdout(self._stdout)


class FunctionFactory:
    """Builds every function's environment against one local endpoint and sandbox."""

    def __init__(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, str],
        resources: Mapping[str, LocalResource],
        *,
        endpoint_url: str,
        mailivery_base_url: str,
        region: str = REGION,
        env_overrides: Mapping[str, Mapping[str, str]] | None = None,
        stdout: TextIO | None = None,
    ) -> None:
        self.intrinsics = Intrinsics(template, parameters, resources, region=region)
        self._endpoint_url = endpoint_url
        self._mailivery_base_url = mailivery_base_url
        self._region = region
        self._env_overrides = env_overrides or {}
        self._stdout = stdout

    def function(self, spec: FunctionSpec) -> LocalFunction:
        environment = function_environment(
            spec,
            self.intrinsics,
            endpoint_url=self._endpoint_url,
            mailivery_base_url=self._mailivery_base_url,
            region=self._region,
            overrides=self._env_overrides.get(spec.logical_id),
        )
        return LocalFunction(spec, environment, region=self._region, stdout=self._stdout).load()


# --------------------------------------------------------------------------- triggers


class SqsEventSource:
    """One poller thread per SQS event source, like Lambda's event source mapping."""

    def __init__(
        self,
        function: LocalFunction,
        event_id: str,
        sqs: Any,
        queue: LocalResource,
        properties: Mapping[str, Any],
        stopping: threading.Event,
        *,
        idle_seconds: float = 0.1,
    ) -> None:
        where = f"{function.logical_id}.Events.{event_id}.Properties"
        if "FilterCriteria" in properties:
            raise TemplateError(f"{where}.FilterCriteria: not emulated locally")
        self.function = function
        self.queue = queue
        self.batch_size = _literal_int(properties.get("BatchSize", 10), f"{where}.BatchSize")
        # Lambda only honours batchItemFailures when the mapping opts in; otherwise a normal
        # return deletes the whole batch.
        self.report_failures = "ReportBatchItemFailures" in (
            properties.get("FunctionResponseTypes") or []
        )
        self.enabled = properties.get("Enabled", True) is not False
        self._sqs = sqs
        self._stopping = stopping
        self._idle_seconds = idle_seconds
        self._thread = threading.Thread(
            target=self._run, name=f"devstack-sqs-{function.logical_id}", daemon=True
        )

    def describe(self) -> str:
        return (
            f"{self.function.logical_id} ← {self.queue.logical_id} (SQS, batch {self.batch_size}"
            f"{', partial failures' if self.report_failures else ''})"
        )

    def start(self) -> None:
        if self.enabled:
            self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                received, failed = poll_once(
                    self._sqs,
                    self.queue.ref,
                    self.queue.attributes["Arn"],
                    self._deliver,
                    None,
                    batch_size=self.batch_size,
                )
            except Exception as exc:  # moto going away at shutdown, or a transient error
                if self._stopping.is_set():
                    return
                log.warning("%s: polling failed (%s); retrying in 1 s", self.describe(), exc)
                self._stopping.wait(1.0)
                continue
            if received:
                log.info(
                    "%s ← %s: %d message(s), %d failed (%.0f ms)",
                    self.function.logical_id,
                    self.queue.logical_id,
                    received,
                    failed,
                    (time.monotonic() - started) * 1000,
                )
            else:
                self._stopping.wait(self._idle_seconds)

    def _deliver(self, event: dict[str, Any], _context: Any) -> Any:
        try:
            response = self.function.invoke(event)
        except Exception:
            log.exception(
                "%s raised: the whole batch of %d returns to %s",
                self.function.logical_id,
                len(event["Records"]),
                self.queue.logical_id,
            )
            raise
        return response if self.report_failures else None


class ScheduleSource:
    """A `Schedule`/`ScheduleV2` event, fired every `interval` seconds instead of its expression
    (a local run cannot wait ten minutes), with the event EventBridge would send."""

    def __init__(
        self,
        function: LocalFunction,
        event_id: str,
        event_type: str,
        properties: Mapping[str, Any],
        stopping: threading.Event,
        *,
        interval: float,
        region: str = REGION,
    ) -> None:
        self.function = function
        self.event_id = event_id
        self.event_type = event_type
        self.interval = interval
        self.expression = properties.get("ScheduleExpression")
        enabled = properties.get("Enabled", True) is not False
        self.enabled = enabled and properties.get("State", "ENABLED") != "DISABLED"
        self._input = properties.get("Input")
        self._region = region
        self._stopping = stopping
        self._thread = threading.Thread(
            target=self._run, name=f"devstack-schedule-{function.logical_id}", daemon=True
        )

    def describe(self) -> str:
        return (
            f"{self.function.logical_id} every {self.interval:g} s "
            f"({self.event_type} {self.event_id}; deployed: {self.expression})"
        )

    def event(self) -> Any:
        """The scheduled event: the template's Input if any, else EventBridge's own shape."""
        if isinstance(self._input, str):
            return json.loads(self._input)
        scheduler = self.event_type == "ScheduleV2"
        rule = (
            f"arn:aws:scheduler:{self._region}:{ACCOUNT_ID}:schedule/default/"
            if scheduler
            else f"arn:aws:events:{self._region}:{ACCOUNT_ID}:rule/"
        ) + f"{NAME_PREFIX}-local-{self.function.logical_id}{self.event_id}"
        return {
            "version": "0",
            "id": str(uuid.uuid4()),
            "detail-type": "Scheduled Event",
            "source": "aws.scheduler" if scheduler else "aws.events",
            "account": ACCOUNT_ID,
            "time": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "region": self._region,
            "resources": [rule],
            "detail": {},
        }

    def fire(self) -> Any:
        """One scheduled invocation now (the timer's own path); returns the handler's result."""
        return self.function.invoke(self.event())

    def start(self) -> None:
        if self.enabled:
            self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        while not self._stopping.wait(self.interval):
            try:
                result = self.fire()
            except Exception:
                log.exception("%s (scheduled) raised", self.function.logical_id)
            else:
                log.info("%s (scheduled) → %s", self.function.logical_id, _short(result))


def _short(value: Any, limit: int = 160) -> str:
    text = json.dumps(value, default=str)
    return text if len(text) <= limit else text[: limit - 1] + "…"


# --------------------------------------------------------------------------- the stack


@dataclass(frozen=True)
class StackOptions:
    api_port: int = 0  # 0 = any free port (make run uses 3000, like sam local start-api)
    sandbox_port: int = 0
    moto_port: int = 0
    region: str = REGION
    parameter_overrides: Mapping[str, str] = field(default_factory=dict)
    env_vars_file: Path | None = None
    # Local-only speed-up: WorkQueue's 210 s makes a failing message reach the DLQ after ~17 min;
    # tests use 1-2 s so the redrive happens within seconds. Applied to every queue.
    visibility_timeout_seconds: int | None = None
    schedule_seconds: float = 60.0
    webhook_token: str = LOCAL_WEBHOOK_TOKEN
    # Where handlers' stdout (Powertools JSON logs, EMF) goes; None = this process's stdout.
    function_stdout: TextIO | None = None
    poll_idle_seconds: float = 0.1


class LocalStack:
    """The whole stack; `with LocalStack(options) as stack:` or start() … stop()."""

    def __init__(self, options: StackOptions | None = None) -> None:
        self.options = options or StackOptions()
        self._stopping = threading.Event()
        self._moto: MotoEndpoint | None = None
        self._sandbox: MailiverySandbox | None = None
        self._api: LocalHttpApi | None = None
        self.aws: LocalAws | None = None
        self.functions: dict[str, LocalFunction] = {}
        self.resources: dict[str, LocalResource] = {}
        self.routes: list[HttpRoute] = []
        self.sqs_sources: list[SqsEventSource] = []
        self.schedules: list[ScheduleSource] = []
        self.ignored_events: list[str] = []

    # ---- lifecycle

    def start(self) -> LocalStack:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        options = self.options
        template = load_template(TEMPLATE)
        try:
            specs = function_specs(template)
            self.routes = routes_from_template(template)
        except RouteError as exc:
            raise TemplateError(str(exc)) from exc
        parameters = resolve_parameters(template, options.parameter_overrides)
        env_overrides = (
            load_env_vars(options.env_vars_file, specs) if options.env_vars_file else None
        )
        # Every fixed port is checked before anything starts (moto resets its backends on start).
        for name, port in (
            ("API", options.api_port),
            ("Mailivery sandbox", options.sandbox_port),
            ("moto", options.moto_port),
        ):
            if port:
                free_port(name, port)

        self._moto = MotoEndpoint(options.moto_port).start()
        self.aws = LocalAws(self._moto.url, options.region)
        self.resources = self.aws.provision(
            template,
            parameters,
            secret_values={WEBHOOK_TOKEN_SECRET: options.webhook_token},
            visibility_timeout_seconds=options.visibility_timeout_seconds,
        )
        try:
            self._sandbox = MailiverySandbox(
                port=options.sandbox_port, api_keys=(SANDBOX_API_KEY,)
            ).start()
        except (OSError, SystemExit) as exc:  # werkzeug exits on a port taken since the check
            raise StackError(_port_message("Mailivery sandbox", options.sandbox_port)) from exc
        try:
            self._api = LocalHttpApi(
                self.routes, self._invoke_route, port=options.api_port, account_id=ACCOUNT_ID
            )
        except OSError as exc:
            raise StackError(_port_message("API", options.api_port)) from exc
        self._sandbox.webhook_url = self.webhook_url

        # The handlers' Powertools secret providers bind a boto3 client on first use; start and
        # end with none, so no provider outlives the endpoint it was made for.
        _clear_parameter_providers()
        factory = FunctionFactory(
            template,
            parameters,
            self.resources,
            endpoint_url=self._moto.url,
            mailivery_base_url=self._sandbox.api_base_url,
            region=options.region,
            env_overrides=env_overrides,
            stdout=options.function_stdout,
        )
        self.functions = {logical_id: factory.function(spec) for logical_id, spec in specs.items()}
        self._wire_triggers(specs, factory.intrinsics)
        self._api.start()
        for source in self.sqs_sources:
            source.start()
        for schedule in self.schedules:
            schedule.start()

    def _wire_triggers(self, specs: Mapping[str, FunctionSpec], intrinsics: Intrinsics) -> None:
        assert self.aws is not None
        sqs = self.aws.client("sqs")
        for logical_id, spec in specs.items():
            function = self.functions[logical_id]
            for event_id, event in spec.events.items():
                kind = event.get("Type")
                props = event.get("Properties") or {}
                if kind == "SQS":
                    queue = self._queue_of(props.get("Queue"), f"{logical_id}.Events.{event_id}")
                    self.sqs_sources.append(
                        SqsEventSource(
                            function,
                            event_id,
                            sqs,
                            queue,
                            props,
                            self._stopping,
                            idle_seconds=self.options.poll_idle_seconds,
                        )
                    )
                elif kind in ("Schedule", "ScheduleV2"):
                    where = f"{logical_id}.Events.{event_id}.Properties.ScheduleExpression"
                    expression = props.get("ScheduleExpression", props.get("Schedule"))
                    self.schedules.append(
                        ScheduleSource(
                            function,
                            event_id,
                            str(kind),
                            {**props, "ScheduleExpression": intrinsics.resolve(expression, where)},
                            self._stopping,
                            interval=self.options.schedule_seconds,
                            region=self.options.region,
                        )
                    )
                elif kind != "HttpApi":
                    self.ignored_events.append(f"{logical_id}.Events.{event_id} ({kind})")
        for ignored in self.ignored_events:
            log.warning("%s: event type not run by the local stack", ignored)

    def _queue_of(self, reference: Any, where: str) -> LocalResource:
        match reference:
            case {"Fn::GetAtt": [str() as queue_id, "Arn"]} if queue_id in self.resources:
                return self.resources[queue_id]
        raise TemplateError(f"{where}.Properties.Queue: only !GetAtt <Queue>.Arn is understood")

    def stop(self) -> None:
        """Stops triggers first (an invocation in flight finishes), then the servers."""
        self._stopping.set()
        for source in self.sqs_sources:
            source.join(STOP_TIMEOUT_S)
        for schedule in self.schedules:
            schedule.join(STOP_TIMEOUT_S)
        if self._api is not None:
            self._api.stop(STOP_TIMEOUT_S)
        if self._sandbox is not None:
            self._sandbox.stop()
        if self._moto is not None:
            self._moto.stop()
        _clear_parameter_providers()

    def __enter__(self) -> LocalStack:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # ---- addresses

    @property
    def api_url(self) -> str:
        if self._api is None:
            raise RuntimeError("stack not started")
        return self._api.url

    @property
    def webhook_url(self) -> str | None:
        """The webhook route with the local token filled in; None if the template has none."""
        for route in self.routes:
            if route.function_id == WEBHOOK_FUNCTION and "{token}" in route.path:
                return self.api_url + route.path.replace("{token}", self.options.webhook_token)
        return None

    @property
    def sandbox_url(self) -> str:
        if self._sandbox is None:
            raise RuntimeError("stack not started")
        return self._sandbox.url

    @property
    def moto_url(self) -> str:
        if self._moto is None:
            raise RuntimeError("stack not started")
        return self._moto.url

    def queue_url(self, logical_id: str) -> str:
        return self.resources[logical_id].ref

    def sandbox_control(self) -> SandboxControl:
        return SandboxControl(self.sandbox_url)

    def describe(self) -> list[tuple[str, str]]:
        """(what, where) lines for the `run` banner."""
        queues = [r for r in self.resources.values() if r.type == "AWS::SQS::Queue"]
        tables = [r for r in self.resources.values() if r.type == "AWS::DynamoDB::Table"]
        lines = [
            ("API", self.api_url),
            ("webhook", self.webhook_url or "(no webhook route in the template)"),
            ("sandbox", f"{self.sandbox_url}  (vendor API /api/v1, control /_sandbox)"),
            ("AWS (moto)", self.moto_url),
            ("tables", ", ".join(t.ref for t in tables) or "none"),
            ("queues", ", ".join(q.attributes["QueueName"] for q in queues) or "none"),
        ]
        lines += [
            ("route", f"{r.route_key:<34} → {r.function_id} ({r.authorization})")
            for r in self.routes
        ]
        lines += [("trigger", s.describe()) for s in self.sqs_sources]
        lines += [("schedule", s.describe()) for s in self.schedules]
        lines += [("ignored", e) for e in self.ignored_events]
        return lines

    # ---- dispatch

    def _invoke_route(self, function_id: str, event: dict[str, Any]) -> Any:
        return self.functions[function_id].invoke(event)


def _clear_parameter_providers() -> None:
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()  # type: ignore[no-untyped-call]  # drops providers and clients
