"""The template's event sources wired to the local functions: each `SQS`, `DynamoDB` and
`Schedule(V2)` event becomes a trigger of `devstack.triggers` (built here, started by the
stack); `HttpApi` events are the API's; any other event type is listed as ignored."""

from __future__ import annotations

import logging
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from devstack.environment import Intrinsics
from devstack.errors import TemplateError
from devstack.functions import FunctionSpec, LocalFunction
from devstack.local_aws import LocalAws, LocalResource
from devstack.stream_poller import sqs_destination
from devstack.triggers import DynamoDBStreamEventSource, ScheduleSource, SqsEventSource

log = logging.getLogger("devstack")


@dataclass(frozen=True)
class TriggerTuning:
    """The stack's local-only knobs (see StackOptions) that the triggers read."""

    stopping: threading.Event
    poll_idle_seconds: float
    batching_window_seconds: int | None
    schedule_seconds: float
    region: str


@dataclass
class Triggers:
    """Every trigger of every function, built and not started yet."""

    sqs: list[SqsEventSource] = field(default_factory=list)
    streams: list[DynamoDBStreamEventSource] = field(default_factory=list)
    schedules: list[ScheduleSource] = field(default_factory=list)
    ignored: list[str] = field(default_factory=list)  # "<Function>.Events.<Event> (<Type>)"


class TriggerWiring:
    def __init__(
        self,
        aws: LocalAws,
        resources: Mapping[str, LocalResource],
        intrinsics: Intrinsics,
        tuning: TriggerTuning,
    ) -> None:
        self.aws = aws
        self.resources = resources
        self.intrinsics = intrinsics
        self.tuning = tuning
        self._sqs = aws.client("sqs")  # one client for every SQS poller and failure destination

    def wire(
        self, specs: Mapping[str, FunctionSpec], functions: Mapping[str, LocalFunction]
    ) -> Triggers:
        triggers = Triggers()
        for logical_id, spec in specs.items():
            for event_id, event in spec.events.items():
                kind = event.get("Type")
                props = event.get("Properties") or {}
                where = f"{logical_id}.Events.{event_id}.Properties"
                function = functions[logical_id]
                if kind == "SQS":
                    triggers.sqs.append(self._sqs_source(function, event_id, props, where))
                elif kind == "DynamoDB":
                    triggers.streams.append(self._stream_source(function, event_id, props, where))
                elif kind in ("Schedule", "ScheduleV2"):
                    triggers.schedules.append(
                        self._schedule(function, event_id, str(kind), props, where)
                    )
                elif kind != "HttpApi":
                    triggers.ignored.append(f"{logical_id}.Events.{event_id} ({kind})")
        for ignored in triggers.ignored:
            log.warning("%s: event type not run by the local stack", ignored)
        return triggers

    def _sqs_source(
        self, function: LocalFunction, event_id: str, props: Mapping[str, Any], where: str
    ) -> SqsEventSource:
        return SqsEventSource(
            function,
            event_id,
            self._sqs,
            self._queue_of(props.get("Queue"), f"{where}.Queue"),
            props,
            self.tuning.stopping,
            idle_seconds=self.tuning.poll_idle_seconds,
            batching_window=self.tuning.batching_window_seconds,
        )

    def _schedule(
        self,
        function: LocalFunction,
        event_id: str,
        kind: str,
        props: Mapping[str, Any],
        where: str,
    ) -> ScheduleSource:
        expression = props.get("ScheduleExpression", props.get("Schedule"))
        resolved = self.intrinsics.resolve(expression, f"{where}.ScheduleExpression")
        return ScheduleSource(
            function,
            event_id,
            kind,
            {**props, "ScheduleExpression": resolved},
            self.tuning.stopping,
            interval=self.tuning.schedule_seconds,
            region=self.tuning.region,
        )

    def _stream_source(
        self, function: LocalFunction, event_id: str, props: Mapping[str, Any], where: str
    ) -> DynamoDBStreamEventSource:
        table = None
        match props.get("Stream"):
            case {"Fn::GetAtt": [str() as table_id, "StreamArn"]}:
                table = self.resources.get(table_id)
        if table is None or "StreamArn" not in table.attributes:
            raise TemplateError(
                f"{where}.Stream: only !GetAtt <Table>.StreamArn of a table with a "
                "StreamSpecification is understood"
            )
        destination = ((props.get("DestinationConfig") or {}).get("OnFailure") or {}).get(
            "Destination"
        )
        queue = None
        if destination is not None:
            queue = self._queue_of(destination, f"{where}.DestinationConfig.OnFailure.Destination")
        return DynamoDBStreamEventSource(
            function,
            event_id,
            self.aws.client("dynamodbstreams"),
            table,
            props,
            self.tuning.stopping,
            on_failure=sqs_destination(self._sqs, queue.ref) if queue else None,
            on_failure_name=queue.logical_id if queue else None,
            idle_seconds=self.tuning.poll_idle_seconds,
        )

    def _queue_of(self, reference: Any, where: str) -> LocalResource:
        match reference:
            case {"Fn::GetAtt": [str() as queue_id, "Arn"]} if queue_id in self.resources:
                return self.resources[queue_id]
        raise TemplateError(f"{where}: only !GetAtt <Queue>.Arn is understood")
