"""devstack.aws_faults: the functions' AWS calls, faulted through botocore's hooks (moto
in-process), and a crashed invocation as the local stack ends it (devstack.functions)."""

from __future__ import annotations

import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError
from moto import mock_aws

from devstack.aws_faults import FAULTS, AwsFault, AwsFaults, SimulatedCrash, install, invocation
from devstack.functions import FunctionCrashed, FunctionSpec, LocalFunction
from devstack.sqs_poller import poll_once

TABLE = "faults-table"
WORKER = "WorkerFunction"


@pytest.fixture
def faults() -> Iterator[AwsFaults]:
    install()
    yield FAULTS
    FAULTS.clear()


@pytest.fixture
def aws(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, Any]]:
    for name, value in {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }.items():
        monkeypatch.setenv(name, value)
    with mock_aws():
        session = boto3.session.Session()  # a session made after install(): hooked
        dynamodb, sqs = session.client("dynamodb"), session.client("sqs")
        dynamodb.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield dynamodb, sqs


def put(dynamodb: Any, key: str, state: str = "warming") -> None:
    dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": key}, "state": {"S": state}})


def stored(dynamodb: Any, key: str) -> bool:
    return "Item" in dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": key}})


def test_a_rule_throttles_only_the_named_functions_calls_inside_an_invocation(
    faults: AwsFaults, aws: tuple[Any, Any]
) -> None:
    dynamodb, _ = aws
    rule = AwsFault(
        "throttled", "dynamodb.PutItem", error="ThrottlingException", functions=(WORKER,)
    )
    faults.configure([rule])

    put(dynamodb, "outside")  # the stack's own calls, tests' calls: never faulted
    with invocation("WebhookFunction", {}):
        put(dynamodb, "other function")
    with invocation(WORKER, {}), pytest.raises(ClientError) as raised:
        put(dynamodb, "worker")

    assert raised.value.response["Error"]["Code"] == "ThrottlingException"
    assert raised.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    assert (stored(dynamodb, "outside"), stored(dynamodb, "other function")) == (True, True)
    assert not stored(dynamodb, "worker")  # refused before the call: nothing written
    assert [(f.rule, f.function, f.operation, f.key) for f in faults.injected] == [
        ("throttled", WORKER, "dynamodb.PutItem", "worker")
    ]


def test_an_applied_fault_writes_and_then_loses_the_answer(
    faults: AwsFaults, aws: tuple[Any, Any]
) -> None:
    dynamodb, _ = aws
    faults.configure(
        [AwsFault("lost", "dynamodb.PutItem", error="InternalServerError", applied=True)]
    )

    with invocation(WORKER, {}), pytest.raises(ClientError):
        put(dynamodb, "written")

    assert stored(dynamodb, "written")


def test_a_crash_rule_matches_the_item_and_its_nth_call_in_the_invocation(
    faults: AwsFaults, aws: tuple[Any, Any]
) -> None:
    dynamodb, _ = aws
    faults.configure(
        [
            AwsFault(
                "second claim",
                "dynamodb.PutItem",
                crash=True,
                when=lambda params: params["Item"]["state"]["S"] == "verifying",
                nth_in_invocation=2,
            )
        ]
    )

    with invocation(WORKER, {}):
        put(dynamodb, "claim 1", "verifying")
        put(dynamodb, "result 1", "warming")  # not a claim: not counted
        with pytest.raises(SimulatedCrash):
            put(dynamodb, "claim 2", "verifying")
    with invocation(WORKER, {}):
        put(dynamodb, "claim 3", "verifying")  # the next invocation counts afresh

    assert [stored(dynamodb, k) for k in ("claim 1", "result 1", "claim 2", "claim 3")] == [
        True,
        True,
        False,
        True,
    ]
    assert isinstance(SimulatedCrash("x"), BaseException)
    assert not isinstance(SimulatedCrash("x"), Exception)  # no handler's except catches it


def test_rates_are_seeded_first_calls_are_certain_and_count_caps(
    faults: AwsFaults, aws: tuple[Any, Any]
) -> None:
    dynamodb, _ = aws

    def outcomes(seed: int) -> list[bool]:
        faults.configure(
            [
                AwsFault(
                    "some",
                    "dynamodb.GetItem",
                    error="ProvisionedThroughputExceededException",
                    first=2,
                    rate=0.3,
                    count=6,
                )
            ],
            seed=seed,
        )
        results = []
        for _ in range(40):
            with invocation(WORKER, {}):
                try:
                    dynamodb.get_item(TableName=TABLE, Key={"pk": {"S": "x"}})
                    results.append(True)
                except ClientError:
                    results.append(False)
        return results

    first, again = outcomes(7), outcomes(7)

    assert first == again
    assert first[:2] == [False, False]
    assert first.count(False) == 6


def test_the_ledger_keeps_each_invocation_its_batch_outcome_and_sent_messages(
    faults: AwsFaults, aws: tuple[Any, Any]
) -> None:
    _, sqs = aws
    url = sqs.create_queue(QueueName="work")["QueueUrl"]
    faults.configure()
    event = {"Records": [{"messageId": "m-1", "body": "hello"}]}

    with invocation(WORKER, event) as current:
        sent = sqs.send_message(QueueUrl=url, MessageBody="later", DelaySeconds=3)
        current.result = {"batchItemFailures": []}
    with pytest.raises(RuntimeError), invocation(WORKER, {}):
        raise RuntimeError("a bug")

    first, second = faults.invocations
    assert (first.function, first.records, first.outcome) == (WORKER, {"m-1": "hello"}, "ok")
    assert first.sent == [sent["MessageId"]]
    assert [(m.message_id, m.body, m.delay_seconds) for m in faults.sent] == [
        (sent["MessageId"], "later", 3)
    ]
    assert second.outcome == "error"
    faults.clear()
    with invocation(WORKER, {}):
        pass
    assert faults.invocations == []  # not recording: `make run` keeps no ledger


def test_bad_rules_are_refused() -> None:
    with pytest.raises(ValueError, match="either"):
        AwsFault("both", "sqs.SendMessage", error="InternalError", crash=True)
    with pytest.raises(ValueError, match="unknown error code"):
        AwsFault("odd", "sqs.SendMessage", error="NoSuchThing")
    with pytest.raises(ValueError, match="unique"):
        AwsFaults().configure([AwsFault("a", "x.Y", crash=True), AwsFault("a", "x.Z", crash=True)])


# --- a crash as the local stack ends it ----------------------------------------------------------

HANDLER = """
import uuid
from devstack.aws_faults import SimulatedCrash

ENVIRONMENT = uuid.uuid4().hex  # one per cold start

def lambda_handler(event, context):
    if event.get("crash") or any("crash" in r["body"] for r in event.get("Records", [])):
        raise SimulatedCrash("out of memory")
    return {"environment": ENVIRONMENT, "batchItemFailures": []}
"""


@pytest.fixture
def crashy(tmp_path: Path) -> LocalFunction:
    (tmp_path / "app.py").write_text(textwrap.dedent(HANDLER))
    spec = FunctionSpec(
        logical_id="CrashyFunction",
        code_dir=tmp_path,
        handler="app.lambda_handler",
        timeout_s=3,
        memory_mb=128,
        variables={},
        layer_dirs=(),
        events={},
    )
    return LocalFunction(spec, {}).load()


def test_a_crashed_invocation_is_an_invocation_error_and_the_next_one_starts_cold(
    faults: AwsFaults, crashy: LocalFunction
) -> None:
    faults.configure()
    before = crashy.invoke({})["environment"]

    with pytest.raises(FunctionCrashed, match="out of memory"):
        crashy.invoke({"crash": True})
    after = crashy.invoke({})["environment"]

    assert before != after  # Lambda replaced the environment that died
    assert crashy.invoke({})["environment"] == after  # and keeps the new one warm
    assert [i.outcome for i in faults.invocations] == ["ok", "crashed", "ok", "ok"]
    assert crashy.crashes == 1


def test_a_crashed_batch_returns_to_the_queue_after_its_visibility_timeout(
    aws: tuple[Any, Any], crashy: LocalFunction
) -> None:
    _, sqs = aws
    url = sqs.create_queue(QueueName="work", Attributes={"VisibilityTimeout": "0"})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    sqs.send_message(QueueUrl=url, MessageBody="crash")

    # The event source's path: the invocation error fails the whole batch, nothing is deleted.
    assert poll_once(sqs, url, arn, lambda event, _: crashy.invoke(event), None) == (1, 1)
    message = sqs.receive_message(QueueUrl=url, AttributeNames=["ApproximateReceiveCount"])
    assert message["Messages"][0]["Attributes"]["ApproximateReceiveCount"] == "2"
