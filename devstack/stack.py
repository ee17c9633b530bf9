"""The Docker-free local stack: template.yaml's functions, data and triggers in one process.

On 127.0.0.1, all read from the template itself:
- moto (`ThreadedMotoServer`) with the template's table(s), queues (+ redrive) and secrets;
- the API Gateway HTTP API stand-in (`devstack.api_gateway`) serving the `HttpApi` routes;
- one SQS poller per `SQS` event source (`devstack.sqs_poller`: BatchSize,
  ReportBatchItemFailures, "exception = whole batch fails"), one stream poller per `DynamoDB`
  event source (`devstack.stream_poller`: batches in order, partial failures, bisect, retries,
  the on-failure destination), one timer per `Schedule(V2)` event;
- the template's event bus in moto, with a rule that routes every warmgate event to an SQS
  queue of the stack's own (`events_subscription`; `make run` prints each as one line);
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
  (read when a client is created, i.e. at import), region, dummy credentials, and no
  AWS_PROFILE or service-specific endpoint variables, so nothing can reach a real AWS account.

Not emulated: IAM policies (moto does not enforce them), timeouts (a slow invocation is
reported, not killed), MaximumRecordAgeInSeconds, event types other than HttpApi, SQS,
DynamoDB, Schedule and ScheduleV2 (reported at start).

Faults for the reliability suite: the sandbox's (vendor faults, storms, webhook misbehaviour)
and, through botocore's event hooks, the functions' own AWS calls (devstack.aws_faults:
throttling, failed sends, crashes); `stack.aws_faults` switches the latter and keeps the ledger.
A crashed invocation ends as on Lambda (devstack.functions.FunctionCrashed).

The parts: devstack.stack_options (what a stack is started with), devstack.local_aws (moto,
clients, resources), devstack.environment (parameters, intrinsics, a function's environment),
devstack.functions (the handlers), devstack.triggers and devstack.trigger_wiring (SQS, streams
and schedules); this module wires them into one LocalStack and re-exports their names.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from typing import Any, Final, Self

from devstack import aws_faults
from devstack.api_gateway import HttpRoute, LocalHttpApi, RouteError, routes_from_template
from devstack.environment import (
    Intrinsics,
    function_environment,
    load_env_vars,
    parse_parameter_overrides,
    resolve_parameters,
)
from devstack.errors import StackError, TemplateError
from devstack.event_bus import BusSubscription, EventPrinter
from devstack.functions import (
    FunctionCrashed,
    FunctionFactory,
    FunctionLoadError,
    FunctionSpec,
    LocalFunction,
    function_specs,
)
from devstack.local_aws import (
    EVENT_BUS,
    NAME_PREFIX,
    REGION,
    SANDBOX_API_KEY,
    SECRET_PARAMETERS,
    LocalAws,
    LocalResource,
    MotoEndpoint,
    free_port,
    port_message,
)
from devstack.sandbox import MailiverySandbox, SandboxControl
from devstack.service import Service
from devstack.stack_options import (
    LOCAL_WEBHOOK_TOKEN,
    VENDOR_REQUESTS_PER_MINUTE,
    StackOptions,
    scaled_requests_per_minute,
)
from devstack.template import TEMPLATE, load_template
from devstack.testkit import ACCOUNT_ID
from devstack.trigger_wiring import TriggerTuning, TriggerWiring
from devstack.triggers import DynamoDBStreamEventSource, ScheduleSource, SqsEventSource
from warmgate.adapters.aws import reset_session
from warmgate.adapters.secrets import reset_secrets

__all__ = [
    "ACCOUNT_ID",
    "LOCAL_WEBHOOK_TOKEN",
    "NAME_PREFIX",
    "REGION",
    "SANDBOX_API_KEY",
    "SECRET_PARAMETERS",
    "STOP_TIMEOUT_S",
    "WEBHOOK_FUNCTION",
    "WEBHOOK_TOKEN_SECRET",
    "FunctionCrashed",
    "FunctionFactory",
    "FunctionLoadError",
    "FunctionSpec",
    "Intrinsics",
    "LocalAws",
    "LocalFunction",
    "LocalResource",
    "LocalStack",
    "MotoEndpoint",
    "ScheduleSource",
    "SqsEventSource",
    "StackError",
    "StackOptions",
    "TemplateError",
    "free_port",
    "function_environment",
    "function_specs",
    "load_env_vars",
    "parse_parameter_overrides",
    "resolve_parameters",
    "scaled_requests_per_minute",
]

log = logging.getLogger("devstack")

WEBHOOK_FUNCTION: Final = "WebhookFunction"
WEBHOOK_TOKEN_SECRET: Final = "WebhookTokenSecret"  # noqa: S105 - a logical id
STOP_TIMEOUT_S: Final = 5.0


class LocalStack(Service):
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
        self.stream_sources: list[DynamoDBStreamEventSource] = []
        self.schedules: list[ScheduleSource] = []
        # Every warmgate event on the bus lands in this subscription's queue (None: no bus).
        self.events_subscription: BusSubscription | None = None
        self._event_printer: EventPrinter | None = None
        self.ignored_events: list[str] = []
        # The functions' AWS faults and their ledger; configure() starts recording.
        self.aws_faults = aws_faults.install()

    # ---- lifecycle

    def start(self) -> Self:
        try:
            self._start()
        except BaseException:
            self.stop()
            raise
        return self

    def _start(self) -> None:
        template = load_template(TEMPLATE)
        try:
            specs = function_specs(template)
            self.routes = routes_from_template(template)
        except RouteError as exc:
            raise TemplateError(str(exc)) from exc
        parameters = resolve_parameters(template, self.options.parameter_overrides)
        env_file = self.options.env_vars_file
        env_overrides = load_env_vars(env_file, specs) if env_file else None
        self._check_ports()
        self._start_servers(template, parameters)
        factory = self._function_factory(template, parameters, env_overrides)
        self.functions = {logical_id: factory.function(spec) for logical_id, spec in specs.items()}
        self._subscribe_to_bus()
        self._wire_triggers(specs, factory.intrinsics)
        assert self._api is not None
        self._api.start()
        for source in (*self.sqs_sources, *self.stream_sources):
            source.start()
        for schedule in self.schedules:
            schedule.start()

    def _check_ports(self) -> None:
        """Every fixed port, before anything starts (moto resets its backends on start)."""
        for name, port in (
            ("API", self.options.api_port),
            ("Mailivery sandbox", self.options.sandbox_port),
            ("moto", self.options.moto_port),
        ):
            if port:
                free_port(name, port)

    def _start_servers(self, template: Mapping[str, Any], parameters: Mapping[str, str]) -> None:
        """moto with the template's resources, the sandbox, and the API (bound, not serving)."""
        options = self.options
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
                port=options.sandbox_port,
                api_keys=(SANDBOX_API_KEY,),
                rate_limit_per_minute=VENDOR_REQUESTS_PER_MINUTE,
                time_scale=options.time_scale,
            ).start()
        except (OSError, SystemExit) as exc:  # werkzeug exits on a port taken since the check
            raise StackError(port_message("Mailivery sandbox", options.sandbox_port)) from exc
        try:
            self._api = LocalHttpApi(
                self.routes, self._invoke_route, port=options.api_port, account_id=ACCOUNT_ID
            )
        except OSError as exc:
            raise StackError(port_message("API", options.api_port)) from exc
        self._sandbox.webhook_url = self.webhook_url

    def _function_factory(
        self,
        template: Mapping[str, Any],
        parameters: Mapping[str, str],
        env_overrides: Mapping[str, Mapping[str, str]] | None,
    ) -> FunctionFactory:
        assert self._moto is not None
        assert self._sandbox is not None
        options = self.options
        # The handlers' secrets cache binds a client to the endpoint on first use, and the
        # botocore session to the environment it was made in: start and end with neither, so
        # no client outlives the endpoint it was made for.
        reset_secrets()
        reset_session()
        return FunctionFactory(
            template,
            parameters,
            self.resources,
            endpoint_url=self._moto.url,
            mailivery_base_url=self._sandbox.api_base_url,
            region=options.region,
            env_overrides=env_overrides,
            stdout=options.function_stdout,
            local_overrides=self._local_overrides(),
        )

    def _subscribe_to_bus(self) -> None:
        """The stack's own subscription to every warmgate event (a rule → an SQS queue)."""
        assert self.aws is not None
        bus = next((r for r in self.resources.values() if r.type == EVENT_BUS), None)
        if bus is None:
            log.warning("no event bus in the template's resources: events are not shown")
            return
        self.events_subscription = BusSubscription.create(
            self.aws.client("events"),
            self.aws.client("sqs"),
            bus.ref,
            f"{NAME_PREFIX}-local-events",
        )
        if self.options.event_lines is not None:
            self._event_printer = EventPrinter(
                self.events_subscription, self._stopping, self.options.event_lines
            )
            self._event_printer.start()

    def _local_overrides(self) -> dict[str, str]:
        overrides = dict(self.options.function_overrides)
        if self.options.time_scale != 1:
            overrides["MAILIVERY_REQUESTS_PER_MINUTE"] = str(
                scaled_requests_per_minute(self.options.time_scale)
            )
        return overrides

    def _wire_triggers(self, specs: Mapping[str, FunctionSpec], intrinsics: Intrinsics) -> None:
        assert self.aws is not None
        tuning = TriggerTuning(
            stopping=self._stopping,
            poll_idle_seconds=self.options.poll_idle_seconds,
            batching_window_seconds=self.options.batching_window_seconds,
            schedule_seconds=self.options.schedule_seconds,
            region=self.options.region,
        )
        triggers = TriggerWiring(self.aws, self.resources, intrinsics, tuning).wire(
            specs, self.functions
        )
        self.sqs_sources = triggers.sqs
        self.stream_sources = triggers.streams
        self.schedules = triggers.schedules
        self.ignored_events = triggers.ignored

    def stop(self) -> None:
        """Stops triggers first (an invocation in flight finishes), then the servers."""
        self._stopping.set()
        for source in (*self.sqs_sources, *self.stream_sources):
            source.join(STOP_TIMEOUT_S)
        if self._event_printer is not None:
            self._event_printer.join(STOP_TIMEOUT_S)
        for schedule in self.schedules:
            schedule.join(STOP_TIMEOUT_S)
        if self._api is not None:
            self._api.stop(STOP_TIMEOUT_S)
        if self._sandbox is not None:
            self._sandbox.stop()
        if self._moto is not None:
            self._moto.stop()
        reset_secrets()  # the cached clients point at this stack's moto
        reset_session()
        _clear_parameter_providers()
        self.aws_faults.clear()

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
        lines += [("trigger", s.describe()) for s in (*self.sqs_sources, *self.stream_sources)]
        if self.events_subscription is not None:
            lines.append(
                (
                    "events",
                    f"bus {self.events_subscription.bus} → rule {self.events_subscription.rule} "
                    "→ SQS (every warmgate event)",
                )
            )
        lines += [("schedule", s.describe()) for s in self.schedules]
        lines += [("ignored", e) for e in self.ignored_events]
        return lines

    # ---- dispatch

    def _invoke_route(self, function_id: str, event: dict[str, Any]) -> Any:
        return self.functions[function_id].invoke(event)


def _clear_parameter_providers() -> None:
    from aws_lambda_powertools.utilities import parameters

    parameters.clear_caches()  # type: ignore[no-untyped-call]  # drops providers and clients
