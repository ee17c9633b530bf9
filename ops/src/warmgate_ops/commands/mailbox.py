"""`mailbox show|list|reindex`: the expected mailboxes in the table."""

from __future__ import annotations

import argparse
from collections import Counter
from typing import Any

from warmgate.adapters.dynamodb import StaleRecord
from warmgate.domain.emails import InvalidEmail, normalize_email
from warmgate.domain.mailbox_views import mailbox_record
from warmgate.domain.mailboxes import ExpectedMailbox, MailboxState, utc_now
from warmgate_ops.config import (
    EXIT_NOT_FOUND,
    EXIT_OK,
    CommandGroups,
    Deployment,
    OpsError,
    SharedOptions,
)
from warmgate_ops.tables import print_json, render_table


def register(groups: CommandGroups, options: SharedOptions) -> None:
    mailbox = groups.add_parser("mailbox", help="expected mailboxes").add_subparsers(required=True)
    show = mailbox.add_parser("show", parents=options.common, help="one record and its history")
    show.add_argument("email")
    show.set_defaults(run=show_mailbox)
    listing = mailbox.add_parser("list", parents=options.common, help="mailboxes by state")
    listing.add_argument("--state", action="append", choices=[s.value for s in MailboxState])
    listing.set_defaults(run=list_mailboxes)
    reindex = mailbox.add_parser(
        "reindex", parents=[options.location], help="list the ones before GET /mailboxes"
    )
    reindex.add_argument("--dry-run", action="store_true", help="name them, change nothing")
    reindex.set_defaults(run=reindex_mailboxes)


def show_mailbox(args: argparse.Namespace, deployment: Deployment) -> int:
    try:
        email = normalize_email(args.email)
    except InvalidEmail as exc:
        raise OpsError(f"invalid email: {exc}") from None
    record = deployment.repository().get(email)
    if record is None:
        raise OpsError(f"no record for {email}", EXIT_NOT_FOUND)
    view = operator_view(record)
    if args.json:
        print_json(view)
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


def operator_view(record: ExpectedMailbox) -> dict[str, Any]:
    """The record as the API shows it, and what only an operator acts on. Not the consent URL
    (the owner's login link, not for a terminal or a ticket): whether one is live."""
    now = utc_now()
    view = mailbox_record(record, now)
    del view["consent_url"]
    return {
        **view,
        "consent_link_live": record.has_live_link(now),
        "start_attempts": record.start_attempts,
        "outcome_unknown": record.outcome_unknown,
        "tags": list(record.tags),
    }


def list_mailboxes(args: argparse.Namespace, deployment: Deployment) -> int:
    states = [MailboxState(s) for s in args.state] if args.state else list(MailboxState)
    records = sorted(deployment.repository().scan_mailboxes(states), key=lambda r: r.email)
    counts = Counter(r.state.value for r in records)
    if args.json:
        views = [{k: v for k, v in operator_view(r).items() if k != "history"} for r in records]
        print_json({"mailboxes": views, "counts": dict(sorted(counts.items()))})
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
