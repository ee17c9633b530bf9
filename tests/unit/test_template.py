"""template.yaml as policy: the configuration rules CI enforces, read from the template itself
and from the CloudFormation the SAM transform makes of it."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import pytest
from aws_lambda_powertools.metrics import EphemeralMetrics

from devstack.template import load_template, translate_template
from tests.webhook_bodies import SQS_MAX_MESSAGE_BYTES
from warmgate import settings as settings_models
from warmgate import wiring
from warmgate.domain.decisions import Outcome
from warmgate.observability import Metric
from warmgate.settings import FunctionSettings

ROOT = Path(__file__).resolve().parents[2]
# Where the worker decides to defer a message (RetryLater(delay, kind, ...)).
DEFERRING_SOURCES = [
    ROOT / "layers/common/warmgate/services/worker.py",
    ROOT / "layers/common/warmgate/services/start_attempts.py",
]

FUNCTIONS = (
    "OnboardingFunction",
    "WebhookFunction",
    "WorkerFunction",
    "ReconcilerFunction",
    "EventsFunction",
)


@cache
def translated() -> dict[str, Any]:
    return translate_template()["Resources"]


def resources_of(kind: str) -> dict[str, dict[str, Any]]:
    return {k: v for k, v in load_template()["Resources"].items() if v["Type"] == kind}


def statements(function: str) -> list[dict[str, Any]]:
    role = translated()[f"{function}Role"]["Properties"]
    return [s for p in role.get("Policies", []) for s in p["PolicyDocument"]["Statement"]]


def as_list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else [value]


def timeout_of(function: str) -> int:
    template = load_template()
    timeout: int = template["Resources"][function]["Properties"].get(
        "Timeout", template["Globals"]["Function"]["Timeout"]
    )
    return timeout


def environment_of(function: str) -> dict[str, Any]:
    template = load_template()
    variables = dict(template["Globals"]["Function"]["Environment"]["Variables"])
    props = template["Resources"][function]["Properties"]
    return variables | props.get("Environment", {}).get("Variables", {})


def settings_model_of(function: str) -> type[FunctionSettings]:
    """The settings model the function's handler loads (`<Model>.from_environ()` in its app.py)."""
    code_uri = load_template()["Resources"][function]["Properties"]["CodeUri"]
    tree = ast.parse((ROOT / code_uri / "app.py").read_text())
    (name,) = {
        node.func.value.id
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Attribute)
        and node.func.attr == "from_environ"
        and isinstance(node.func.value, ast.Name)
    }
    model: type[FunctionSettings] = getattr(settings_models, name)
    return model


def resolved(value: Any) -> str:
    """A variable's value as the stack gives it: a literal, a parameter's default, or for a
    resource (Ref, GetAtt, If) a stand-in name: the settings only check it is there."""
    if not isinstance(value, dict):
        return str(value)
    parameter = load_template()["Parameters"].get(value.get("Ref"))
    return "resource-name" if parameter is None else str(parameter.get("Default", ""))


def template_environ(function: str) -> dict[str, str]:
    return {name: resolved(value) for name, value in environment_of(function).items()}


def settings_of(function: str) -> Any:
    """The settings the function runs with, from the template and its parameters' defaults."""
    return settings_model_of(function).from_environ(template_environ(function))


def variables_read_by(model: type[FunctionSettings]) -> set[str]:
    return {field.alias or name for name, field in model.model_fields.items()}


@pytest.mark.parametrize("function", FUNCTIONS)
def test_template_environment_holds_every_setting_its_function_requires(function: str) -> None:
    model = settings_model_of(function)
    required = {f.alias for f in model.model_fields.values() if f.is_required()}

    assert required <= set(environment_of(function))
    assert isinstance(settings_of(function), model)


@pytest.mark.parametrize("function", FUNCTIONS)
def test_template_function_environment_sets_only_what_its_settings_read(function: str) -> None:
    own = load_template()["Resources"][function]["Properties"].get("Environment", {})

    assert set(own.get("Variables", {})) <= variables_read_by(settings_model_of(function))


def test_template_global_environment_is_read_by_some_function_or_by_powertools() -> None:
    read = set().union(*(variables_read_by(settings_model_of(f)) for f in FUNCTIONS))
    variables = load_template()["Globals"]["Function"]["Environment"]["Variables"]

    assert {v for v in variables if not v.startswith("POWERTOOLS_")} <= read


def test_env_json_sets_only_declared_variables_to_values_the_settings_accept() -> None:
    # sam local (and devstack) apply env.json only to variables the template declares.
    local = json.loads((ROOT / "env.json").read_text())
    assert set(local) <= set(FUNCTIONS)
    for function, variables in local.items():
        assert set(variables) <= set(environment_of(function)), function
        settings_model_of(function).from_environ(template_environ(function) | variables)


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


# --- least privilege -------------------------------------------------------------------------

# The only statements allowed a wildcard resource: AWS offers nothing narrower for them (none
# since X-Ray tracing is off, see test_template_functions_are_not_traced).
WILDCARD_RESOURCE_ALLOWED: set[frozenset[str]] = set()


def iam_statements() -> Iterator[tuple[str, dict[str, Any]]]:
    """Every statement of every IAM policy the deployed stack holds (after the SAM transform)."""
    for name, resource in translated().items():
        props = resource.get("Properties") or {}
        if resource["Type"] == "AWS::IAM::Role":
            documents = [policy["PolicyDocument"] for policy in props.get("Policies", [])]
        elif resource["Type"] in ("AWS::IAM::Policy", "AWS::IAM::ManagedPolicy"):
            documents = [props["PolicyDocument"]]
        else:
            continue
        for document in documents:
            for statement in document["Statement"]:
                yield name, statement


def is_wildcard(resource: Any) -> bool:
    text = resource.get("Fn::Sub", "") if isinstance(resource, dict) else resource
    text = text[0] if isinstance(text, list) else text  # Fn::Sub: [template, variables]
    return isinstance(text, str) and "*" in text


# dynamodb:ListStreams names no stream (it lists a table's): AWS's own DynamoDBStreamReadPolicy
# grants it on the table's streams, and nothing wider is allowed.
TABLE_STREAMS = {"Fn::Sub": "${MailboxTable.Arn}/stream/*"}


def test_template_iam_has_no_wildcard_resource_except_where_aws_requires_it() -> None:
    checked = 0
    for owner, statement in iam_statements():
        checked += 1
        actions = frozenset(as_list(statement["Action"]))
        for resource in as_list(statement["Resource"]):
            if actions == {"dynamodb:ListStreams"}:
                assert resource == TABLE_STREAMS, (owner, statement)
            elif is_wildcard(resource):
                assert actions in WILDCARD_RESOURCE_ALLOWED, (owner, statement)
    assert checked >= 4 * len(FUNCTIONS)  # every function's role was seen


def test_template_iam_allows_named_actions_only() -> None:
    for owner, statement in iam_statements():
        assert statement["Effect"] == "Allow", (owner, statement)
        assert all("*" not in action for action in as_list(statement["Action"])), (owner, statement)


def test_template_iam_roles_attach_no_managed_policy() -> None:
    # AWS managed policies are opaque to the checks above, and those SAM attaches to the roles
    # it generates grant "*" (AWSLambdaBasicExecutionRole, AWSLambdaSQSQueueExecutionRole).
    roles = {k: v for k, v in translated().items() if v["Type"] == "AWS::IAM::Role"}
    # The functions' own, and the one SAM makes for the reconciler's EventBridge schedule.
    assert set(roles) == {f"{f}Role" for f in FUNCTIONS} | {"ReconcilerFunctionScheduleRole"}
    for name, role in roles.items():
        assert "ManagedPolicyArns" not in role["Properties"], name


@pytest.mark.parametrize("function", FUNCTIONS)
def test_template_function_has_its_own_role_writing_only_its_own_log_group(function: str) -> None:
    props = load_template()["Resources"][function]["Properties"]
    assert props["Role"] == {"Fn::GetAtt": [f"{function}Role", "Arn"]}
    log_group = props["LoggingConfig"]["LogGroup"]["Ref"]
    logs = [
        s for s in statements(function) if any(a.startswith("logs:") for a in as_list(s["Action"]))
    ]
    assert [(s["Action"], s["Resource"]) for s in logs] == [
        (["logs:CreateLogStream", "logs:PutLogEvents"], {"Fn::GetAtt": [log_group, "Arn"]})
    ]


def test_template_worker_sqs_permissions_are_work_queue_only() -> None:
    granted = {
        (action, str(statement["Resource"]))
        for statement in statements("WorkerFunction")
        for action in as_list(statement["Action"])
        if action.startswith("sqs:")
    }
    work_queue = str({"Fn::GetAtt": ["WorkQueue", "Arn"]})
    # The event source mapping's three (AWS's documented set), and SendMessage to defer.
    assert granted == {
        (action, work_queue)
        for action in (
            "sqs:ReceiveMessage",
            "sqs:DeleteMessage",
            "sqs:GetQueueAttributes",
            "sqs:SendMessage",
        )
    }


def test_template_only_mailbox_routes_use_iam_and_webhook_route_none() -> None:
    api = next(v for v in translated().values() if v["Type"] == "AWS::ApiGatewayV2::Api")
    security = {
        (path, method): operation.get("security")
        for path, operations in api["Properties"]["Body"]["paths"].items()
        for method, operation in operations.items()
    }
    assert security == {
        ("/mailboxes", "post"): [{"AWS_IAM": []}],
        ("/mailboxes", "get"): [{"AWS_IAM": []}],
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


def test_template_worker_batching_window_keeps_a_lone_webhook_within_a_second() -> None:
    """The window a lone webhook waits out before the worker sees it: chosen by `make bench`
    (e2e); above 1 s it adds latency to every onboarding and batches no more under load."""
    worker = load_template()["Resources"]["WorkerFunction"]["Properties"]
    window = worker["Events"]["WorkQueueBatch"]["Properties"]["MaximumBatchingWindowInSeconds"]
    assert 0 <= window <= 1


def test_template_queue_visibility_covers_six_worker_timeouts_plus_window() -> None:
    template = load_template()
    worker = template["Resources"]["WorkerFunction"]["Properties"]
    timeout = timeout_of("WorkerFunction")
    window = worker["Events"]["WorkQueueBatch"]["Properties"]["MaximumBatchingWindowInSeconds"]
    visibility = template["Resources"]["WorkQueue"]["Properties"]["VisibilityTimeout"]
    assert visibility >= 6 * timeout + window


# One unit of work per function that calls Mailivery; the webhook function never does.
UNIT_OF_WORK = {
    "OnboardingFunction": wiring.onboarding_request_seconds,
    "WorkerFunction": wiring.worker_record_seconds,
    "ReconcilerFunction": wiring.reconciler_page_seconds,
}


@pytest.mark.parametrize("function", sorted(UNIT_OF_WORK))
def test_template_function_timeout_exceeds_worst_case_of_one_unit_of_work(function: str) -> None:
    worst_case = UNIT_OF_WORK[function](settings_of(function))

    assert timeout_of(function) > worst_case


def test_template_api_functions_answer_within_http_api_integration_timeout() -> None:
    for name, definition in load_template()["Resources"].items():
        events = (definition.get("Properties") or {}).get("Events", {}).values()
        if any(event["Type"] == "HttpApi" for event in events):
            assert timeout_of(name) <= 30, f"{name}: HTTP API gives up after 30 s"


def test_template_claim_lease_outlasts_a_claim_held_by_a_live_worker() -> None:
    settings = settings_of("WorkerFunction")

    assert settings.claim_lease_seconds > wiring.claim_hold_seconds(settings)


def test_template_queues_encrypted_and_dlq_keeps_14_days() -> None:
    queues = resources_of("AWS::SQS::Queue")
    assert all(q["Properties"].get("SqsManagedSseEnabled") for q in queues.values())
    assert queues["WorkDLQ"]["Properties"]["MessageRetentionPeriod"] == 14 * 24 * 3600
    redrive = queues["WorkQueue"]["Properties"]["RedrivePolicy"]
    assert redrive == {
        "deadLetterTargetArn": {"Fn::GetAtt": ["WorkDLQ", "Arn"]},
        "maxReceiveCount": 5,
    }


WEBHOOK_QUEUES = ("WorkQueue", "WorkDLQ")


def test_template_queues_set_the_message_size_the_largest_webhook_was_sized_for() -> None:
    # The limit test_webhook_intake.py keeps the largest accepted webhook's message under.
    queues = resources_of("AWS::SQS::Queue")
    sizes = {name: queues[name]["Properties"].get("MaximumMessageSize") for name in WEBHOOK_QUEUES}
    assert sizes == {"WorkQueue": SQS_MAX_MESSAGE_BYTES, "WorkDLQ": SQS_MAX_MESSAGE_BYTES}


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


def test_template_functions_are_not_traced() -> None:
    # Decided by measurement (docs/architecture.md, "Tracing"): no Tracer, so no X-Ray.
    template = load_template()
    assert "Tracing" not in template["Globals"]["Function"]
    assert all("Tracing" not in (r.get("Properties") or {}) for r in template["Resources"].values())
    assert not any(
        str(action).startswith("xray:")
        for _, statement in iam_statements()
        for action in as_list(statement["Action"])
    )


def test_template_runtime_matches_tested_python() -> None:
    import sys

    runtime = load_template()["Globals"]["Function"]["Runtime"]
    assert runtime == f"python{sys.version_info.major}.{sys.version_info.minor}"


def test_template_outputs_needed_by_operators() -> None:
    outputs = load_template()["Outputs"]
    assert {
        "ApiUrl",
        "WebhookUrl",
        "WorkQueueUrl",
        "WorkDlqUrl",
        "MailboxTableName",
        "EventBusArn",
        "EventsDlqUrl",
    } <= set(outputs)


def test_template_every_alarm_notifies_the_optional_topic() -> None:
    alarms = resources_of("AWS::CloudWatch::Alarm")
    assert {
        "WorkDlqAlarm",
        "WorkerErrorsAlarm",
        "UnexpectedCampaignsAlarm",
        "StartFailuresAlarm",
        "ReconcilerErrorsAlarm",
        "WebhookFailuresAlarm",
        "EventsDlqAlarm",
        "EventsBehindAlarm",
    } <= set(alarms)
    for alarm in alarms.values():
        assert alarm["Properties"]["AlarmActions"] == {
            "Fn::If": ["HasAlarmTopic", [{"Ref": "AlarmTopicArn"}], {"Ref": "AWS::NoValue"}]
        }


def alarmed_metrics() -> Iterator[tuple[str, dict[str, Any]]]:
    """(alarm, {Namespace, MetricName, Dimensions}) for every metric an alarm watches."""
    for name, alarm in resources_of("AWS::CloudWatch::Alarm").items():
        props = alarm["Properties"]
        if "MetricName" in props:
            yield name, {k: props[k] for k in ("Namespace", "MetricName", "Dimensions")}
        for query in props.get("Metrics", []):
            if "MetricStat" in query:
                yield name, query["MetricStat"]["Metric"]


def test_template_alarms_watch_custom_metrics_where_powertools_puts_them() -> None:
    variables = environment_of("WorkerFunction")
    custom = [(a, m) for a, m in alarmed_metrics() if not m["Namespace"].startswith("AWS/")]
    assert custom
    for alarm, metric in custom:
        emitted = EphemeralMetrics(
            namespace=variables["POWERTOOLS_METRICS_NAMESPACE"],
            service=variables["POWERTOOLS_SERVICE_NAME"],
        )
        emitted.add_metric(name=metric["MetricName"], unit="Count", value=1)
        blob = emitted.serialize_metric_set()
        (directive,) = blob["_aws"]["CloudWatchMetrics"]
        (dimension_set,) = directive["Dimensions"]
        assert metric["Namespace"] == directive["Namespace"], alarm
        assert {d["Name"]: d["Value"] for d in metric["Dimensions"]} == {
            key: blob[key] for key in dimension_set
        }, alarm


def test_template_alarmed_custom_metrics_are_members_of_the_metric_enum() -> None:
    custom = [(a, m["MetricName"]) for a, m in alarmed_metrics() if m["Namespace"] == "warmgate"]
    assert {alarm for alarm, _ in custom} >= {"UnexpectedCampaignsAlarm", "StartFailuresAlarm"}
    for alarm, name in custom:
        assert name in set(Metric), (alarm, name)


def test_every_worker_outcome_and_deferral_kind_has_its_metric() -> None:
    for outcome in Outcome:
        assert Metric.of(outcome.value).name == outcome.name
    deferrals = {  # every literal a RetryLater(delay, kind, ...) of the worker may get as kind
        node.value
        for source in DEFERRING_SOURCES
        for call in ast.walk(ast.parse(source.read_text()))
        if isinstance(call, ast.Call) and getattr(call.func, "id", None) == "RetryLater"
        for node in ast.walk(call.args[1])
        if isinstance(node, ast.Constant) and isinstance(node.value, str)
    }
    assert deferrals >= {"rate_limited", "conflict", "busy", "start_failed", "outcome_unknown"}
    for kind in deferrals:
        assert Metric.of(kind)
    with pytest.raises(KeyError):
        Metric.of("no_such_outcome")


def test_template_alarmed_function_metrics_name_a_function_of_the_stack() -> None:
    for alarm, metric in alarmed_metrics():
        if metric["Namespace"] == "AWS/Lambda":
            (dimension,) = metric["Dimensions"]
            assert dimension["Name"] == "FunctionName", alarm
            assert dimension["Value"]["Ref"] in FUNCTIONS, alarm


def test_template_no_hard_coded_physical_names() -> None:
    for name, definition in load_template()["Resources"].items():
        props = definition.get("Properties") or {}
        for key in ("FunctionName", "TableName", "QueueName", "LogGroupName", "Name"):
            # A name made from the stack's own (an event bus must have one) is unique per stack.
            unique = "${AWS::StackName}" in str(props.get(key, {}).get("Fn::Sub", ""))
            assert key not in props or unique, (
                f"{name}.{key} would stop two stacks sharing an account"
            )


# --- mailbox events --------------------------------------------------------------------------


def test_template_table_streams_old_and_new_images_for_the_events() -> None:
    props = load_template()["Resources"]["MailboxTable"]["Properties"]

    assert props["StreamSpecification"] == {"StreamViewType": "NEW_AND_OLD_IMAGES"}


def test_template_events_trigger_keeps_order_retries_bounded_and_keeps_what_it_gives_up() -> None:
    mapping = translated()["EventsFunctionMailboxChanges"]["Properties"]

    assert mapping["EventSourceArn"] == {"Fn::GetAtt": ["MailboxTable", "StreamArn"]}
    assert mapping["ParallelizationFactor"] == 1  # one batch per shard: per-mailbox order
    assert mapping["FunctionResponseTypes"] == ["ReportBatchItemFailures"]
    assert mapping["BisectBatchOnFunctionError"] is True
    assert 0 < mapping["MaximumRetryAttempts"] <= 100
    # Given up on while the stream (24 h) still holds the records the DLQ message names.
    assert 0 < mapping["MaximumRecordAgeInSeconds"] < 24 * 3600
    assert mapping["DestinationConfig"] == {
        "OnFailure": {"Destination": {"Fn::GetAtt": ["EventsDLQ", "Arn"]}}
    }


def test_template_event_bus_is_the_parameters_or_the_stacks_own() -> None:
    template = load_template()
    bus = {
        "Fn::If": [
            "CreateEventBus",
            {"Fn::GetAtt": ["MailboxEventBus", "Arn"]},
            {"Ref": "EventBusArn"},
        ]
    }

    assert template["Conditions"]["CreateEventBus"] == {"Fn::Equals": [{"Ref": "EventBusArn"}, ""]}
    assert template["Resources"]["MailboxEventBus"]["Condition"] == "CreateEventBus"
    assert environment_of("EventsFunction")["EVENT_BUS_NAME"] == bus
    granted = [
        s for s in statements("EventsFunction") if "events:PutEvents" in as_list(s["Action"])
    ]
    assert [s["Resource"] for s in granted] == [bus]
    assert template["Outputs"]["EventBusArn"]["Value"] == bus


def test_template_events_function_reads_only_the_table_stream_and_writes_only_its_dlq() -> None:
    granted = {
        (action, str(statement["Resource"]))
        for statement in statements("EventsFunction")
        for action in as_list(statement["Action"])
        if action.startswith(("dynamodb:", "sqs:"))
    }
    stream = str({"Fn::GetAtt": ["MailboxTable", "StreamArn"]})

    assert granted == {
        ("dynamodb:DescribeStream", stream),
        ("dynamodb:GetRecords", stream),
        ("dynamodb:GetShardIterator", stream),
        ("dynamodb:ListStreams", str(TABLE_STREAMS)),
        ("sqs:SendMessage", str({"Fn::GetAtt": ["EventsDLQ", "Arn"]})),
    }
