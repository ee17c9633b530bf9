"""The template's functions, run in this process: each AWS::Serverless::Function read and
checked (FunctionSpec), its handler module imported as `devstack_functions.<LogicalId>` and
invoked with a Lambda-like context, always inside its own environment (see devstack.stack).
"""

from __future__ import annotations

import contextlib
import logging
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
from typing import Any, TextIO

from devstack.aws_faults import SimulatedCrash, invocation
from devstack.environment import Intrinsics, function_environment
from devstack.errors import StackError, TemplateError
from devstack.local_aws import REGION, LocalResource
from devstack.template import ROOT
from devstack.testkit import LambdaContext, applied_environment, import_fresh

log = logging.getLogger("devstack")

# One process, one os.environ, one Powertools Logger: one invocation at a time (devstack.stack).
_INVOCATION_LOCK = threading.RLock()


class FunctionLoadError(StackError):
    """A handler module failed to import; names the function, the file and the exception."""


class FunctionCrashed(Exception):
    """The invocation died (a SimulatedCrash: Lambda's timeout or out-of-memory kill). Its
    caller sees an invocation error, as from Lambda; the function starts cold next time."""


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
            timeout_s=literal_int(props.get("Timeout", 3), f"{where}.Timeout"),
            memory_mb=literal_int(props.get("MemorySize", 128), f"{where}.MemorySize"),
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


def literal_int(value: Any, where: str) -> int:
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


Handler = Callable[[Any, LambdaContext], Any]


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
        self._crashed = False
        self.crashes = 0
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
        with self._running():
            try:
                module = import_fresh(path, module_name)
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

    def invoke(self, event: Any, context: LambdaContext | None = None) -> Any:
        """Runs the handler once, like one Lambda invocation; its exceptions propagate, a
        SimulatedCrash as FunctionCrashed."""
        if self._handler is None:
            raise RuntimeError(f"{self.logical_id} is not loaded")
        with self._running():
            if self._crashed:  # Lambda replaces the environment of an invocation that died
                self.load()
                self._crashed = False
            handler = self._handler
            context = context or self.context()
            self.invocations += 1
            started = time.monotonic()
            try:
                with invocation(self.logical_id, event) as current:
                    current.result = handler(event, context)
                    return current.result
            except SimulatedCrash as crash:
                self._crashed = True
                self.crashes += 1
                log.warning("%s crashed (simulated): %s", self.logical_id, crash)
                raise FunctionCrashed(f"{self.logical_id}: {crash}") from None
            finally:
                elapsed = time.monotonic() - started
                if elapsed > self.spec.timeout_s:
                    log.warning(
                        "%s ran %.1f s: Lambda would have stopped it at its %d s Timeout",
                        self.logical_id,
                        elapsed,
                        self.spec.timeout_s,
                    )

    def context(self) -> LambdaContext:
        """A fresh one per invocation, its time counting down from the function's Timeout."""
        return LambdaContext(
            self.logical_id,  # sam local also uses the logical id
            remaining_ms=self.spec.timeout_s * 1000,
            memory_mb=self.spec.memory_mb,
            region=self._region,
        )

    @contextlib.contextmanager
    def _running(self) -> Iterator[None]:
        """Alone in the process, inside this function's environment, with its stdout."""
        with _INVOCATION_LOCK, applied_environment(self.environment), self._output():
            yield

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
        local_overrides: Mapping[str, str] | None = None,
    ) -> None:
        self.intrinsics = Intrinsics(template, parameters, resources, region=region)
        self._endpoint_url = endpoint_url
        self._mailivery_base_url = mailivery_base_url
        self._region = region
        self._env_overrides = env_overrides or {}
        self._stdout = stdout
        self._local_overrides = local_overrides or {}

    def function(self, spec: FunctionSpec) -> LocalFunction:
        environment = function_environment(
            spec,
            self.intrinsics,
            endpoint_url=self._endpoint_url,
            mailivery_base_url=self._mailivery_base_url,
            region=self._region,
            overrides={**self._env_overrides.get(spec.logical_id, {}), **self._local_overrides},
        )
        return LocalFunction(spec, environment, region=self._region, stdout=self._stdout).load()
