"""Read template.yaml and create its data resources in a local AWS endpoint (moto).

Tests and the local stack build the table and queues from the template's own properties, so a
key-schema or redrive change in the template is what they run against.
"""

from __future__ import annotations

import json
from functools import cache
from pathlib import Path
from typing import Any

import yaml

ROOT = Path(__file__).resolve().parent.parent
TEMPLATE = ROOT / "template.yaml"


class _CfnLoader(yaml.SafeLoader):
    """SafeLoader that keeps CloudFormation short-form tags (!Ref, !Sub …) as {"Fn": value}."""


def _intrinsic(loader: yaml.SafeLoader, suffix: str, node: yaml.Node) -> dict[str, Any]:
    name = "Ref" if suffix == "Ref" else f"Fn::{suffix}"
    value: Any
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
        if suffix == "GetAtt":
            value = value.split(".", 1)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)  # type: ignore[arg-type]
    return {name: value}


_CfnLoader.add_multi_constructor("!", _intrinsic)


@cache
def load_template(path: Path = TEMPLATE) -> dict[str, Any]:
    with path.open() as handle:
        document = yaml.load(handle, Loader=_CfnLoader)  # noqa: S506 - SafeLoader subclass
    if not isinstance(document, dict):
        raise ValueError(f"{path} is not a template")
    return document


def resource(logical_id: str, template: dict[str, Any] | None = None) -> dict[str, Any]:
    resources = (template or load_template())["Resources"]
    if logical_id not in resources:
        raise KeyError(f"template.yaml has no resource {logical_id}")
    result: dict[str, Any] = resources[logical_id]
    return result


def create_table(dynamodb: Any, logical_id: str, table_name: str) -> str:
    """Create `logical_id`'s table with the template's key schema, indexes, stream and TTL."""
    props = resource(logical_id)["Properties"]
    args: dict[str, Any] = {
        "TableName": table_name,
        "AttributeDefinitions": props["AttributeDefinitions"],
        "KeySchema": props["KeySchema"],
        "BillingMode": props.get("BillingMode", "PAY_PER_REQUEST"),
    }
    if "GlobalSecondaryIndexes" in props:
        args["GlobalSecondaryIndexes"] = props["GlobalSecondaryIndexes"]
    stream = props.get("StreamSpecification")
    if stream:  # CloudFormation's has the view type only; the API also wants it switched on
        args["StreamSpecification"] = {"StreamEnabled": True, **stream}
    dynamodb.create_table(**args)
    ttl = props.get("TimeToLiveSpecification")
    if ttl:
        dynamodb.update_time_to_live(TableName=table_name, TimeToLiveSpecification=ttl)
    return table_name


# AWS::SQS::Queue properties that are SQS queue attributes of the same name.
_QUEUE_ATTRIBUTES = (
    "ContentBasedDeduplication",
    "DeduplicationScope",
    "DelaySeconds",
    "FifoQueue",
    "FifoThroughputLimit",
    "KmsDataKeyReusePeriodSeconds",
    "KmsMasterKeyId",
    "MaximumMessageSize",
    "MessageRetentionPeriod",
    "ReceiveMessageWaitTimeSeconds",
    "SqsManagedSseEnabled",
    "VisibilityTimeout",
)


def create_queues(
    sqs: Any, name_prefix: str = "warmgate", template: dict[str, Any] | None = None
) -> dict[str, str]:
    """Create every AWS::SQS::Queue of the template, dead-letter targets first, with the
    template's attributes and redrive policy. Queues are named `<name_prefix>-<LogicalId>`
    (the template names none). Returns {logical id: queue URL}, e.g. WorkQueue and WorkDLQ."""
    resources = (template or load_template())["Resources"]
    pending = {
        logical_id: definition.get("Properties") or {}
        for logical_id, definition in resources.items()
        if definition.get("Type") == "AWS::SQS::Queue"
    }
    urls: dict[str, str] = {}
    arns: dict[str, str] = {}
    while pending:
        ready = [
            logical_id
            for logical_id, props in pending.items()
            if _dead_letter_target(logical_id, props) in (None, *arns)
        ]
        if not ready:
            raise ValueError(f"unresolvable dead-letter targets in queues {sorted(pending)}")
        for logical_id in ready:
            props = pending.pop(logical_id)
            attributes = {
                name: _attribute_text(logical_id, name, props[name])
                for name in _QUEUE_ATTRIBUTES
                if name in props
            }
            target = _dead_letter_target(logical_id, props)
            if target is not None:
                redrive = {**props["RedrivePolicy"], "deadLetterTargetArn": arns[target]}
                attributes["RedrivePolicy"] = json.dumps(redrive)
            name = f"{name_prefix}-{logical_id}"
            if attributes.get("FifoQueue") == "true":
                name += ".fifo"
            url: str = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
            queue_attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
            urls[logical_id] = url
            arns[logical_id] = queue_attributes["Attributes"]["QueueArn"]
    return urls


def _dead_letter_target(logical_id: str, props: dict[str, Any]) -> str | None:
    """The logical id a RedrivePolicy's `!GetAtt <Queue>.Arn` points to, if any."""
    redrive = props.get("RedrivePolicy")
    if not redrive:
        return None
    target = redrive.get("deadLetterTargetArn")
    match target:
        case {"Fn::GetAtt": [str() as queue, "Arn"]}:
            return queue
    raise ValueError(f"{logical_id}: deadLetterTargetArn must be !GetAtt <Queue>.Arn")


def _attribute_text(logical_id: str, name: str, value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | str):
        return str(value)
    raise ValueError(f"{logical_id}.{name}: only literal values are supported locally")


def translate_template(region: str = "us-east-1") -> dict[str, Any]:
    """The CloudFormation the SAM transform makes of template.yaml (as `sam validate` does:
    local CodeUri/ContentUri become placeholder S3 URIs). Needs aws-sam-translator."""
    import copy
    import os

    from samtranslator.translator.transform import transform

    class _NoManagedPolicies:
        def load(self) -> dict[str, str]:
            return {}

    document = copy.deepcopy(load_template())
    for definition in document["Resources"].values():
        props = definition.get("Properties") or {}
        for key in ("CodeUri", "ContentUri"):
            if isinstance(props.get(key), str):
                props[key] = f"s3://bucket/{props[key].strip('/')}"
    previous = os.environ.get("AWS_DEFAULT_REGION")
    os.environ["AWS_DEFAULT_REGION"] = region  # the translator resolves pseudo parameters
    try:
        result: dict[str, Any] = transform(document, {}, _NoManagedPolicies())
    finally:
        if previous is None:
            os.environ.pop("AWS_DEFAULT_REGION", None)
        else:
            os.environ["AWS_DEFAULT_REGION"] = previous
    return result
