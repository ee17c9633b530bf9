"""`campaigns unexpected`, `campaign redecide|forget`: the campaign ledger and one campaign's
decision."""

from __future__ import annotations

import argparse
import contextlib
import logging
import os
import sys
import uuid
from collections.abc import Iterator

import boto3

from warmgate.adapters.budget import BudgetExhausted
from warmgate.adapters.dynamodb import StaleRecord
from warmgate.adapters.mailivery import TRANSIENT_ERRORS, MailiveryError
from warmgate.adapters.sqs import QueuedWebhook
from warmgate.domain.campaign_ids import InvalidCampaignId, parse_campaign_id
from warmgate.domain.decisions import Outcome
from warmgate.domain.mailboxes import iso, utc_now
from warmgate.domain.webhooks import EventType
from warmgate.observability import logger
from warmgate.services.worker import CampaignWorker, RetryLater
from warmgate.settings import CampaignWorkerSettings, SettingsError
from warmgate.wiring import worker_from_settings
from warmgate_ops.config import (
    EXIT_DEFERRED,
    EXIT_NOT_FOUND,
    EXIT_OK,
    TABLE,
    CommandGroups,
    Deployment,
    OpsError,
    SharedOptions,
)
from warmgate_ops.tables import print_json, render_table

# Worth running again later: Mailivery busy or unreachable, or the shared budget used up.
DEFERRABLE: tuple[type[Exception], ...] = (*TRANSIENT_ERRORS, BudgetExhausted)


def register(groups: CommandGroups, options: SharedOptions) -> None:
    campaigns = groups.add_parser("campaigns", help="campaign ledger").add_subparsers(required=True)
    unexpected = campaigns.add_parser(
        "unexpected", parents=options.common, help="handled, not expected"
    )
    unexpected.set_defaults(run=list_unexpected_campaigns)

    campaign = groups.add_parser("campaign", help="one campaign").add_subparsers(required=True)
    redecide = campaign.add_parser(
        "redecide", parents=[options.location], help="run the worker again"
    )
    redecide.add_argument("campaign_id")
    redecide.add_argument("--dry-run", action="store_true", help="print the decision only")
    redecide.set_defaults(run=redecide_campaign)
    forget = campaign.add_parser("forget", parents=[options.location], help="drop its ledger entry")
    forget.add_argument("campaign_id")
    forget.add_argument("--dry-run", action="store_true", help="show what would be forgotten")
    forget.set_defaults(run=forget_campaign)


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
        print_json(views)
        return EXIT_OK
    columns = ("campaign_id", "email", "state", "reason", "first_seen_at")
    print(render_table(columns, ([v[c] for c in columns] for v in views)))
    print(f"\ntotal: {len(views)}")
    return EXIT_OK


def redecide_campaign(args: argparse.Namespace, deployment: Deployment) -> int:
    """The worker's decision for one campaign, as if Mailivery had sent campaign.pending again.

    Not enqueued: the worker service runs here, with the functions' settings and the shared
    Mailivery budget, so its claim-then-call writes keep a concurrent worker from a second call.
    """
    try:
        campaign_id = parse_campaign_id(args.campaign_id)
    except InvalidCampaignId as exc:
        raise OpsError(f"invalid campaign id: {exc}") from None
    worker = _worker(deployment)
    message = synthesized_pending(campaign_id)
    try:
        with _logs_to_stderr():
            if args.dry_run:
                return _preview(worker, message)
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


def _worker(deployment: Deployment) -> CampaignWorker:
    """The worker as WorkerFunction builds it, on the table the operator named."""
    try:
        environ = dict(os.environ, MAILBOX_TABLE_NAME=deployment.setting(TABLE))
        settings = CampaignWorkerSettings.from_environ(environ)
        return worker_from_settings(settings, boto3.client("dynamodb"))
    except SettingsError as exc:
        raise OpsError(str(exc)) from None


def _preview(worker: CampaignWorker, message: QueuedWebhook) -> int:
    decision = worker.preview(message)
    if decision is None:
        raise OpsError(f"no campaign {message.campaign_id}", EXIT_NOT_FOUND)
    print(
        f"dry run: action {decision.action.value}, outcome "
        f"{decision.outcome.value} ({decision.reason})"
    )
    return EXIT_OK


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
