"""What Lambda's SQS event source mapping does, for a local queue: receive, invoke, delete.

Honours BatchSize, MaximumBatchingWindowInSeconds (once a receive returns messages, keep
gathering until the batch is full or the window, counted from that first receive, is over),
ReportBatchItemFailures (only the reported items stay on the queue) and "the handler raised →
the whole batch stays", so failed messages come back after the queue's visibility timeout and
reach the dead-letter queue by the queue's own redrive policy.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from typing import Any

Handler = Callable[[dict[str, Any], Any], Any]
# While a batching window is open, how often an empty queue is asked again (Lambda long-polls).
GATHER_POLL_SECONDS = 0.05


def receive_event(
    sqs: Any, queue_url: str, queue_arn: str, batch_size: int, wait_seconds: int = 0
) -> tuple[dict[str, Any], dict[str, str]]:
    """One SQS event shaped like Lambda's, and each message id's receipt handle."""
    response = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=min(batch_size, 10),
        WaitTimeSeconds=wait_seconds,
        MessageSystemAttributeNames=["All"],
        MessageAttributeNames=["All"],
    )
    records = []
    receipts: dict[str, str] = {}
    for message in response.get("Messages", []):
        receipts[message["MessageId"]] = message["ReceiptHandle"]
        records.append(
            {
                "messageId": message["MessageId"],
                "receiptHandle": message["ReceiptHandle"],
                "body": message["Body"],
                "attributes": message.get("Attributes", {}),
                "messageAttributes": {
                    name: {
                        "stringValue": value.get("StringValue"),
                        "dataType": value["DataType"],
                        "stringListValues": [],
                        "binaryListValues": [],
                    }
                    for name, value in message.get("MessageAttributes", {}).items()
                },
                "md5OfBody": hashlib.md5(message["Body"].encode()).hexdigest(),  # noqa: S324
                "eventSource": "aws:sqs",
                "eventSourceARN": queue_arn,
                "awsRegion": queue_arn.split(":")[3],
            }
        )
    return {"Records": records}, receipts


def poll_once(
    sqs: Any,
    queue_url: str,
    queue_arn: str,
    handler: Handler,
    context: Any,
    *,
    batch_size: int = 10,
    wait_seconds: int = 0,
    batching_window: float = 0.0,
    clock: Callable[[], float] = time.monotonic,
    sleep: Callable[[float], None] = time.sleep,
) -> tuple[int, int]:
    """Deliver one batch; returns (messages received, messages that failed)."""
    event, receipts = receive_event(sqs, queue_url, queue_arn, batch_size, wait_seconds)
    if not receipts:
        return 0, 0
    closes = clock() + batching_window
    while len(receipts) < batch_size and clock() < closes:
        more, more_receipts = receive_event(sqs, queue_url, queue_arn, batch_size - len(receipts))
        if more_receipts:
            event["Records"] += more["Records"]
            receipts |= more_receipts
        else:
            sleep(max(0.0, min(GATHER_POLL_SECONDS, closes - clock())))
    try:
        response = handler(event, context)
    except Exception:
        return len(receipts), len(receipts)  # the whole batch becomes visible again
    failed = {f["itemIdentifier"] for f in (response or {}).get("batchItemFailures", [])}
    done = [
        {"Id": str(n), "ReceiptHandle": handle}
        for n, (message_id, handle) in enumerate(receipts.items())
        if message_id not in failed
    ]
    for start in range(0, len(done), 10):
        sqs.delete_message_batch(QueueUrl=queue_url, Entries=done[start : start + 10])
    return len(receipts), len(failed)
