"""What a function's environment is made of: the template's parameters (defaults and
`--parameter-overrides`), its intrinsics resolved to local values, `--env-vars` overrides and
the local essentials; and putting one function's environment into `os.environ` for a while.
"""

from __future__ import annotations

import json
import logging
import os
import re
import shlex
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from devstack.errors import StackError, TemplateError
from devstack.local_aws import NAME_PREFIX, REGION, LocalResource
from devstack.testkit import ACCOUNT_ID

if TYPE_CHECKING:  # functions.py builds on this module; only the type is needed here
    from devstack.functions import FunctionSpec

log = logging.getLogger("devstack")


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
