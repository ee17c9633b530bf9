"""The template's non-HTTP triggers: an SQS event source mapping (a poller thread on the
queue, see devstack.sqs_poller), a DynamoDB stream's (a poller thread on the table's stream,
see devstack.stream_poller) and Schedule/ScheduleV2 events (a timer thread).
"""

from __future__ import annotations

import json
import logging
import threading
import time
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from devstack.errors import TemplateError
from devstack.functions import FunctionCrashed, LocalFunction, literal_int
from devstack.local_aws import NAME_PREFIX, REGION, LocalResource
from devstack.sqs_poller import poll_once
from devstack.stream_poller import OnFailure, ShardReader, StreamMappingSettings, StreamPoller
from devstack.testkit import ACCOUNT_ID

log = logging.getLogger("devstack")


class EventSource:
    """A trigger of one function: a daemon thread running `_run` until `stopping` is set."""

    enabled: bool

    def __init__(self, function: LocalFunction, stopping: threading.Event, kind: str) -> None:
        self.function = function
        self._stopping = stopping
        self._thread = threading.Thread(
            target=self._run, name=f"devstack-{kind}-{function.logical_id}", daemon=True
        )

    def describe(self) -> str:
        raise NotImplementedError

    def start(self) -> None:
        if self.enabled:
            self._thread.start()

    def join(self, timeout: float) -> None:
        if self._thread.is_alive():
            self._thread.join(timeout)

    def _run(self) -> None:
        raise NotImplementedError


class SqsEventSource(EventSource):
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
        batching_window: int | None = None,
    ) -> None:
        """`batching_window`: instead of the event's MaximumBatchingWindowInSeconds."""
        where = f"{function.logical_id}.Events.{event_id}.Properties"
        if "FilterCriteria" in properties:
            raise TemplateError(f"{where}.FilterCriteria: not emulated locally")
        super().__init__(function, stopping, "sqs")
        self.queue = queue
        self.batch_size = literal_int(properties.get("BatchSize", 10), f"{where}.BatchSize")
        self.batching_window = (
            literal_int(
                properties.get("MaximumBatchingWindowInSeconds", 0),
                f"{where}.MaximumBatchingWindowInSeconds",
            )
            if batching_window is None
            else batching_window
        )
        # Lambda only honours batchItemFailures when the mapping opts in; otherwise a normal
        # return deletes the whole batch.
        self.report_failures = "ReportBatchItemFailures" in (
            properties.get("FunctionResponseTypes") or []
        )
        self.enabled = properties.get("Enabled", True) is not False
        self._sqs = sqs
        self._idle_seconds = idle_seconds

    def describe(self) -> str:
        return (
            f"{self.function.logical_id} ← {self.queue.logical_id} (SQS, batch {self.batch_size}"
            f", window {self.batching_window} s"
            f"{', partial failures' if self.report_failures else ''})"
        )

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
                    batching_window=self.batching_window,
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
        except FunctionCrashed:
            log.warning(
                "%s crashed: the whole batch of %d returns to %s after its visibility timeout",
                self.function.logical_id,
                len(event["Records"]),
                self.queue.logical_id,
            )
            raise
        except Exception:
            log.exception(
                "%s raised: the whole batch of %d returns to %s",
                self.function.logical_id,
                len(event["Records"]),
                self.queue.logical_id,
            )
            raise
        return response if self.report_failures else None


class DynamoDBStreamEventSource(EventSource):
    """One poller thread per DynamoDB event source: the table's one shard, in order."""

    # What would change which records the function sees: refused. What only bounds retries
    # in time: reported, not emulated.
    _REFUSED = ("FilterCriteria", "TumblingWindowInSeconds")
    _NOT_EMULATED = ("MaximumRecordAgeInSeconds", "MaximumBatchingWindowInSeconds")

    def __init__(
        self,
        function: LocalFunction,
        event_id: str,
        streams: Any,
        table: LocalResource,
        properties: Mapping[str, Any],
        stopping: threading.Event,
        *,
        on_failure: OnFailure | None,
        on_failure_name: str | None = None,
        idle_seconds: float = 0.1,
    ) -> None:
        where = f"{function.logical_id}.Events.{event_id}.Properties"
        for name in self._REFUSED:
            if name in properties:
                raise TemplateError(f"{where}.{name}: not emulated locally")
        super().__init__(function, stopping, "stream")
        self.table = table
        self.settings = StreamMappingSettings(
            batch_size=literal_int(properties.get("BatchSize", 100), f"{where}.BatchSize"),
            report_failures="ReportBatchItemFailures"
            in (properties.get("FunctionResponseTypes") or []),
            bisect_on_error=properties.get("BisectBatchOnFunctionError") is True,
            max_retries=literal_int(
                properties.get("MaximumRetryAttempts", -1), f"{where}.MaximumRetryAttempts"
            ),
            starting_position=str(properties.get("StartingPosition", "TRIM_HORIZON")),
        )
        parallel = properties.get("ParallelizationFactor", 1)
        self.ignored = [name for name in self._NOT_EMULATED if name in properties]
        if parallel != 1:
            self.ignored.append(f"ParallelizationFactor {parallel} (runs as 1)")
        self.enabled = properties.get("Enabled", True) is not False
        self._on_failure_name = on_failure_name
        self._poller = StreamPoller(
            ShardReader(streams, table.attributes["StreamArn"], self.settings.starting_position),
            function.invoke,
            self.settings,
            function_arn=f"arn:aws:lambda:{REGION}:{ACCOUNT_ID}:function:{function.logical_id}",
            on_failure=on_failure,
            wait=stopping.wait,
        )
        self._idle_seconds = idle_seconds

    def describe(self) -> str:
        settings = self.settings
        extras = [
            f"batch {settings.batch_size}",
            *(["partial failures"] if settings.report_failures else []),
            *(["bisect"] if settings.bisect_on_error else []),
            f"retries {settings.max_retries}",
            *([f"on failure → {self._on_failure_name}"] if self._on_failure_name else []),
            *(f"not emulated: {name}" for name in self.ignored),
        ]
        return (
            f"{self.function.logical_id} ← {self.table.logical_id} stream (DynamoDB, "
            + ", ".join(extras)
            + ")"
        )

    def _run(self) -> None:
        while not self._stopping.is_set():
            started = time.monotonic()
            try:
                result = self._poller.poll_once()
            except Exception as exc:  # moto going away at shutdown, or a transient error
                if self._stopping.is_set():
                    return
                log.warning(
                    "%s: reading the stream failed (%s); retrying in 1 s", self.describe(), exc
                )
                self._stopping.wait(1.0)
                continue
            if result.records:
                log.info(
                    "%s ← %s stream: %d record(s), %d invocation(s), %d given up (%.0f ms)",
                    self.function.logical_id,
                    self.table.logical_id,
                    result.records,
                    result.invocations,
                    result.discarded,
                    (time.monotonic() - started) * 1000,
                )
            else:
                self._stopping.wait(self._idle_seconds)


class ScheduleSource(EventSource):
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
        super().__init__(function, stopping, "schedule")
        self.event_id = event_id
        self.event_type = event_type
        self.interval = interval
        self.expression = properties.get("ScheduleExpression")
        enabled = properties.get("Enabled", True) is not False
        self.enabled = enabled and properties.get("State", "ENABLED") != "DISABLED"
        self._input = properties.get("Input")
        self._region = region

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
