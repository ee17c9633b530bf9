"""What Lambda's DynamoDB Streams event source mapping does, for a local table's stream.

Reads the shard in order from its starting position and invokes the handler with batches of
Lambda's record shape. A failed batch is retried before anything after it: with
ReportBatchItemFailures from the lowest reported SequenceNumber on (the records before it are
done), an exception retries the whole batch, split in two first when BisectBatchOnFunctionError
is on. After MaximumRetryAttempts the records still failing are given up: the on-failure
destination gets Lambda's description of them (`DDBStreamBatchInfo`, not the records), and the
stream goes on after them. Every failed invocation counts as one retry attempt; the count
starts again once a part of the batch succeeded (progress).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

Handler = Callable[[dict[str, Any]], Any]
OnFailure = Callable[[dict[str, Any]], None]


@dataclass(frozen=True)
class StreamMappingSettings:
    """The event source mapping's properties that the local poller honours."""

    batch_size: int = 100
    report_failures: bool = False
    bisect_on_error: bool = False
    max_retries: int = -1  # -1: until the record leaves the stream (locally: until stopped)
    starting_position: str = "TRIM_HORIZON"


@dataclass(frozen=True)
class BatchResult:
    """What became of one batch and its retries."""

    records: int
    invocations: int
    discarded: int  # given up on: described to the on-failure destination


def lambda_record(record: Mapping[str, Any], stream_arn: str) -> dict[str, Any]:
    """A GetRecords record (boto3's shape) as Lambda hands it to a function."""
    change = dict(record["dynamodb"])
    created = change.get("ApproximateCreationDateTime")
    if isinstance(created, datetime):
        change["ApproximateCreationDateTime"] = int(created.timestamp())
    return {
        "eventID": record["eventID"],
        "eventName": record["eventName"],
        "eventVersion": record.get("eventVersion", "1.1"),
        "eventSource": "aws:dynamodb",
        "awsRegion": record.get("awsRegion") or stream_arn.split(":")[3],
        "dynamodb": change,
        "eventSourceARN": stream_arn,
    }


class ShardReader:
    """The table's stream read in order (moto keeps one shard per table)."""

    def __init__(self, streams: Any, stream_arn: str, starting_position: str) -> None:
        self._streams = streams
        self.stream_arn = stream_arn
        description = streams.describe_stream(StreamArn=stream_arn)["StreamDescription"]
        (shard,) = description["Shards"]
        self.shard_id: str = shard["ShardId"]
        self._iterator: str = streams.get_shard_iterator(
            StreamArn=stream_arn, ShardId=self.shard_id, ShardIteratorType=starting_position
        )["ShardIterator"]
        self._buffer: list[dict[str, Any]] = []

    def peek(self, limit: int) -> list[dict[str, Any]]:
        """Up to `limit` of the next records (Lambda's shape), not yet consumed."""
        if len(self._buffer) < limit:
            response = self._streams.get_records(ShardIterator=self._iterator, Limit=1000)
            self._iterator = response["NextShardIterator"]
            self._buffer += [lambda_record(r, self.stream_arn) for r in response["Records"]]
        return self._buffer[:limit]

    def consume(self, count: int) -> None:
        del self._buffer[:count]


class StreamPoller:
    """One shard's event source mapping: `poll_once` delivers the next batch to the end."""

    def __init__(
        self,
        reader: ShardReader,
        handler: Handler,
        settings: StreamMappingSettings,
        *,
        function_arn: str,
        on_failure: OnFailure | None = None,
        wait: Callable[[float], bool] | None = None,
        retry_delay: float = 0.1,
    ) -> None:
        self._reader = reader
        self._handler = handler
        self._settings = settings
        self._function_arn = function_arn
        self._on_failure = on_failure
        self._wait = wait  # returns True when the poller should stop (Event.wait)
        self._retry_delay = retry_delay

    def poll_once(self) -> BatchResult:
        batch = self._reader.peek(self._settings.batch_size)
        if not batch:
            return BatchResult(0, 0, 0)
        work = [batch]  # what is still to deliver, in stream order
        invocations = discarded = attempts = 0
        while work:
            current = work[0]
            invocations += 1
            failed_from, error = self._invoke(current)
            if failed_from is None:
                work.pop(0)
                self._reader.consume(len(current))
                attempts = 0
                continue
            self._reader.consume(failed_from)  # checkpoint: the records before it are done
            remaining = current[failed_from:]
            attempts += 1
            if 0 <= self._settings.max_retries < attempts:
                self._give_up(remaining, attempts, error)
                self._reader.consume(len(remaining))
                discarded += len(remaining)
                work.pop(0)
                attempts = 0
                continue
            if error is not None and self._settings.bisect_on_error and len(remaining) > 1:
                half = len(remaining) // 2
                work[0:1] = [remaining[:half], remaining[half:]]
            else:
                work[0] = remaining
            if self._wait is not None and self._wait(self._retry_delay):
                break  # stopping: the rest is read again from the checkpoint next time
        return BatchResult(len(batch), invocations, discarded)

    def _invoke(self, records: list[dict[str, Any]]) -> tuple[int | None, str | None]:
        """(index of the first record to retry, or None when all are done; the error)."""
        try:
            response = self._handler({"Records": records})
        except Exception as exc:
            return 0, f"{type(exc).__name__}: {exc}"
        if not self._settings.report_failures:
            return None, None
        failures = (response or {}).get("batchItemFailures") or []
        if not failures:
            return None, None
        sequence = [r["dynamodb"]["SequenceNumber"] for r in records]
        reported = [f.get("itemIdentifier") for f in failures]
        if any(not isinstance(item, str) or item not in sequence for item in reported):
            return 0, None  # as Lambda: an empty or unknown itemIdentifier fails the batch
        return min(sequence.index(item) for item in reported), None

    def _give_up(self, records: list[dict[str, Any]], attempts: int, error: str | None) -> None:
        if self._on_failure is None:
            return
        first, last = records[0]["dynamodb"], records[-1]["dynamodb"]
        self._on_failure(
            {
                "requestContext": {
                    "requestId": str(uuid.uuid4()),
                    "functionArn": self._function_arn,
                    "condition": "RetryAttemptsExhausted",
                    "approximateInvokeCount": attempts,
                },
                "responseContext": {
                    "statusCode": 200,
                    "executedVersion": "$LATEST",
                    "functionError": "Unhandled" if error else None,
                },
                "version": "1.0",
                "timestamp": datetime.now(UTC).isoformat(timespec="milliseconds"),
                "DDBStreamBatchInfo": {
                    "shardId": self._reader.shard_id,
                    "startSequenceNumber": first["SequenceNumber"],
                    "endSequenceNumber": last["SequenceNumber"],
                    "approximateArrivalOfFirstRecord": _arrival(first),
                    "approximateArrivalOfLastRecord": _arrival(last),
                    "batchSize": len(records),
                    "streamArn": self._reader.stream_arn,
                },
            }
        )


def sqs_destination(sqs: Any, queue_url: str) -> OnFailure:
    """An on-failure destination that is an SQS queue."""
    return lambda message: sqs.send_message(QueueUrl=queue_url, MessageBody=json.dumps(message))


def _arrival(change: Mapping[str, Any]) -> str:
    seconds = change.get("ApproximateCreationDateTime") or 0
    return datetime.fromtimestamp(float(seconds), UTC).isoformat(timespec="milliseconds")
