"""The operations CLI (`warmgate-ops`, ops/) against moto and the Mailivery sandbox.

Called in-process through `warmgate_ops.cli.main(argv)`, inside the `stack` fixture's moto, with the
environment the functions read; one smoke test runs it as a real process against a moto server.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from devstack.template import create_table
from tests.integration.harness import ADA, ROOT, TABLE, Stack, pending
from warmgate.adapters.dynamodb import MailboxRepository
from warmgate_ops import cli
from warmgate_ops.config import EXIT_BAD_INPUT, EXIT_DEFERRED, EXIT_NOT_FOUND, EXIT_OK

EVE = "eve@contoso.com"
GRACE = "grace@contoso.com"


@pytest.fixture
def dlq_url(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> str:
    """WorkDLQ as create_queues names it (`warmgate-WorkDLQ`), exported like WORK_QUEUE_URL."""
    url: str = stack.sqs.get_queue_url(QueueName="warmgate-WorkDLQ")["QueueUrl"]
    monkeypatch.setenv("WORK_DLQ_URL", url)
    return url


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    """The CLI's exit code, stdout and stderr (the handlers' earlier log lines discarded)."""
    capsys.readouterr()
    code = cli.main(list(argv))
    captured = capsys.readouterr()
    return code, captured.out, captured.err


def warming(stack: Stack, email: str = ADA) -> str:
    """An expected mailbox taken through consent and the worker; returns its campaign id."""
    campaign_id = stack.consent(stack.expect(email))
    assert stack.deliver(pending(campaign_id, email)) == []
    return campaign_id


def queue_size(stack: Stack, url: str) -> dict[str, int]:
    attributes = stack.sqs.get_queue_attributes(
        QueueUrl=url,
        AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"],
    )["Attributes"]
    return {
        "visible": int(attributes["ApproximateNumberOfMessages"]),
        "hidden": int(attributes["ApproximateNumberOfMessagesNotVisible"]),
    }


def drain(stack: Stack, url: str) -> list[dict[str, Any]]:
    """Every visible message of the queue (received, and kept hidden for the test's rest)."""
    received: list[dict[str, Any]] = []
    for _ in range(20):
        batch = stack.sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            VisibilityTimeout=300,
            MessageAttributeNames=["All"],
        ).get("Messages", [])
        if not batch:
            break
        received += batch
    return received


def dead_letters(stack: Stack, url: str, count: int) -> list[str]:
    """`count` webhook messages put straight into the DLQ, as WorkQueue's redrive would."""
    bodies = [pending(str(4700 + n), f"user{n}@contoso.com") for n in range(count)]
    for body in bodies:
        queued = json.loads(body)
        stack.sqs.send_message(
            QueueUrl=url,
            MessageBody=body,
            MessageAttributes={
                "event_type": {"DataType": "String", "StringValue": queued["event_type"]},
                "dedup_key": {"DataType": "String", "StringValue": queued["dedup_key"]},
            },
        )
    return bodies


# --- mailbox show ------------------------------------------------------------------------------


def test_mailbox_show_warming_mailbox_prints_record_and_history(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    campaign_id = warming(stack)

    code, out, _ = run(capsys, "mailbox", "show", "  Ada.Lovelace@CONTOSO.com ")

    assert code == EXIT_OK
    assert ADA in out
    assert campaign_id in out
    history = out.split("history (oldest first)")[1].splitlines()
    rows = [line.split()[1:3] for line in history[3:] if line.strip()]
    assert rows == [
        ["-", "consent_requested"],
        ["consent_requested", "verifying"],
        ["verifying", "warming"],
    ]


def test_mailbox_show_json_has_record_fields(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    campaign_id = warming(stack)

    code, out, _ = run(capsys, "mailbox", "show", ADA, "--json")

    assert code == EXIT_OK
    record = json.loads(out)
    assert record["email"] == ADA
    assert record["state"] == "warming"
    assert record["campaign_id"] == campaign_id
    assert record["requested_by"]
    assert "requested_by_principal" in record
    assert record["expires_at"].endswith("Z")
    assert record["last_error"] is None
    assert [t["to"] for t in record["history"]] == ["consent_requested", "verifying", "warming"]
    assert "consent_url" not in record


def test_mailbox_show_unknown_email_exits_1(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, err = run(capsys, "mailbox", "show", EVE)

    assert code == EXIT_NOT_FOUND
    assert out == ""
    assert f"no record for {EVE}" in err


def test_mailbox_show_invalid_email_exits_2_with_reason(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "mailbox", "show", "not-an-address")

    assert code == EXIT_BAD_INPUT
    assert "not a plausible mailbox address" in err


def test_mailbox_show_look_alike_email_exits_2_instead_of_showing_another_mailbox(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    warming(stack, email="kate@contoso.com")

    code, out, err = run(capsys, "mailbox", "show", "\u212aate@contoso.com")  # KELVIN SIGN

    assert code == EXIT_BAD_INPUT
    assert out == ""
    assert "not ASCII" in err


# --- mailbox list -------------------------------------------------------------------------------


def test_mailbox_list_state_filter_lists_only_that_state(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    warming(stack)
    stack.expect(GRACE)

    code, out, _ = run(capsys, "mailbox", "list", "--state", "consent_requested")

    assert code == EXIT_OK
    assert GRACE in out
    assert ADA not in out
    assert "consent_requested: 1" in out
    assert "warming:" not in out
    assert "total: 1" in out


def test_mailbox_list_all_states_counts_each_state(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    warming(stack)
    stack.expect(GRACE)
    stack.expect(EVE)

    code, out, _ = run(capsys, "mailbox", "list")
    _, as_json, _ = run(capsys, "mailbox", "list", "--json")

    assert code == EXIT_OK
    assert out.splitlines()[-3:] == ["consent_requested: 2", "warming: 1", "total: 3"]
    listing = json.loads(as_json)
    assert listing["counts"] == {"consent_requested": 2, "warming": 1}
    assert [m["email"] for m in listing["mailboxes"]] == [ADA, EVE, GRACE]


def test_mailbox_list_unknown_state_exits_2(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(capsys, "mailbox", "list", "--state", "sleeping")

    assert code == EXIT_BAD_INPUT
    assert "sleeping" in err


# --- campaigns unexpected -----------------------------------------------------------------------


def test_campaigns_unexpected_left_pending_campaign_is_listed(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    campaign_id = str(stack.control.seed_campaign(email=EVE)["id"])
    warming(stack)  # an expected campaign: not in the ledger
    stack.deliver(pending(campaign_id, EVE))

    code, out, _ = run(capsys, "campaigns", "unexpected")
    _, as_json, _ = run(capsys, "campaigns", "unexpected", "--json")

    assert code == EXIT_OK
    row = next(line for line in out.splitlines() if line.startswith(campaign_id))
    assert EVE in row
    assert "left_pending" in row
    assert "total: 1" in out
    [entry] = json.loads(as_json)
    assert entry["campaign_id"] == campaign_id
    assert entry["email"] == EVE
    assert entry["state"] == "left_pending"
    assert entry["reason"]
    assert entry["first_seen_at"].endswith("Z")


def test_campaigns_unexpected_empty_ledger_prints_none(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    warming(stack)

    code, out, _ = run(capsys, "campaigns", "unexpected")

    assert code == EXIT_OK
    assert out.startswith("(none)")
    assert "total: 0" in out


# --- dlq peek -----------------------------------------------------------------------------------


def test_dlq_peek_shows_messages_and_leaves_them_in_place(
    stack: Stack, dlq_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letters(stack, dlq_url, 3)

    code, out, _ = run(capsys, "dlq", "peek", "--json")

    assert code == EXIT_OK
    shown = json.loads(out)
    assert sorted(m["campaign_id"] for m in shown) == ["4700", "4701", "4702"]
    assert {m["event_type"] for m in shown} == {"campaign.pending"}
    assert all(m["receive_count"] == 1 and m["age_seconds"] >= 0 for m in shown)
    assert queue_size(stack, dlq_url) == {"visible": 3, "hidden": 0}
    assert len(drain(stack, dlq_url)) == 3


def test_dlq_peek_max_limits_messages_shown(
    stack: Stack, dlq_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letters(stack, dlq_url, 14)

    code, out, _ = run(capsys, "dlq", "peek", "--max", "12", "--wait", "0")

    assert code == EXIT_OK
    assert "shown: 12" in out
    assert out.count("campaign.pending") == 12
    assert queue_size(stack, dlq_url) == {"visible": 14, "hidden": 0}


def test_dlq_peek_unreadable_body_is_shown_as_such(
    stack: Stack, dlq_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.sqs.send_message(QueueUrl=dlq_url, MessageBody="{not json")

    code, out, _ = run(capsys, "dlq", "peek", "--wait", "0")

    assert code == EXIT_OK
    assert "<unreadable body>" in out


# --- dlq redrive --------------------------------------------------------------------------------


def test_dlq_redrive_twice_moves_each_message_once(
    stack: Stack, dlq_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    bodies = dead_letters(stack, dlq_url, 12)  # more than one receive batch

    first, out, err = run(capsys, "dlq", "redrive")
    second, again, _ = run(capsys, "dlq", "redrive")

    assert (first, second) == (EXIT_OK, EXIT_OK)
    assert out.startswith("moved 12 message(s)")
    assert "moved 10/12" in err
    assert "moved 12/12" in err
    assert again.startswith("moved 0 message(s)")
    assert queue_size(stack, dlq_url) == {"visible": 0, "hidden": 0}
    assert queue_size(stack, stack.queue_url) == {"visible": 12, "hidden": 0}
    moved = drain(stack, stack.queue_url)
    assert sorted(m["Body"] for m in moved) == sorted(bodies)
    assert {m["MessageAttributes"]["event_type"]["StringValue"] for m in moved} == {
        "campaign.pending"
    }


def test_dlq_redrive_max_moves_only_that_many(
    stack: Stack, dlq_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letters(stack, dlq_url, 5)

    code, out, _ = run(capsys, "dlq", "redrive", "--max", "3", "--wait", "0")

    assert code == EXIT_OK
    assert out.startswith("moved 3 message(s)")
    assert queue_size(stack, stack.queue_url)["visible"] == 3
    assert queue_size(stack, dlq_url) == {"visible": 2, "hidden": 0}


def test_dlq_redrive_dry_run_moves_nothing(
    stack: Stack, dlq_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letters(stack, dlq_url, 4)

    code, out, _ = run(capsys, "dlq", "redrive", "--dry-run", "--wait", "0")

    assert code == EXIT_OK
    assert "dry run: would move 4 message(s)" in out
    assert queue_size(stack, dlq_url) == {"visible": 4, "hidden": 0}
    assert queue_size(stack, stack.queue_url) == {"visible": 0, "hidden": 0}


def test_dlq_redrive_failed_send_keeps_message_in_dlq_exit_3(
    stack: Stack, dlq_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    dead_letters(stack, dlq_url, 2)
    missing = stack.queue_url.rsplit("/", 1)[0] + "/warmgate-NoSuchQueue"

    code, out, err = run(capsys, "dlq", "redrive", "--wait", "0", "--queue-url", missing)

    assert code == EXIT_DEFERRED
    assert out.startswith("moved 0 message(s)")
    assert "2 not sent" in out
    assert err.count("not moved ") == 2
    assert queue_size(stack, dlq_url) == {"visible": 0, "hidden": 2}  # back after the hold
    assert queue_size(stack, stack.queue_url) == {"visible": 0, "hidden": 0}


def test_dlq_redrive_cannot_use_message_move_task_locally(stack: Stack, dlq_url: str) -> None:
    """One reason redrive receives and sends (warmgate_ops.dead_letters): moto has no
    StartMessageMoveTask. When this fails, moto has it: weigh the other reasons again."""
    arns = [
        stack.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        for url in (dlq_url, stack.queue_url)
    ]

    with pytest.raises(NotImplementedError, match="start_message_move_task"):
        stack.sqs.start_message_move_task(SourceArn=arns[0], DestinationArn=arns[1])


def test_dlq_redrive_moved_message_is_handled_by_the_worker(
    stack: Stack, dlq_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    campaign_id = stack.consent(stack.expect())
    stack.sqs.send_message(QueueUrl=dlq_url, MessageBody=pending(campaign_id))

    run(capsys, "dlq", "redrive", "--wait", "0")
    [moved] = drain(stack, stack.queue_url)
    stack.deliver(moved["Body"])

    assert stack.mailbox()["state"] == "warming"


# --- campaign redecide --------------------------------------------------------------------------


def test_campaign_redecide_expected_pending_starts_once(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    campaign_id = stack.consent(stack.expect())  # the webhook was lost: nothing delivered

    first, out, _ = run(capsys, "campaign", "redecide", campaign_id)
    second, again, _ = run(capsys, "campaign", "redecide", campaign_id)

    assert (first, second) == (EXIT_OK, EXIT_OK)
    assert out.strip() == f"{campaign_id}: started"
    assert again.strip() == f"{campaign_id}: duplicate"  # warming with this campaign already
    assert len(stack.vendor_calls(f"/campaigns/{campaign_id}/start-warmup")) == 1
    assert stack.mailbox()["state"] == "warming"
    assert queue_size(stack, stack.queue_url) == {"visible": 0, "hidden": 0}


def test_campaign_redecide_dry_run_prints_decision_without_acting(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    campaign_id = stack.consent(stack.expect())

    code, out, _ = run(capsys, "campaign", "redecide", campaign_id, "--dry-run")

    assert code == EXIT_OK
    assert out.startswith("dry run: action start, outcome started")
    assert stack.vendor_calls("") == []  # no PATCH
    assert stack.mailbox()["state"] == "consent_requested"


def test_campaign_redecide_rate_limited_is_deferred_exit_3(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    campaign_id = stack.consent(stack.expect())
    stack.control.set_rate_limit(1)  # a fresh window: the re-read passes, the start gets 429

    code, out, _ = run(capsys, "campaign", "redecide", campaign_id)

    assert code == EXIT_DEFERRED
    assert out.startswith("deferred: ")
    assert "retry in " in out
    assert stack.mailbox()["state"] == "consent_requested"  # the claim was released
    assert queue_size(stack, stack.queue_url) == {"visible": 0, "hidden": 0}  # not enqueued


def test_campaign_redecide_unknown_campaign_exits_1(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    code, out, _ = run(capsys, "campaign", "redecide", "999999")

    assert code == EXIT_NOT_FOUND
    assert out.strip() == "999999: campaign_gone"


@pytest.mark.parametrize("campaign_id", ["..", "4711/..", "x" * 65])
def test_campaign_redecide_unusable_campaign_id_exits_2_without_vendor_call(
    stack: Stack, capsys: pytest.CaptureFixture[str], campaign_id: str
) -> None:
    code, out, err = run(capsys, "campaign", "redecide", campaign_id)

    assert code == EXIT_BAD_INPUT
    assert out == ""
    assert "invalid campaign id: campaign id " in err
    assert stack.control.calls() == []


def test_campaign_redecide_logs_go_to_stderr(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    campaign_id = str(stack.control.seed_campaign(email=EVE)["id"])

    code, out, err = run(capsys, "campaign", "redecide", campaign_id)

    assert code == EXIT_OK
    assert out.strip() == f"{campaign_id}: unexpected_left"
    assert "campaign decision" in err


# --- configuration ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "variable"),
    [
        (["mailbox", "list"], "MAILBOX_TABLE_NAME"),
        (["campaigns", "unexpected"], "MAILBOX_TABLE_NAME"),
        (["dlq", "peek"], "WORK_DLQ_URL"),
        (["dlq", "redrive"], "WORK_QUEUE_URL"),
        (["campaign", "redecide", "4711"], "MAILBOX_TABLE_NAME"),
    ],
)
def test_missing_setting_exits_2_naming_the_variable(
    stack: Stack,
    dlq_url: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    variable: str,
) -> None:
    monkeypatch.delenv(variable)

    code, out, err = run(capsys, *argv)

    assert code == EXIT_BAD_INPUT
    assert out == ""
    assert f"missing setting {variable}" in err


def test_campaign_redecide_without_api_key_exits_2(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("MAILIVERY_API_KEY")

    code, _, err = run(capsys, "campaign", "redecide", "4711")

    assert code == EXIT_BAD_INPUT
    assert "MAILIVERY_API_KEY_SECRET" in err


def test_flags_override_environment(
    stack: Stack, dlq_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.expect()
    dead_letters(stack, dlq_url, 1)
    for variable in ("MAILBOX_TABLE_NAME", "WORK_QUEUE_URL", "WORK_DLQ_URL"):
        monkeypatch.setenv(variable, "wrong")

    listed, out, _ = run(capsys, "--table", TABLE, "mailbox", "list")
    redrive = ["--wait", "0", "--dlq-url", dlq_url, "--queue-url", stack.queue_url]
    moved, _, _ = run(capsys, "dlq", "redrive", *redrive)

    assert (listed, moved) == (EXIT_OK, EXIT_OK)
    assert ADA in out
    assert queue_size(stack, stack.queue_url)["visible"] == 1


def cloudformation_stack(name: str, outputs: dict[str, str]) -> None:
    """A stack with only these Outputs (moto needs one resource; the values are literals)."""
    boto3.client("cloudformation").create_stack(
        StackName=name,
        TemplateBody=json.dumps(
            {
                "Resources": {"Marker": {"Type": "AWS::SQS::Queue"}},
                "Outputs": {key: {"Value": value} for key, value in outputs.items()},
            }
        ),
    )


def test_stack_option_reads_cloudformation_outputs(
    stack: Stack, dlq_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.expect()
    dead_letters(stack, dlq_url, 2)
    cloudformation_stack(
        "warmgate-dev",
        {"MailboxTableName": TABLE, "WorkQueueUrl": stack.queue_url, "WorkDlqUrl": dlq_url},
    )
    for variable in ("MAILBOX_TABLE_NAME", "WORK_QUEUE_URL", "WORK_DLQ_URL"):
        monkeypatch.delenv(variable)

    listed, out, _ = run(capsys, "mailbox", "list", "--stack", "warmgate-dev")
    moved, _, _ = run(capsys, "--stack", "warmgate-dev", "dlq", "redrive", "--wait", "0")
    unknown, _, err = run(capsys, "mailbox", "list", "--stack", "warmgate-nope")

    assert (listed, moved) == (EXIT_OK, EXIT_OK)
    assert ADA in out
    assert queue_size(stack, stack.queue_url)["visible"] == 2
    assert unknown == EXIT_BAD_INPUT
    assert "stack warmgate-nope" in err


def test_stack_option_missing_output_exits_2_without_env_fallback(
    stack: Stack, dlq_url: str, capsys: pytest.CaptureFixture[str]
) -> None:
    """WORK_DLQ_URL is set, but a value from another deployment must not be mixed in."""
    dead_letters(stack, dlq_url, 1)
    cloudformation_stack("warmgate-partial", {"MailboxTableName": TABLE})

    code, out, err = run(capsys, "dlq", "peek", "--stack", "warmgate-partial", "--wait", "0")

    assert code == EXIT_BAD_INPUT
    assert out == ""
    assert "stack warmgate-partial has no output WorkDlqUrl" in err


# --- as a process -------------------------------------------------------------------------------


@pytest.fixture
def moto_server(aws_environment: None) -> Iterator[str]:
    from moto.server import ThreadedMotoServer

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.stop()


# --- campaign forget ----------------------------------------------------------------------------


def test_campaign_forget_dry_run_then_forget_removes_the_ledger_entry(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    campaign_id = str(stack.control.seed_campaign(email=EVE)["id"])
    stack.deliver(pending(campaign_id, EVE))  # left pending as unexpected

    dry, dry_out, _ = run(capsys, "campaign", "forget", campaign_id, "--dry-run")
    assert (dry, stack.ledger(campaign_id) is not None) == (EXIT_OK, True)
    assert dry_out.startswith(f"dry run: would forget campaign {campaign_id} (left_pending")

    code, out, _ = run(capsys, "campaign", "forget", campaign_id)
    again, _, err = run(capsys, "campaign", "forget", campaign_id)

    assert code == EXIT_OK
    assert out.startswith(f"forgot campaign {campaign_id}")
    assert stack.ledger(campaign_id) is None
    assert again == EXIT_NOT_FOUND
    assert f"no ledger entry for campaign {campaign_id}" in err


@pytest.mark.slow
def test_ops_process_against_moto_server_reads_the_table(moto_server: str) -> None:
    """As an operator runs it: the module, and the console script `make setup` installed."""
    dynamodb = boto3.client("dynamodb", endpoint_url=moto_server)
    create_table(dynamodb, "MailboxTable", TABLE)
    env = os.environ | {"AWS_ENDPOINT_URL": moto_server, "MAILBOX_TABLE_NAME": TABLE}
    script = str(Path(sys.executable).with_name("warmgate-ops"))

    for command in ([sys.executable, "-m", "warmgate_ops"], [script]):
        found = subprocess.run(  # noqa: S603 - our own interpreter and the CLI it installed
            [*command, "mailbox", "show", ADA],
            env=env,
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

        assert found.returncode == EXIT_NOT_FOUND, (command, found.stderr)
        assert f"no record for {ADA}" in found.stderr


def test_mailbox_reindex_lists_mailboxes_stored_before_the_index(
    stack: Stack, capsys: pytest.CaptureFixture[str]
) -> None:
    stack.expect(ADA)
    stack.expect(GRACE)
    for email in (ADA, GRACE):  # as an earlier version stored them: no index keys
        stack.aws.update_item(
            TableName=TABLE,
            Key={"pk": {"S": f"mailbox#{email}"}},
            UpdateExpression="REMOVE item_kind, owner_updated_at",
        )
    repository = MailboxRepository(stack.aws, TABLE)
    assert repository.list_mailboxes(owner=None, limit=10).mailboxes == []

    assert run(capsys, "mailbox", "reindex", "--dry-run")[1].splitlines() == [
        ADA,
        GRACE,
        "would reindex: 2",
    ]
    assert repository.list_mailboxes(owner=None, limit=10).mailboxes == []
    code, out, _ = run(capsys, "mailbox", "reindex")

    assert (code, out) == (0, "reindexed: 2, written meanwhile (indexed by that write): 0\n")
    listed = repository.list_mailboxes(owner=None, limit=10).mailboxes
    assert sorted(m.email for m in listed) == [ADA, GRACE]
    assert {m.state.value for m in listed} == {"consent_requested"}
    assert run(capsys, "mailbox", "reindex")[1] == (
        "reindexed: 0, written meanwhile (indexed by that write): 0\n"
    )
