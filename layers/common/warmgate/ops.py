"""Operations CLI: see and repair warmgate without reading its code.

    python -m warmgate.ops mailbox show <email> [--json]
    python -m warmgate.ops mailbox list [--state S ...] [--json]
    python -m warmgate.ops campaigns unexpected [--json]
    python -m warmgate.ops dlq peek [--max N] [--json]
    python -m warmgate.ops dlq redrive [--max N] [--dry-run]
    python -m warmgate.ops campaign redecide <campaign_id> [--dry-run]
    python -m warmgate.ops campaign forget <campaign_id> [--dry-run]

Where it works: `--table`/`--queue-url`/`--dlq-url`, else the Outputs of `--stack <name>`, else
the variables the functions read (MAILBOX_TABLE_NAME, WORK_QUEUE_URL, WORK_DLQ_URL). boto3's
default credentials and region apply; AWS_ENDPOINT_URL points it at the local stack's moto.
Results go to stdout, progress and errors to stderr. Exit codes: 0 ok, 1 not found,
2 bad input or configuration (or AWS refused the call), 3 deferred or incomplete: run it again.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import os
import sys
import uuid
from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from warmgate.adapters.budget import BudgetExhausted
from warmgate.adapters.dynamodb import MailboxRepository, StaleRecord
from warmgate.adapters.mailivery import (
    TRANSIENT_ERRORS,
    MailiveryError,
)
from warmgate.adapters.sqs import QueuedWebhook
from warmgate.domain.campaign_ids import InvalidCampaignId, parse_campaign_id
from warmgate.domain.decisions import Outcome
from warmgate.domain.emails import InvalidEmail, normalize_email
from warmgate.domain.mailboxes import ExpectedMailbox, MailboxState, iso, utc_now
from warmgate.domain.webhooks import EventType
from warmgate.observability import logger
from warmgate.services.worker import RetryLater
from warmgate.settings import CampaignWorkerSettings, SettingsError
from warmgate.wiring import worker_from_settings

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageAttributeValueTypeDef, MessageTypeDef

EXIT_OK, EXIT_NOT_FOUND, EXIT_BAD_INPUT, EXIT_DEFERRED = 0, 1, 2, 3
SQS_BATCH = 10  # ReceiveMessage / *Batch maximum
# A message taken from the DLQ stays hidden this long; enough to send and delete one batch.
# A peek gives its messages back at once; a crashed run's messages come back after this.
HOLD_SECONDS = 30
# Worth running again later: Mailivery busy or unreachable, or the shared budget used up.
DEFERRABLE: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, BudgetExhausted)


class OpsError(Exception):
    """A message for the operator and the exit code that goes with it."""

    def __init__(self, message: str, exit_code: int = EXIT_BAD_INPUT) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --- where: table and queues --------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class Setting:
    dest: str  # argparse destination of the flag
    flag: str
    variable: str  # as the functions read it
    output: str  # template.yaml Outputs key


TABLE = Setting("table", "--table", "MAILBOX_TABLE_NAME", "MailboxTableName")
WORK_QUEUE = Setting("queue_url", "--queue-url", "WORK_QUEUE_URL", "WorkQueueUrl")
WORK_DLQ = Setting("dlq_url", "--dlq-url", "WORK_DLQ_URL", "WorkDlqUrl")


class Deployment:
    """The warmgate deployment the commands work on: its table and queues, resolved on use."""

    def __init__(self, args: argparse.Namespace, environ: Mapping[str, str]) -> None:
        self.args = args
        self._environ = environ
        self._stack_outputs: dict[str, str] | None = None

    def setting(self, setting: Setting) -> str:
        """The flag, else the stack's output (only that, when --stack is given), else the env."""
        value: str | None = getattr(self.args, setting.dest, None)
        if value:
            return value
        stack: str | None = getattr(self.args, "stack", None)
        if stack:
            value = self.stack_outputs(stack).get(setting.output)
            if not value:
                raise OpsError(f"stack {stack} has no output {setting.output}")
            return value
        value = self._environ.get(setting.variable)
        if not value:
            raise OpsError(
                f"missing setting {setting.variable}: set it, pass {setting.flag}, "
                "or pass --stack <name>"
            )
        return value

    def stack_outputs(self, stack: str) -> dict[str, str]:
        if self._stack_outputs is None:
            cloudformation: Any = boto3.client("cloudformation")
            try:
                found = cloudformation.describe_stacks(StackName=stack)["Stacks"]
            except ClientError as exc:
                raise OpsError(f"stack {stack}: {exc.response['Error']['Message']}") from None
            outputs = found[0].get("Outputs", []) if found else []
            self._stack_outputs = {o["OutputKey"]: o["OutputValue"] for o in outputs}
        return self._stack_outputs

    def repository(self) -> MailboxRepository:
        table = self.setting(TABLE)  # first: a missing setting is named before any AWS error
        return MailboxRepository(boto3.client("dynamodb"), table)


# --- mailboxes and campaigns ---------------------------------------------------------------------


def show_mailbox(args: argparse.Namespace, deployment: Deployment) -> int:
    try:
        email = normalize_email(args.email)
    except InvalidEmail as exc:
        raise OpsError(f"invalid email: {exc}") from None
    record = deployment.repository().get(email)
    if record is None:
        raise OpsError(f"no record for {email}", EXIT_NOT_FOUND)
    view = mailbox_view(record)
    if args.json:
        print(json.dumps(view, indent=2))
        return EXIT_OK
    fields = {k: v for k, v in view.items() if k not in ("history", "last_error")}
    fields["tags"] = ", ".join(record.tags)
    if (error := record.last_error) is not None:
        fields["last_error"] = f"{error.code}: {error.message} ({error.at}, {error.request_id})"
    print(render_table(("field", "value"), fields.items()))
    print("\nhistory (oldest first)")
    history = (t.to_dict().values() for t in record.history)
    print(render_table(("at", "from", "to", "reason"), history))
    return EXIT_OK


def mailbox_view(record: ExpectedMailbox) -> dict[str, Any]:
    """The record as JSON; the consent URL itself stays out (it is the owner's login link)."""
    error = record.last_error
    return {
        "email": record.email,
        "state": record.state.value,
        "campaign_id": record.campaign_id,
        "requested_by": record.requested_by,
        "requested_by_principal": record.requested_by_principal,
        "requested_at": record.requested_at,
        "expires_at": record.expires_at,
        "updated_at": record.updated_at,
        "consent_link_live": record.has_live_link(utc_now()),
        "request_kind": record.request_kind.value if record.request_kind else None,
        "open_request": record.has_open_request(utc_now()),
        "start_attempts": record.start_attempts,
        "parked": record.parked,
        "outcome_unknown": record.outcome_unknown,
        "tags": list(record.tags),
        "last_error": None
        if error is None
        else {
            "code": error.code,
            "message": error.message,
            "at": error.at,
            "request_id": error.request_id,
        },
        "history": [t.to_dict() for t in record.history],
    }


def list_mailboxes(args: argparse.Namespace, deployment: Deployment) -> int:
    states = [MailboxState(s) for s in args.state] if args.state else list(MailboxState)
    records = sorted(deployment.repository().scan_mailboxes(states), key=lambda r: r.email)
    counts = Counter(r.state.value for r in records)
    if args.json:
        views = [{k: v for k, v in mailbox_view(r).items() if k != "history"} for r in records]
        print(json.dumps({"mailboxes": views, "counts": dict(sorted(counts.items()))}, indent=2))
        return EXIT_OK
    rows = ((r.email, r.state.value, r.campaign_id, r.updated_at) for r in records)
    print(render_table(("email", "state", "campaign_id", "updated_at"), rows))
    print()
    for state, count in sorted(counts.items()):
        print(f"{state}: {count}")
    print(f"total: {len(records)}")
    return EXIT_OK


def reindex_mailboxes(args: argparse.Namespace, deployment: Deployment) -> int:
    """Give the mailboxes stored before GET /mailboxes existed their index keys: each is saved
    again unchanged (a conditional write, version + 1), which writes them; the state stays,
    so no mailbox event. One written meanwhile got its keys from that write."""
    repository = deployment.repository()
    unlisted = sorted(repository.scan_unlisted(), key=lambda record: record.email)
    if args.dry_run:
        for record in unlisted:
            print(record.email)
        print(f"would reindex: {len(unlisted)}")
        return EXIT_OK
    changed = 0
    for record in unlisted:
        try:
            repository.save(record, read_version=record.version)
        except StaleRecord:
            changed += 1
    done = len(unlisted) - changed
    print(f"reindexed: {done}, written meanwhile (indexed by that write): {changed}")
    return EXIT_OK


def list_unexpected_campaigns(args: argparse.Namespace, deployment: Deployment) -> int:
    entries = sorted(deployment.repository().scan_ledger(), key=lambda e: e.first_seen_at)
    views = [
        {
            "campaign_id": e.campaign_id,
            "email": e.email,
            "state": e.state.value,
            "reason": e.reason,
            "first_seen_at": e.first_seen_at,
            "updated_at": e.updated_at,
        }
        for e in entries
    ]
    if args.json:
        print(json.dumps(views, indent=2))
        return EXIT_OK
    columns = ("campaign_id", "email", "state", "reason", "first_seen_at")
    print(render_table(columns, ([v[c] for c in columns] for v in views)))
    print(f"\ntotal: {len(views)}")
    return EXIT_OK


# --- the dead-letter queue -----------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class DeadLetter:
    message_id: str
    event_type: str | None  # None: not a readable QueuedWebhook
    campaign_id: str | None
    email: str | None
    receive_count: int  # SQS's count, including this CLI's own receive
    sent_at: datetime | None  # first enqueue: a redriven message keeps its original timestamp

    @classmethod
    def from_sqs(cls, message: MessageTypeDef) -> DeadLetter:
        attributes = message.get("Attributes", {})
        sent_ms = attributes.get("SentTimestamp")
        try:
            webhook: QueuedWebhook | None = QueuedWebhook.from_message_body(message["Body"])
        except (ValueError, KeyError, TypeError):
            webhook = None
        return cls(
            message_id=message["MessageId"],
            event_type=webhook.event_type if webhook else None,
            campaign_id=webhook.campaign_id if webhook else None,
            email=webhook.email if webhook else None,
            receive_count=int(attributes.get("ApproximateReceiveCount", 0)),
            sent_at=datetime.fromtimestamp(int(sent_ms) / 1000, UTC) if sent_ms else None,
        )

    def view(self, now: datetime) -> dict[str, Any]:
        age = None if self.sent_at is None else int((now - self.sent_at).total_seconds())
        return {
            "message_id": self.message_id,
            "event_type": self.event_type or "<unreadable body>",
            "campaign_id": self.campaign_id,
            "email": self.email,
            "receive_count": self.receive_count,
            "sent_at": None if self.sent_at is None else iso(self.sent_at),
            "age_seconds": age,
        }


@dataclass(frozen=True, slots=True)
class RedriveReport:
    moved: int
    send_failed: int  # left in the DLQ; visible again after HOLD_SECONDS
    not_deleted: int  # sent but still in the DLQ: a re-run would send these once more


class DeadLetterQueue:
    def __init__(self, sqs: SQSClient, url: str, *, wait_seconds: int) -> None:
        self._sqs = sqs
        self.url = url
        self._wait = wait_seconds  # long polling: a short poll may miss messages of small queues

    def approximate_size(self) -> int:
        attributes = self._sqs.get_queue_attributes(
            QueueUrl=self.url, AttributeNames=["ApproximateNumberOfMessages"]
        )["Attributes"]
        return int(attributes.get("ApproximateNumberOfMessages", 0))

    def peek(self, limit: int) -> list[DeadLetter]:
        """Up to `limit` messages, each received once and made visible again right away."""
        held: dict[str, MessageTypeDef] = {}
        try:
            for _ in range(limit):  # bounded: every round takes at least one message or stops
                batch = self._take(min(SQS_BATCH, limit - len(held)))
                held |= {m["MessageId"]: m for m in batch}
                if not batch or len(held) >= limit:
                    break
        finally:
            self._give_back(list(held.values()))
        return [DeadLetter.from_sqs(m) for m in held.values()]

    def redrive(
        self, target_url: str, limit: int, progress: Callable[[int], None]
    ) -> RedriveReport:
        """Move up to `limit` messages to `target_url`, each sent and then at once deleted.

        A crash between the two leaves that one message in both queues; the worker dedups it
        (the claim or the ledger entry of its campaign), so a re-run is safe.
        """
        sent: set[str] = set()
        taken = failed = not_deleted = 0
        for _ in range(limit):  # bounded: every round takes at least one message or stops
            batch = self._take(min(SQS_BATCH, limit - taken))
            if not batch:
                break
            taken += len(batch)
            for message in batch:
                message_id = message["MessageId"]
                try:
                    if message_id not in sent:  # else: received again after its hold ran out
                        self._sqs.send_message(
                            QueueUrl=target_url,
                            MessageBody=message["Body"],
                            MessageAttributes=_resendable(message),
                        )
                        sent.add(message_id)
                except ClientError as exc:
                    failed += 1
                    print(f"not moved {message_id}: {exc}", file=sys.stderr)
                    continue
                try:
                    self._sqs.delete_message(
                        QueueUrl=self.url, ReceiptHandle=message["ReceiptHandle"]
                    )
                except ClientError as exc:
                    not_deleted += 1
                    print(f"moved but not deleted {message_id}: {exc}", file=sys.stderr)
            progress(len(sent))
            if taken >= limit:
                break
        return RedriveReport(moved=len(sent), send_failed=failed, not_deleted=not_deleted)

    def _take(self, count: int) -> list[MessageTypeDef]:
        return self._sqs.receive_message(
            QueueUrl=self.url,
            MaxNumberOfMessages=count,
            VisibilityTimeout=HOLD_SECONDS,
            WaitTimeSeconds=self._wait,
            MessageSystemAttributeNames=["ApproximateReceiveCount", "SentTimestamp"],
            MessageAttributeNames=["All"],
        ).get("Messages", [])

    def _give_back(self, messages: Sequence[MessageTypeDef]) -> None:
        for start in range(0, len(messages), SQS_BATCH):
            chunk = messages[start : start + SQS_BATCH]
            response = self._sqs.change_message_visibility_batch(
                QueueUrl=self.url,
                Entries=[
                    {"Id": str(n), "ReceiptHandle": m["ReceiptHandle"], "VisibilityTimeout": 0}
                    for n, m in enumerate(chunk)
                ],
            )
            if response.get("Failed"):
                print(
                    f"{len(response['Failed'])} message(s) stay hidden up to {HOLD_SECONDS} s",
                    file=sys.stderr,
                )


def _resendable(message: MessageTypeDef) -> dict[str, MessageAttributeValueTypeDef]:
    """The message attributes as SendMessage takes them (DataType and value only)."""
    copies: dict[str, MessageAttributeValueTypeDef] = {}
    for name, value in message.get("MessageAttributes", {}).items():
        copy: MessageAttributeValueTypeDef = {"DataType": value["DataType"]}
        if "StringValue" in value:
            copy["StringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            copy["BinaryValue"] = value["BinaryValue"]
        copies[name] = copy
    return copies


def dead_letter_queue(args: argparse.Namespace, deployment: Deployment) -> DeadLetterQueue:
    url = deployment.setting(WORK_DLQ)
    return DeadLetterQueue(boto3.client("sqs"), url, wait_seconds=args.wait)


def peek_dead_letters(args: argparse.Namespace, deployment: Deployment) -> int:
    letters = dead_letter_queue(args, deployment).peek(args.max)
    print_dead_letters(letters, as_json=args.json)
    return EXIT_OK


def print_dead_letters(letters: Sequence[DeadLetter], *, as_json: bool) -> None:
    now = utc_now()
    views = [letter.view(now) for letter in letters]
    if as_json:
        print(json.dumps(views, indent=2))
        return
    columns = ("event_type", "campaign_id", "email", "receive_count", "age")
    rows = ([*(v[c] for c in columns[:-1]), _age(v["age_seconds"])] for v in views)
    print(render_table(columns, rows))
    print(f"\nshown: {len(views)}")


def redrive_dead_letters(args: argparse.Namespace, deployment: Deployment) -> int:
    target = deployment.setting(WORK_QUEUE)
    dlq = dead_letter_queue(args, deployment)
    if target == dlq.url:
        raise OpsError("the DLQ and the work queue are the same queue")
    if args.dry_run:
        letters = dlq.peek(args.max)
        print_dead_letters(letters, as_json=False)
        print(f"dry run: would move {len(letters)} message(s) to {target}")
        return EXIT_OK
    expected = min(args.max, dlq.approximate_size())

    def progress(moved: int) -> None:
        print(f"moved {moved}/{max(expected, moved)} …", file=sys.stderr)

    report = dlq.redrive(target, args.max, progress)
    print(f"moved {report.moved} message(s) from {dlq.url} to {target}")
    if report.send_failed or report.not_deleted:
        print(
            f"{report.send_failed} not sent (still in the DLQ), {report.not_deleted} sent but "
            "not deleted (a re-run sends them again; the worker tolerates duplicates)"
        )
        return EXIT_DEFERRED
    return EXIT_OK


# --- one campaign's decision ---------------------------------------------------------------------


def redecide_campaign(args: argparse.Namespace, deployment: Deployment) -> int:
    """The worker's decision for one campaign, as if Mailivery had sent campaign.pending again.

    Not enqueued: the worker service runs here, with the functions' settings and the shared
    Mailivery budget, so its claim-then-call writes keep a concurrent worker from a second call.
    """
    try:
        campaign_id = parse_campaign_id(args.campaign_id)
    except InvalidCampaignId as exc:
        raise OpsError(f"invalid campaign id: {exc}") from None
    try:
        environ = dict(os.environ, MAILBOX_TABLE_NAME=deployment.setting(TABLE))
        settings = CampaignWorkerSettings.from_environ(environ)
        worker = worker_from_settings(settings, boto3.client("dynamodb"))
    except SettingsError as exc:
        raise OpsError(str(exc)) from None
    message = synthesized_pending(campaign_id)
    try:
        with _logs_to_stderr():
            if args.dry_run:
                decision = worker.preview(message)
                if decision is None:
                    raise OpsError(f"no campaign {campaign_id}", EXIT_NOT_FOUND)
                print(
                    f"dry run: action {decision.action.value}, outcome "
                    f"{decision.outcome.value} ({decision.reason})"
                )
                return EXIT_OK
            outcome = worker.handle(message)
    except RetryLater as later:
        print(f"deferred: {later.reason}, retry in {later.delay} s")
        return EXIT_DEFERRED
    except DEFERRABLE as exc:
        print(f"deferred: Mailivery unavailable: {exc}")
        return EXIT_DEFERRED
    except MailiveryError as exc:
        raise OpsError(f"Mailivery refused: {exc}") from None
    print(f"{campaign_id}: {outcome.value}")
    return EXIT_NOT_FOUND if outcome is Outcome.CAMPAIGN_GONE else EXIT_OK


def forget_campaign(args: argparse.Namespace, deployment: Deployment) -> int:
    """Remove a campaign's ledger entry, e.g. one left pending as unexpected that an operator
    has looked into. A later request adopts such a campaign anyway; this is the manual case."""
    repository = deployment.repository()
    entry = repository.get_ledger_entry(args.campaign_id)
    if entry is None:
        raise OpsError(f"no ledger entry for campaign {args.campaign_id}", EXIT_NOT_FOUND)
    described = f"campaign {entry.campaign_id} ({entry.state.value}, {entry.email}: {entry.reason})"
    if args.dry_run:
        print(f"dry run: would forget {described}")
        return EXIT_OK
    try:
        repository.delete_ledger_entry(entry)
    except StaleRecord:
        print(f"not forgotten: {described} changed meanwhile; look again")
        return EXIT_DEFERRED
    print(f"forgot {described}")
    return EXIT_OK


def synthesized_pending(campaign_id: str) -> QueuedWebhook:
    return QueuedWebhook(
        event_type=EventType.PENDING,
        campaign_id=campaign_id,
        email=None,  # the worker re-reads the campaign, and with it the email
        dedup_key=f"ops:{campaign_id}",
        received_at=iso(utc_now()),
        request_id=f"ops-{uuid.uuid4()}",
        payload={"source": "ops"},
    )


@contextlib.contextmanager
def _logs_to_stderr() -> Iterator[None]:
    """The worker logs (Powertools JSON) to stdout in Lambda; here stdout is for results."""
    handler = logger.registered_handler
    if not isinstance(handler, logging.StreamHandler):
        yield
        return
    previous = handler.setStream(sys.stderr)
    try:
        yield
    finally:
        if previous is not None:
            handler.setStream(previous)


# --- output and command line ---------------------------------------------------------------------


def render_table(headers: Sequence[str], rows: Iterable[Iterable[object]]) -> str:
    cells = [["-" if v is None else str(v) for v in row] for row in rows]
    if not cells:
        return "(none)"
    widths = [max([len(h), *(len(row[n]) for row in cells)]) for n, h in enumerate(headers)]
    lines = [headers, ["-" * w for w in widths], *cells]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def _age(seconds: int | None) -> str:
    if seconds is None:
        return "-"
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def _location_options(parser: argparse.ArgumentParser, default: object) -> None:
    group = parser.add_argument_group("where (default: the functions' environment variables)")
    group.add_argument("--stack", default=default, help="read the rest from this stack's Outputs")
    for setting in (TABLE, WORK_QUEUE, WORK_DLQ):
        group.add_argument(
            setting.flag, dest=setting.dest, default=default, help=f"else {setting.variable}"
        )


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m warmgate.ops", description="Operate warmgate: mailboxes, campaigns, DLQ."
    )
    _location_options(parser, None)
    # The same options after the command; SUPPRESS keeps an absent one from hiding the first.
    location = argparse.ArgumentParser(add_help=False)
    _location_options(location, argparse.SUPPRESS)
    json_flag = argparse.ArgumentParser(add_help=False)
    json_flag.add_argument("--json", action="store_true", help="machine-readable output")
    wait = argparse.ArgumentParser(add_help=False)
    wait.add_argument(
        "--wait", type=int, default=1, choices=range(21), metavar="0-20", help="long-poll seconds"
    )
    common = [location, json_flag]
    groups = parser.add_subparsers(dest="group", required=True)

    mailbox = groups.add_parser("mailbox", help="expected mailboxes").add_subparsers(required=True)
    show = mailbox.add_parser("show", parents=common, help="one record and its history")
    show.add_argument("email")
    show.set_defaults(run=show_mailbox)
    listing = mailbox.add_parser("list", parents=common, help="mailboxes by state")
    listing.add_argument("--state", action="append", choices=[s.value for s in MailboxState])
    listing.set_defaults(run=list_mailboxes)
    reindex = mailbox.add_parser(
        "reindex", parents=[location], help="list the ones before GET /mailboxes"
    )
    reindex.add_argument("--dry-run", action="store_true", help="name them, change nothing")
    reindex.set_defaults(run=reindex_mailboxes)

    campaigns = groups.add_parser("campaigns", help="campaign ledger").add_subparsers(required=True)
    unexpected = campaigns.add_parser("unexpected", parents=common, help="handled, not expected")
    unexpected.set_defaults(run=list_unexpected_campaigns)

    dlq = groups.add_parser("dlq", help="WorkQueue's dead-letter queue").add_subparsers(
        required=True
    )
    peek = dlq.add_parser("peek", parents=[*common, wait], help="show, leave in place")
    peek.add_argument("--max", type=_positive, default=10)
    peek.set_defaults(run=peek_dead_letters)
    redrive = dlq.add_parser("redrive", parents=[location, wait], help="move back to WorkQueue")
    redrive.add_argument("--max", type=_positive, default=1000)
    redrive.add_argument("--dry-run", action="store_true", help="list what would move")
    redrive.set_defaults(run=redrive_dead_letters)

    campaign = groups.add_parser("campaign", help="one campaign").add_subparsers(required=True)
    redecide = campaign.add_parser("redecide", parents=[location], help="run the worker again")
    redecide.add_argument("campaign_id")
    redecide.add_argument("--dry-run", action="store_true", help="print the decision only")
    redecide.set_defaults(run=redecide_campaign)
    forget = campaign.add_parser("forget", parents=[location], help="drop its ledger entry")
    forget.add_argument("campaign_id")
    forget.add_argument("--dry-run", action="store_true", help="show what would be forgotten")
    forget.set_defaults(run=forget_campaign)
    return parser


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> int:
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # argparse: --help (0) or a usage error (2)
        return exc.code if isinstance(exc.code, int) else EXIT_BAD_INPUT
    run: Callable[[argparse.Namespace, Deployment], int] = args.run
    try:
        return run(args, Deployment(args, os.environ if environ is None else environ))
    except OpsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except (BotoCoreError, ClientError) as exc:
        print(f"error: AWS: {exc}", file=sys.stderr)
        return EXIT_BAD_INPUT


if __name__ == "__main__":
    sys.exit(main())
