"""The soak's three ledgers reconciled: the sandbox's call and webhook logs, the table, and
what the functions sent to and took from the queues with the queues' own contents; every
mismatch named by campaign and mailbox."""

from __future__ import annotations

import json
import time
from bisect import bisect_left
from collections import Counter, defaultdict
from dataclasses import dataclass
from datetime import datetime

from devstack.aws_faults import AwsFaults, Invocation
from devstack.sandbox import SandboxControl
from devstack.stack import LocalStack
from tests.e2e.soak_actors import Integrator, Mailivery, SoakRun, TableWatcher, TokenRotation
from tests.e2e.soak_faults import aws_fault_rules
from tests.e2e.soak_plan import (
    ACTIONS,
    MAX_RECEIVES,
    NOT_REACHED_FAULTS,
    VENDOR_LIMIT,
    WEBHOOK,
    WORKER,
)


@dataclass
class VendorCall:
    method: str
    path: str
    status: int
    fault: str | None
    arrived: float  # epoch seconds

    @property
    def campaign(self) -> int | None:
        parts = self.path.split("/")
        return (
            int(parts[4])
            if len(parts) > 4 and parts[3] == "campaigns" and parts[4].isdigit()
            else None
        )

    @property
    def action(self) -> str | None:
        end = self.path.rsplit("/", 1)[-1]
        return end if self.method == "PATCH" and end in ACTIONS else None

    @property
    def reached(self) -> bool:
        """The vendor's endpoint ran (whatever the client saw afterwards)."""
        return self.status != 429 and self.fault not in NOT_REACHED_FAULTS


def vendor_calls(control: SandboxControl) -> list[VendorCall]:
    calls = []
    for c in control.calls():
        ended = datetime.fromisoformat(c["time"].replace("Z", "+00:00")).timestamp()
        calls.append(
            VendorCall(
                c["method"], c["path"], c["status"], c["fault"], ended - c["duration_ms"] / 1000
            )
        )
    return sorted(calls, key=lambda call: call.arrived)


def busiest_window(arrivals: list[float], window_s: float) -> int:
    """The most calls that arrived within any `window_s`."""
    return max((bisect_left(arrivals, t + window_s) - n for n, t in enumerate(arrivals)), default=0)


def consumed_messages(invocations: list[Invocation]) -> dict[str, str]:
    """Messages a worker invocation finished (the event source deletes those): id → body."""
    done: dict[str, str] = {}
    for invocation in invocations:
        if invocation.function != WORKER or invocation.outcome != "ok":
            continue
        failed = {
            f["itemIdentifier"] for f in (invocation.result or {}).get("batchItemFailures", [])
        }
        done |= {mid: body for mid, body in invocation.records.items() if mid not in failed}
    return done


def failed_receives(invocations: list[Invocation]) -> dict[str, list[Invocation]]:
    failed: dict[str, list[Invocation]] = defaultdict(list)
    for invocation in invocations:
        if invocation.function != WORKER:
            continue
        if invocation.outcome != "ok":
            ids = set(invocation.records)
        else:
            ids = {
                f["itemIdentifier"] for f in (invocation.result or {}).get("batchItemFailures", [])
            }
        for message_id in ids:
            failed[message_id].append(invocation)
    return failed


def _explanation(invocation: Invocation, faults: AwsFaults, calls: list[VendorCall]) -> str | None:
    """What a failed receive in this invocation is explained by: a fault it met (in AWS, a
    crash, or the vendor failing while it ran, after the client's own retries); None: nothing
    injected, so a failure of our own. A 429 explains nothing: waiting for the vendor's limit
    is a deferral, never a failed receive."""
    injected = [f.rule for f in faults.injected if f.invocation == invocation.id]
    if injected:
        return ", ".join(sorted(set(injected)))
    end = invocation.ended_at or time.time()
    vendor = {
        c.fault or str(c.status)
        for c in calls
        if invocation.started_at <= c.arrived <= end
        and c.status != 429
        and (c.fault or c.status >= 500)
    }
    return f"vendor {', '.join(sorted(vendor))}" if vendor else None


def reconcile(
    run: SoakRun,
    watcher: TableWatcher,
    integrator: Integrator,
    vendor: Mailivery,
    rotation: TokenRotation,
) -> None:
    problems, faults = run.problems, run.stack.aws_faults
    calls = vendor_calls(run.control)
    campaigns = {int(c["id"]): c for c in run.control.campaigns()}
    deliveries = run.control.webhook_deliveries()
    mailboxes, ledger = watcher.mailboxes, watcher.ledger
    by_campaign = {j.campaign_id: j for j in run.journeys if j.campaign_id is not None}

    # 1. every journey reached its end, as the table records it
    for j in run.journeys:
        record = mailboxes.get(j.email, {})
        state = "parked" if record.get("parked") else record.get("state")
        if j.failure or j.end is None or state != j.end:
            problems.append(
                f"{j.label()}: ended {state!r}, expected {j.end!r}"
                + (f"; the integrator saw {j.failure}" if j.failure else "")
            )

    # 2. the sandbox's call log and campaigns against the journeys and the table
    reached: dict[tuple[int, str], int] = Counter(
        (c.campaign, c.action) for c in calls if c.action and c.reached and c.campaign is not None
    )
    duplicated = 0
    for (campaign_id, action), count in sorted(reached.items()):
        owner = by_campaign.get(campaign_id)
        if owner is None:
            problems.append(f"campaign {campaign_id}: {count} {action} call(s), no journey made it")
            continue
        extra = count - owner.allowed(action)
        if extra > 0:
            duplicated += extra
            problems.append(f"{owner.label()}: {action} reached Mailivery {count} times")
    tracked = {str(r.get("campaign_id")): e for e, r in mailboxes.items() if r.get("campaign_id")}
    for campaign_id, campaign in sorted(campaigns.items()):
        owner = by_campaign.get(campaign_id)
        if owner is None:
            problems.append(f"campaign {campaign_id} ({campaign['email']}): no journey made it")
            continue
        record = mailboxes.get(owner.email, {})
        if owner.unexpected:
            entry = ledger.get(str(campaign_id))
            if campaign["status"] != "pending":
                problems.append(f"{owner.label()}: unexpected, yet {campaign['status']}")
            if str(campaign_id) in tracked:
                problems.append(
                    f"{owner.label()}: unexpected, yet tracked by {tracked[str(campaign_id)]}"
                )
            if entry is not None and entry.get("state") != "left_pending":
                problems.append(f"{owner.label()}: ledger says {entry.get('state')}")
            continue
        active = campaign["status"] == "active"
        warming = record.get("state") == "warming"
        if active != warming or (warming and record.get("campaign_id") != str(campaign_id)):
            problems.append(
                f"{owner.label()}: Mailivery says {campaign['status']}, the table says "
                f"{record.get('state')} for campaign {record.get('campaign_id')}"
            )

    # 3. the queues: what the functions sent, what the worker finished, what the DLQ holds
    invocations = list(faults.invocations)
    sent = {m.message_id: m for m in faults.sent}
    consumed = consumed_messages(invocations)
    bodies = {m.message_id: m.body for m in faults.sent} | {
        mid: body for i in invocations for mid, body in i.records.items()
    }
    # Every message that reached WorkDLQ (the ops peeks') and its body, as first sent.
    dead = {mid: bodies.get(mid, "") for mid in run.dead_letters}
    queued = queue_depth(run.stack, "WorkQueue") + queue_depth(run.stack, "WorkDLQ")
    lost = sorted(set(sent) - set(consumed) - set(dead)) if queued == 0 else []
    for message_id in lost:
        problems.append(f"message lost: {_describe_message(sent[message_id].body)} ({message_id})")
    # A redrive sends a copy (a new id, the same body): each dead body is worked off that way.
    redriven = Counter(body for mid, body in consumed.items() if mid not in sent)
    for body in set(dead.values()):
        if redriven[body] == 0:
            problems.append(f"DLQ message not worked off after redrive: {_describe_message(body)}")
    strangers = sum(redriven.values()) - sum(min(redriven[b], 1) for b in set(dead.values()))
    if strangers > 0:
        problems.append(f"{strangers} message(s) worked off that no function or redrive sent")
    receives = failed_receives(invocations)
    for message_id, failures in sorted(receives.items()):
        for invocation in failures:
            if _explanation(invocation, faults, calls) is None:
                problems.append(
                    f"a receive of {_describe_message(bodies.get(message_id, ''))} failed "
                    f"with nothing injected (invocation {invocation.id}, {invocation.outcome})"
                )
    unexplained = 0
    for message_id, body in sorted(dead.items()):
        reasons = [_explanation(i, faults, calls) for i in receives.get(message_id, [])]
        if len(reasons) < MAX_RECEIVES or None in reasons:
            unexplained += 1
            problems.append(
                f"DLQ message {_describe_message(body)}: failed receives {len(reasons)}, "
                f"explained by {reasons}"
            )
    lost_intake = 0  # webhooks answered 202 whose message never reached the queue
    for invocation in invocations:
        if invocation.function != WEBHOOK:
            continue
        status = (invocation.result or {}).get("statusCode") if invocation.outcome == "ok" else 500
        own = [f.rule for f in faults.injected if f.invocation == invocation.id]
        about = _describe_webhook(invocation.body)
        if status == 202 and len(invocation.sent) != 1:
            lost_intake += 1
            problems.append(f"webhook {about} answered 202, {len(invocation.sent)} message(s) sent")
        elif status != 202 and (status is None or status < 500 or not own):
            problems.append(f"webhook {about} answered {status} with no fault injected")
    refused = [
        d for d in deliveries if d["status_code"] is not None and 400 <= d["status_code"] < 500
    ]
    for delivery in refused:
        problems.append(
            f"webhook {delivery['type']} of campaign {delivery['campaign_id']} refused "
            f"{delivery['status_code']} ({delivery['url'].rsplit('/', 1)[-1][:6]}…)"
        )

    # 4. the vendor's limit
    arrivals = [c.arrived for c in calls]
    window = busiest_window(arrivals, 60 / run.plan.time_scale)
    over_limit = [c for c in calls if c.status == 429 and c.fault != "storm"]
    if window > VENDOR_LIMIT or over_limit:
        problems.append(
            f"vendor limit: {window} calls in a minute, {len(over_limit)} 429 outside storms"
        )

    # 5. the faults really happened
    vendor_kinds = Counter(c.fault for c in calls if c.fault)
    for kind in ("error", "html", "empty", "garbage", "reset", "timeout", "lost", "storm"):
        if vendor_kinds[kind] == 0:
            problems.append(f"no vendor fault {kind!r} happened")
    for rule in aws_fault_rules():
        if not any(f.rule == rule.name for f in faults.injected):
            problems.append(f"no AWS fault {rule.name!r} happened")
    for mode in ("duplicate", "reorder", "delay"):
        if vendor.modes[mode] == 0:
            problems.append(f"no webhook was {mode}d")

    unexpected = [j for j in run.journeys if j.unexpected]
    started_unexpected = sum(
        count for (cid, _), count in reached.items() if cid in {j.campaign_id for j in unexpected}
    )
    processed = sum(1 for j in run.journeys if j.end and not j.failure)
    starts = {cid for (cid, action) in reached if action == "start-warmup"}
    resumes = {cid for (cid, action) in reached if action == "resume-warmup"}
    run.summary = (
        f"processed {processed}, started {len(starts)}, resumed {len(resumes)}, "
        f"unexpected {len(unexpected)} (started {started_unexpected}), "
        f"actions duplicated {duplicated}, messages lost {len(lost) + lost_intake}, "
        f"DLQ {len(dead)} ({f'{unexplained} unexplained' if unexplained else 'each explained'}), "
        f"429 received {sum(1 for c in calls if c.status == 429)}, "
        f"max 60 s window {window}/{VENDOR_LIMIT}, wall {duration(run.wall_s)}"
    )
    run.counts = {
        "integrator": dict(integrator.answers),
        "webhook modes": dict(vendor.modes),
        "vendor faults": dict(vendor_kinds),
        "aws faults": dict(Counter(f.rule for f in faults.injected)),
        "crashes": {fid: fn.crashes for fid, fn in run.stack.functions.items() if fn.crashes},
        "storms": run.storms,
        "rotation": rotation.steps,
        "dead letters": len(dead),
    }


def dump_ledgers(run: SoakRun, watcher: TableWatcher, path: str) -> None:
    faults = run.stack.aws_faults
    document = {
        "journeys": [vars(j) for j in run.journeys],
        "calls": run.control.calls(),
        "deliveries": run.control.webhook_deliveries(),
        "mailboxes": watcher.mailboxes,
        "ledger": watcher.ledger,
        "invocations": [
            {**vars(i), "records": list(i.records), "matched": dict(i.matched)}
            for i in faults.invocations
        ],
        "injected": [vars(f) for f in faults.injected],
        "sent": [vars(m) for m in faults.sent],
    }
    with open(path, "w") as out:
        json.dump(document, out, default=str, indent=1)


def _describe_webhook(body: str | None) -> str:
    try:
        document = json.loads(body or "")
        return f"{document['type']} for campaign {document['account']['campaign_id']}"
    except (ValueError, KeyError, TypeError):
        return "(unreadable)"


def _describe_message(body: str) -> str:
    try:
        document = json.loads(body)
        return (
            f"{document['event_type']} for campaign {document['campaign_id']} ({document['email']})"
        )
    except (ValueError, KeyError, TypeError):
        return "an unreadable message"


def duration(seconds: float) -> str:
    minutes, rest = divmod(round(seconds), 60)
    return f"{minutes}m{rest:02d}s" if minutes else f"{rest}s"


def queue_depth(stack: LocalStack, logical_id: str) -> int:
    assert stack.aws is not None
    attributes = stack.aws.client("sqs").get_queue_attributes(
        QueueUrl=stack.queue_url(logical_id),
        AttributeNames=[
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ],
    )["Attributes"]
    return sum(int(v) for v in attributes.values())
