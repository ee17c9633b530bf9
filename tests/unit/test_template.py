"""template.yaml as policy: the configuration rules CI enforces, read from the template itself
and from the CloudFormation the SAM transform makes of it."""

from __future__ import annotations

from functools import cache
from typing import Any

import pytest

from devstack.template import load_template, translate_template

FUNCTIONS = ("OnboardingFunction", "WebhookFunction", "WorkerFunction", "ReconcilerFunction")


@cache
def translated() -> dict[str, Any]:
    return translate_template()["Resources"]


def resources_of(kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in load_template()["Resources"].items() if v["Type"] == kind}


def statements(function: str) -> list[dict[str, Any]]:
    role = translated()[f"{function}Role"]["Properties"]
    return [s for p in role.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]


def test_template_logical_ids_match_architecture() -> None:
    names = set(load_template()["Resources"])
    assert {
        "MailboxApi",
        "OnboardingFunction",
        "WebhookFunction",
        "WorkerFunction",
        "WorkQueue",
        "WorkDLQ",
        "MailboxTable",
        "CommonLayer",
    } <= names


@pytest.mark.parametrize("function", FUNCTIONS)
def test_template_function_logs_to_own_group_with_retention(function: str) -> None:
    resources = load_template()["Resources"]
    group = resources[function]["Properties"]["LoggingConfig"]["LogGroup"]["Ref"]
    assert resources[group]["Type"] == "AWS::Logs::LogGroup"
    assert resources[group]["Properties"]["RetentionInDays"] == {"Ref": "LogRetentionDays"}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_template_function_policies_name_resources_and_actions(function: str) -> None:
    found = statements(function)
    assert found, f"{function} has no inline policy"
    for statement in found:
        assert statement["Effect"] == "Allow"
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        assert all("*" not in action for action in actions), statement
        assert statement["Resource"] != "*", statement


def test_template_only_mailbox_routes_use_iam_and_webhook_route_none() -> None:
    api = next(v for v in translated().values() if v["Type"] == "AWS::ApiGatewayV2::Api")
    security = {
        (path, method): operation.get("security")
        for path, operations in api["Properties"]["Body"]["paths"].items()
        for method, operation in operations.items()
    }
    assert security == {
        ("/mailboxes", "post"): [{"AWS_IAM": []}],
        ("/mailboxes/{email}", "get"): [{"AWS_IAM": []}],
        ("/mailboxes/{email}", "delete"): [{"AWS_IAM": []}],
        ("/mailboxes/{email}/resume", "post"): [{"AWS_IAM": []}],
        ("/webhooks/mailivery/{token}", "post"): [{"NONE": []}],
    }


def test_template_worker_trigger_reports_partial_failures_and_caps_concurrency() -> None:
    mapping = translated()["WorkerFunctionWorkQueueBatch"]["Properties"]
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BatchSize"] == 10
    assert mapping["ScalingConfig"] == {"MaximumConcurrency": 2}


def test_template_queue_visibility_covers_six_worker_timeouts_plus_window() -> None:
    template = load_template()
    worker = template["Resources"]["WorkerFunction"]["Properties"]
    timeout = worker.get("Timeout", template["Globals"]["Function"]["Timeout"])
    window = worker["Events"]["WorkQueueBatch"]["Properties"]["MaximumBatchingWindowInSeconds"]
    visibility = template["Resources"]["WorkQueue"]["Properties"]["VisibilityTimeout"]
    assert visibility >= 6 * timeout + window


def test_template_queues_encrypted_and_dlq_keeps_14_days() -> None:
    queues = resources_of("AWS::SQS::Queue")
    assert all(q["Properties"].get("SqsManagedSseEnabled") for q in queues.values())
    assert queues["WorkDLQ"]["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    redrive = queues["WorkQueue"]["Properties"]["RedrivePolicy"]
    assert redrive == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["WorkDLQ", "Arn"]},
        "maxReceiveCount": 5,
    }


def test_template_table_is_durable_and_encrypted() -> None:
    table = load_template()["Resources"]["MailboxTable"]
    props = table["Properties"]
    assert table["DeletionPolicy"] == "Retain"
    assert props["BillingMode"] == "PAY_PER_REQUEST"
    assert props["PointInTimeRecoverySpecification"] == {"PointInTimeRecoveryEnabled": True}
    assert props["SSESpecification"] == {"SSEEnabled": True}
    assert props["TimeToLiveSpecification"]["Enabled"] is True


def test_template_no_plain_secrets_in_environment() -> None:
    template = load_template()
    variables = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    for definition in template["Resources"].values():
        env = (definition.get("Properties") or {}).get("Environment") or {}
        variables |= env.get("Variables", {})
    assert "MAILIVERY_API_KEY" not in variables
    assert "MAILIVERY_API_KEY_SECRET" in variables


def test_template_runtime_matches_tested_python() -> None:
    import sys

    runtime = load_template()["Globals"]["Function"]["Runtime"]
    assert runtime == f"python{sys.version_info.major}.{sys.version_info.minor}"


def test_template_outputs_needed_by_operators() -> None:
    outputs = load_template()["Outputs"]
    assert {"ApiUrl", "WebhookUrl", "WorkQueueUrl", "WorkDlqUrl", "MailboxTableName"} <= set(
        outputs
    )


# Managed policies SAM attaches; AWSLambdaSQSQueueExecutionRole grants the SQS poller's actions
# on "*": the one documented exception to per-resource policies (see WorkerFunction's comment).
ALLOWED_MANAGED_POLICIES = {
    "arn:aws:iam::aws:policy/service-role/AWSLambdaBasicExecutionRole",
    "arn:aws:iam::aws:policy/AWSXrayWriteOnlyAccess",
    "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole",
}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_template_function_managed_policies_are_the_documented_ones(function: str) -> None:
    managed = set(translated()[f"{function}Role"]["Properties"].get("ManagedPolicyArns", []))
    assert managed <= ALLOWED_MANAGED_POLICIES
    sqs_poller = "arn:aws:iam::aws:policy/service-role/AWSLambdaSQSQueueExecutionRole"
    assert (sqs_poller in managed) == (function == "WorkerFunction")


def test_template_every_alarm_notifies_the_optional_topic() -> None:
    alarms = resources_of("AWS::CloudWatch::Alarm")
    assert {
        "WorkDlqAlarm",
        "WorkerErrorsAlarm",
        "UnexpectedCampaignsAlarm",
        "StartFailuresAlarm",
    } <= set(alarms)
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == {
            "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
        }


def test_template_alarmed_metric_names_are_ones_the_worker_emits() -> None:
    from warmgate.decisions import Outcome

    alarms = resources_of("AWS::CloudWatch::Alarm")
    names = {alarms["StartFailuresAlarm"]["Properties"]["MetricName"]}
    for query in alarms["UnexpectedCampaignsAlarm"]["Properties"]["Metrics"]:
        if "MetricStat" in query:
            names.add(query["MetricStat"]["Metric"]["MetricName"])
    assert names <= {outcome.value for outcome in Outcome}


def test_template_no_hard_coded_physical_names() -> None:
    for name, definition in load_template()["Resources"].items():
        props = definition.get("Properties") or {}
        for key in ("FunctionName", "TableName", "QueueName", "LogGroupName", "Name"):
            assert key not in props, f"{name}.{key} would stop two stacks sharing an account"
