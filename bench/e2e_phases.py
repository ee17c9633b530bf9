"""The phases of bench.e2e against a running local stack: onboardings one at a time, under a
steady load, and the worst case (vendor 5xx and refused starts), each until WorkQueue drains."""

from __future__ import annotations

import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, Final

import httpx

from bench.e2e_taps import DeferCap, LogTap, Meter

WORKER: Final = "WorkerFunction"
RATE: Final = 10.0  # consents per second under load, below what one process can take
REFUSALS: Final = 3  # worst case: start refused this many times before it is accepted
VENDOR_5XX_RATE: Final = 0.10
SETTLE_TIMEOUT_S: Final = 60.0


@dataclass
class Run:
    """The stack, its clients and the measurement taps, for the phases below."""

    stack: Any
    api: httpx.Client
    control: Any
    tap: LogTap
    meter: Meter
    worker_source: Any
    counter: Counter[str] = field(default_factory=Counter)

    def email(self, prefix: str) -> str:
        self.counter[prefix] += 1
        return f"{prefix}{self.counter[prefix]:04d}@contoso.com"

    def onboard(self, email: str) -> str:
        """POST /mailboxes as an integrator would: a 5xx (Mailivery failed) is asked again."""
        for _ in range(10):
            response = self.api.post(
                "/mailboxes", json={"email": email, "first_name": "E2e", "requested_by": "bench"}
            )
            if response.status_code in (200, 201):
                return str(response.json()["consent_url"])
            if response.status_code not in (502, 503):
                response.raise_for_status()
        raise RuntimeError(f"no consent link for {email} after 10 attempts")

    def consent(self, url: str) -> str:
        return str(self.control.consent(url=url)["campaign"]["id"])

    def settle(self, timeout: float = SETTLE_TIMEOUT_S) -> None:
        """Until WorkQueue holds nothing (visible, in flight or delayed): every call of the
        phase made and counted."""
        sqs = self.stack.aws.client("sqs")
        url = self.stack.queue_url("WorkQueue")
        deadline = time.monotonic() + timeout
        names = [
            "ApproximateNumberOfMessages",
            "ApproximateNumberOfMessagesNotVisible",
            "ApproximateNumberOfMessagesDelayed",
        ]
        while time.monotonic() < deadline:
            attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)
            if all(int(v) == 0 for v in attributes["Attributes"].values()):
                return
            time.sleep(0.05)
        raise RuntimeError("WorkQueue did not drain")

    def one_at_a_time(self, count: int) -> list[str]:
        ids = []
        for _ in range(count):
            campaign_id = self.consent(self.onboard(self.email("lone")))
            ids.append(campaign_id)
            if not self.tap.wait_started({campaign_id}, timeout=30):
                raise RuntimeError(f"campaign {campaign_id} was not started")
        self.settle()
        return ids

    def under_load(self, count: int, window: int) -> tuple[list[str], int, float]:
        """`count` consents at RATE/s with the given window: (campaign ids, worker
        invocations, seconds the consents took to offer)."""
        self.worker_source.batching_window = window
        urls = [self.onboard(self.email(f"load{window}w")) for _ in range(count)]
        invocations = self.meter.invocations[WORKER]
        ids = []
        began = time.monotonic()
        for n, url in enumerate(urls):
            delay = began + n / RATE - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            ids.append(self.consent(url))
        offered = time.monotonic() - began
        if not self.tap.wait_started(set(ids), timeout=60 + count / RATE + window):
            raise RuntimeError("not every campaign under load was started")
        self.settle()
        return ids, self.meter.invocations[WORKER] - invocations, offered

    def worst_case(self, count: int, cap: DeferCap) -> dict[str, int]:
        """`count` onboardings with 10 % vendor 5xx and every start refused REFUSALS times;
        returns how the mailboxes ended (state → count)."""
        emails = [self.email("worst") for _ in range(count)]
        for email in emails:
            self.control.set_connection(email, ok=False, refusals=REFUSALS)
        window, self.worker_source.batching_window = self.worker_source.batching_window, 0
        cap.on = True
        self.control.set_faults(
            error_rate=VENDOR_5XX_RATE, error_statuses=[500, 502, 503], paths=["^/api/v1/"], seed=7
        )
        try:
            for email in emails:
                self.consent(self.onboard(email))
            ended = self._ended(emails)
            self.settle()
        finally:
            self.control.clear_faults()
            cap.on = False
            self.worker_source.batching_window = window
        return ended

    def _ended(self, emails: list[str]) -> dict[str, int]:
        """Once every mailbox is warming or parked: how many of each."""
        table = self.stack.resources["MailboxTable"].ref
        dynamodb = self.stack.aws.client("dynamodb")  # the stack's own client: not counted
        deadline = time.monotonic() + SETTLE_TIMEOUT_S
        while True:
            states = Counter(_state(dynamodb, table, email) for email in emails)
            if set(states) <= {"warming", "start_failed (parked)"}:
                return dict(states)
            if time.monotonic() > deadline:
                raise RuntimeError(f"the worst case did not settle: {dict(states)}")
            time.sleep(0.05)


def _state(dynamodb: Any, table: str, email: str) -> str:
    item = dynamodb.get_item(
        TableName=table, Key={"pk": {"S": f"mailbox#{email}"}}, ConsistentRead=True
    ).get("Item", {})
    state = item.get("state", {}).get("S", "missing")
    return f"{state} (parked)" if item.get("parked", {}).get("BOOL") else state
