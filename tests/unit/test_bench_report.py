"""The benchmarks' pure helpers: statistics, formatting, goals, and the parsers each benchmark
uses on its raw data. Benchmarks are not tests (nothing here is timed); this keeps their
arithmetic honest and exercised in CI."""

from __future__ import annotations

import pytest

from bench.aws_calls import attribute_size, dynamodb_units, item_size
from bench.cold_init import ImportRecord, parse_importtime, top_imports
from bench.cost import PRICES, FunctionUsage, Usage, components, per_invocation_dollars
from bench.cpu_profile import entry_shares, merge
from bench.e2e_taps import latencies
from bench.pacing import busiest_window, epoch_seconds, first_minute, steady_state
from bench.report import (
    Goal,
    Row,
    Table,
    cpu_model,
    format_number,
    format_quantity,
    format_ratio,
    median,
    percentile,
    ratio,
)
from bench.servers import aws_stub_answer

# --- statistics ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0, 1.0), (50, 2.5), (100, 4.0), (25, 1.75), (99, 3.97)],
)
def test_percentile_interpolates_linearly_between_ranks(q: float, expected: float) -> None:
    assert percentile([4.0, 1.0, 3.0, 2.0], q) == pytest.approx(expected)


def test_percentile_of_one_value_is_that_value() -> None:
    assert percentile([7.0], 99) == 7.0


@pytest.mark.parametrize("q", [-1, 101])
def test_percentile_outside_0_100_raises(q: float) -> None:
    with pytest.raises(ValueError, match=r"within 0\.\.100"):
        percentile([1.0], q)


def test_percentile_and_median_of_nothing_raise() -> None:
    with pytest.raises(ValueError, match="no values"):
        percentile([], 50)
    with pytest.raises(ValueError, match="no values"):
        median([])


def test_median_of_even_count_is_mean_of_middle_pair() -> None:
    assert median([1.0, 10.0, 2.0, 3.0]) == 2.5


def test_ratio_missing_or_zero_denominator_is_none() -> None:
    assert ratio(3.0, 2.0) == 1.5
    assert ratio(None, 2.0) is None
    assert ratio(3.0, None) is None
    assert ratio(3.0, 0.0) is None


# --- formatting ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (0, "0"),
        (200, "200"),
        (1234.6, "1235"),
        (12.34, "12.3"),
        (2.345, "2.35"),
        (0.01234, "0.0123"),
    ],
)
def test_format_number_keeps_three_significant_figures(value: float, text: str) -> None:
    assert format_number(value) == text


def test_format_quantity_percent_and_units() -> None:
    assert format_quantity(0.9583, "%") == "95.8 %"
    assert format_quantity(612.04, "ms") == "612 ms"
    assert format_quantity(None, "ms") == "-"
    assert format_quantity(3, "") == "3"


def test_format_ratio_has_times_sign_or_dash() -> None:
    assert format_ratio(1.567) == "1.57×"  # noqa: RUF001 - the symbol printed
    assert format_ratio(None) == "-"


# --- goals and rows ------------------------------------------------------------------------------


def test_row_value_goal_met_and_missed() -> None:
    goal = Goal("<=", 250, "ms")
    assert Row("webhook Init", 200.0, "ms", goal=goal).status == "goal met"
    assert Row("webhook Init", 251.0, "ms", goal=goal).status == "goal missed"
    assert str(goal) == "≤ 250 ms"


def test_row_ratio_goal_reads_the_ratio_not_the_value() -> None:
    goal = Goal(">=", 2.0, on="ratio")
    assert Row("saved", 500.0, "ms", baseline=900.0, ratio=2.2, goal=goal).status == "goal met"
    assert Row("saved", 500.0, "ms", baseline=900.0, ratio=1.8, goal=goal).status == "goal missed"
    assert str(goal) == "ratio ≥ 2×"  # noqa: RUF001 - the symbol printed


def test_row_without_data_or_goal() -> None:
    assert Row("x", None, "ms", goal=Goal("<=", 1.0, "ms")).status == "no data"
    assert Row("x", 1.0, "ms").status == ""


def test_row_status_note_explains_the_verdict() -> None:
    row = Row("share", 0.95, "%", goal=Goal(">=", 0.97, "%"), status_note="unreachable")
    assert row.status == "goal missed (unreachable)"
    assert row.to_json()["goal"] == "≥ 97.0 %"


def test_table_render_aligns_columns_and_prints_notes() -> None:
    table = Table("t", "Title", notes=["a note"], details=["detail line"])
    table.add(Row("short", 1.0, "ms", baseline=2.0, ratio=0.5))
    table.add(Row("a much longer metric", 10.0, "ms"))
    lines = table.render().splitlines()
    rows = [line for line in lines if line.startswith("|")]
    assert len({len(line) for line in rows}) == 1  # every row as wide as the header
    assert rows[0].split("|")[1].strip() == "metric"
    assert "- a note" in lines
    assert "detail line" in lines


def test_cpu_model_x86_and_arm_cpuinfo() -> None:
    assert cpu_model("processor\t: 0\nmodel name\t: AMD EPYC 7B13\n") == "AMD EPYC 7B13"
    assert cpu_model("processor\t: 0\nBogoMIPS\t: 243.75\nModel\t: Raspberry Pi 5\n") == (
        "Raspberry Pi 5"
    )


# --- cold init: -X importtime --------------------------------------------------------------------

IMPORTTIME = """\
import time: self [us] | cumulative | imported package
import time:       120 |        120 |   _io
import time:       444 |     284506 |   boto3
import time:       567 |     205166 |     boto3.compat
import time:     90449 |     594868 | app
"""


def test_parse_importtime_reads_times_and_depth() -> None:
    records = parse_importtime(IMPORTTIME)
    assert [r.name for r in records] == ["_io", "boto3", "boto3.compat", "app"]
    assert records[2] == ImportRecord("boto3.compat", 567, 205166, 2)
    assert records[3].depth == 0


def test_top_imports_by_cumulative_without_the_handler_itself() -> None:
    top = top_imports(parse_importtime(IMPORTTIME), count=2)
    assert [r.name for r in top] == ["boto3", "boto3.compat"]


# --- throughput ----------------------------------------------------------------------------------


def test_steady_state_leaves_out_the_burst() -> None:
    # 3 calls at once (the burst), then one per second of wall time for 4 s, scale 10
    times = [0.0, 0.0, 0.0, 1.0, 2.0, 3.0, 4.0]
    window = steady_state(times, burst=3, scale=10)
    assert window.calls == 4
    assert window.scaled_seconds == 40
    assert window.per_minute == 6


def test_steady_state_without_calls_after_burst_is_empty() -> None:
    assert steady_state([0.0, 0.1], burst=3, scale=10).per_minute == 0


def test_first_minute_counts_calls_within_60_scaled_seconds() -> None:
    assert first_minute([10.0, 11.0, 15.9, 16.0, 20.0], scale=10) == 3
    assert first_minute([], scale=10) == 0


def test_epoch_seconds_reads_the_sandbox_call_log_time() -> None:
    assert epoch_seconds("1970-01-01T00:01:00.250000Z") == 60.25


# --- warm CPU: profile shares --------------------------------------------------------------------


def test_entry_shares_sum_cumulative_time_of_entry_points() -> None:
    stats = {
        ("/x/botocore/client.py", 1, "_api_call"): (2, 2, 0.1, 0.6, None),
        ("/x/warmgate/services/worker.py", 1, "handle"): (1, 1, 0.3, 1.0, None),
        ("/x/botocore/endpoint.py", 1, "_send"): (2, 2, 0.5, 0.5, None),
        ("/x/httpx/_client.py", 1, "request"): (1, 1, 0.1, 0.1, None),
    }
    shares = entry_shares(
        stats,
        {
            "botocore": ("botocore/client.py", "_api_call"),
            "httpx": ("httpx/_client.py", "request"),
        },
    )
    assert shares.total_s == pytest.approx(1.0)
    assert shares.shares == pytest.approx({"botocore": 0.6, "httpx": 0.1})
    assert shares.calls == {"botocore": 2, "httpx": 1}


def test_merge_adds_profiles_function_by_function() -> None:
    key = ("/x/a.py", 1, "f")
    merged = merge([{key: (1, 1, 0.1, 0.2, {})}, {key: (2, 2, 0.3, 0.4, {})}])
    assert merged[key][:4] == pytest.approx((3, 3, 0.4, 0.6))


# --- end to end ----------------------------------------------------------------------------------


def test_latencies_pair_accepted_with_the_start_call_of_the_same_campaign() -> None:
    calls = [
        {"method": "GET", "path": "/api/v1/campaigns/7", "status": 200, "time": "x"},
        {
            "method": "PATCH",
            "path": "/api/v1/campaigns/7/start-warmup",
            "status": 200,
            "time": "1970-01-01T00:00:10.500000Z",
        },
        {
            "method": "PATCH",
            "path": "/api/v1/campaigns/8/start-warmup",
            "status": 429,
            "time": "1970-01-01T00:00:11.000000Z",
        },
    ]
    assert latencies(["7", "8"], {"7": 10.0, "8": 10.0}, calls) == [0.5]


# --- the loopback AWS stub -----------------------------------------------------------------------


def test_aws_stub_answers_send_message_with_body_md5() -> None:
    status, content_type, body = aws_stub_answer(
        "AmazonSQS.SendMessage", {"MessageBody": "hello"}, "secret"
    )
    assert (status, content_type) == (200, "application/x-amz-json-1.0")
    assert body["MD5OfMessageBody"] == "5d41402abc4b2a76b9719d911017c592"


def test_aws_stub_answers_get_secret_value_and_refuses_the_rest() -> None:
    _, _, secret = aws_stub_answer("secretsmanager.GetSecretValue", {"SecretId": "s"}, "token")
    assert secret["SecretString"] == "token"
    assert aws_stub_answer("AmazonSQS.DeleteQueue", {}, "token")[0] == 400


# --- DynamoDB capacity units (bench.aws_calls) ----------------------------------------------------


def test_attribute_sizes_follow_dynamodb_sizing_rules() -> None:
    assert attribute_size({"S": "héllo"}) == 6  # UTF-8 bytes
    assert attribute_size({"N": "1700000000123456"}) == 9  # 16 digits: 8 bytes + 1
    assert attribute_size({"N": "-0.050"}) == 2  # significant digits only
    assert attribute_size({"BOOL": True}) == attribute_size({"NULL": True}) == 1
    assert attribute_size({"L": [{"S": "ab"}, {"N": "7"}]}) == 3 + (1 + 2) + (1 + 2)
    assert attribute_size({"M": {"at": {"S": "x"}}}) == 3 + 1 + 2 + 1
    assert item_size({"pk": {"S": "budget#mailivery"}, "tat": {"N": "12"}}) == 2 + 16 + 3 + 2


def test_dynamodb_units_per_operation() -> None:
    big = {"pk": {"S": "mailbox#a"}, "history": {"S": "x" * 5000}}  # ~5 KB
    small = {"pk": {"S": "campaign#1"}}
    batch = {
        "RequestItems": {
            "t": {"Keys": [{"pk": big["pk"]}, {"pk": small["pk"]}], "ConsistentRead": True}
        }
    }

    # 5 KB read consistently: 2 RRU; a key not found still costs 1.
    assert dynamodb_units("BatchGetItem", batch, {"Responses": {"t": [big]}}) == (3.0, 0.0)
    assert dynamodb_units("GetItem", {"ConsistentRead": False}, {"Item": small}) == (0.5, 0.0)
    assert dynamodb_units("PutItem", {"Item": big}, {}) == (0.0, 5.0)  # 1 WRU per KB
    update = {"Key": small, "ExpressionAttributeValues": {":next": {"N": "1"}}}
    assert dynamodb_units("UpdateItem", update, {}) == (0.0, 1.0)
    transaction = {"TransactItems": [{"Put": {"Item": big}}, {"Update": update}]}
    assert dynamodb_units("TransactWriteItems", transaction, {}) == (0.0, 12.0)  # twice


# --- cost per 1,000 onboardings (bench.cost) ------------------------------------------------------


def usage(onboardings: int = 10) -> Usage:
    return Usage(
        onboardings=onboardings,
        functions={
            "OnboardingFunction": FunctionUsage(10, 0.5, 10, 10_000),
            "WebhookFunction": FunctionUsage(10, 0.1, 0, 5_000),
            "WorkerFunction": FunctionUsage(10, 1.0, 20, 20_000),
        },
        aws_calls={"sqs.SendMessage": 10, "secretsmanager.GetSecretValue": 2},
        read_units=30.0,
        write_units=120.0,
        memory_gb={"OnboardingFunction": 0.5, "WebhookFunction": 0.5, "WorkerFunction": 0.5},
    )


def test_cost_components_scale_counts_to_1000_onboardings() -> None:
    by_name = {c.name: c for c in components(usage())}

    assert by_name["Lambda requests"].quantity == 3000
    # (0.5 + 0.1 + 1.0 s measured + 30 Mailivery calls x 0.3 s assumed) x 0.5 GB, x 100
    assert by_name["Lambda duration (arm64)"].quantity == pytest.approx(530)
    assert by_name["API Gateway HTTP API requests"].quantity == 2000
    assert by_name["SQS requests"].quantity == (10 + 2 * 10) * 100  # + receive/delete per batch
    assert by_name["DynamoDB write units"].quantity == 12_000
    assert by_name["DynamoDB write units"].dollars == pytest.approx(12_000 * PRICES["dynamodb_wru"])
    assert by_name["Secrets Manager calls"].quantity == 200
    assert by_name["CloudWatch Logs ingested"].quantity == pytest.approx(
        (35_000 + 330 * 30) * 100 / 1e9
    )


def test_cost_per_extra_worker_invocation_counts_its_fixed_parts() -> None:
    worker = per_invocation_dollars(usage(), "WorkerFunction")
    webhook = per_invocation_dollars(usage(), "WebhookFunction")

    assert worker - webhook == pytest.approx(
        2 * PRICES["sqs_request"] + (2_000 - 500) / 1e9 * PRICES["logs_ingested_gb"]
    )


def test_busiest_window_counts_a_closed_interval() -> None:
    assert busiest_window([0.0, 30.0, 60.0, 60.1, 120.0], 60.0) == 3
    assert busiest_window([], 60.0) == 0
