"""The local DynamoDB stream poller does what Lambda's event source mapping does with a batch:
partial failures, bisect on error, bounded retries, the on-failure destination."""

from __future__ import annotations

from typing import Any

from devstack.stream_poller import BatchResult, StreamMappingSettings, StreamPoller

STREAM = "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/2026-11-26T00:00:00.000"


class FakeShard:
    shard_id = "shardId-1"
    stream_arn = STREAM

    def __init__(self, count: int) -> None:
        self.records = [
            {"dynamodb": {"SequenceNumber": str(n), "ApproximateCreationDateTime": 1764147600}}
            for n in range(1, count + 1)
        ]

    def peek(self, limit: int) -> list[dict[str, Any]]:
        return self.records[:limit]

    def consume(self, count: int) -> None:
        del self.records[:count]


class Handler:
    """Records each batch (as sequence numbers); fails as told."""

    def __init__(self, *, raise_on: str | None = None, report: str | None = None) -> None:
        self.batches: list[list[str]] = []
        self._raise_on = raise_on
        self._report = report

    def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
        batch = [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]
        self.batches.append(batch)
        if self._raise_on in batch:
            raise RuntimeError(f"record {self._raise_on} is poison")
        if self._report in batch:
            self._report, failed = None, self._report  # fails once
            return {"batchItemFailures": [{"itemIdentifier": failed}]}
        return {"batchItemFailures": []}


def poll(
    shard: FakeShard, handler: Handler, **settings: Any
) -> tuple[BatchResult, list[dict[str, Any]]]:
    given_up: list[dict[str, Any]] = []
    poller = StreamPoller(
        shard,  # type: ignore[arg-type]
        handler,
        StreamMappingSettings(**settings),
        function_arn="arn:aws:lambda:us-east-1:123456789012:function:EventsFunction",
        on_failure=given_up.append,
    )
    return poller.poll_once(), given_up


def test_poll_delivers_a_batch_of_batch_size_in_order() -> None:
    shard, handler = FakeShard(5), Handler()

    result, given_up = poll(shard, handler, batch_size=3)

    assert handler.batches == [["1", "2", "3"]]
    assert (result, given_up) == (BatchResult(3, 1, 0), [])
    assert [r["dynamodb"]["SequenceNumber"] for r in shard.records] == ["4", "5"]


def test_poll_partial_failure_retries_from_the_reported_record_only() -> None:
    shard, handler = FakeShard(4), Handler(report="3")

    poll(shard, handler, batch_size=4, report_failures=True)

    assert handler.batches == [["1", "2", "3", "4"], ["3", "4"]]
    assert shard.records == []


def test_poll_ignores_reported_failures_unless_the_mapping_reports_them() -> None:
    shard, handler = FakeShard(2), Handler(report="2")

    poll(shard, handler, batch_size=2, report_failures=False)

    assert handler.batches == [["1", "2"]]


def test_poll_unknown_item_identifier_fails_the_whole_batch() -> None:
    class Unknown(Handler):
        def __call__(self, event: dict[str, Any]) -> dict[str, Any]:
            super().__call__(event)
            first = len(self.batches) == 1
            return {"batchItemFailures": [{"itemIdentifier": "99"}] if first else []}

    shard, handler = FakeShard(2), Unknown()
    poll(shard, handler, batch_size=2, report_failures=True)

    assert handler.batches == [["1", "2"], ["1", "2"]]


def test_poll_error_bisects_then_gives_the_poison_record_up_to_the_destination() -> None:
    shard, handler = FakeShard(4), Handler(raise_on="3")

    result, given_up = poll(
        shard, handler, batch_size=4, bisect_on_error=True, max_retries=2, report_failures=True
    )

    assert handler.batches == [
        ["1", "2", "3", "4"],  # fails: split
        ["1", "2"],
        ["3", "4"],  # fails (retry 1 after the progress): split
        ["3"],  # fails (2)
        ["3"],  # fails (3): more than MaximumRetryAttempts 2, given up
        ["4"],
    ]
    assert result == BatchResult(4, 6, 1)
    (message,) = given_up
    assert message["requestContext"]["condition"] == "RetryAttemptsExhausted"
    assert message["responseContext"]["functionError"] == "Unhandled"
    info = message["DDBStreamBatchInfo"]
    assert (info["startSequenceNumber"], info["endSequenceNumber"], info["batchSize"]) == (
        "3",
        "3",
        1,
    )
    assert (info["shardId"], info["streamArn"]) == ("shardId-1", STREAM)
    assert shard.records == []


def test_poll_error_without_bisect_retries_the_whole_batch() -> None:
    shard, handler = FakeShard(2), Handler(raise_on="2")

    _, given_up = poll(shard, handler, batch_size=2, max_retries=1)

    assert handler.batches == [["1", "2"], ["1", "2"]]
    assert given_up[0]["DDBStreamBatchInfo"]["batchSize"] == 2
