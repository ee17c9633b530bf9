"""The five scenes of `make demo` (devstack.demo tells the story and starts the stack): each
drives the API and the Mailivery sandbox over real HTTP, narrates its steps, and the final table
compares every mailbox's state with the one its scene promises."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, TextIO

import httpx

from devstack.event_bus import BusSubscription, event_line
from devstack.sandbox import SandboxControl


@dataclass
class Mailbox:
    """One row of the final table."""

    scenario: str
    requested: str
    consented_as: str
    campaign_id: int | None = None
    expected_outcome: str = ""
    requests: int = 0  # POST /mailboxes answered with a consent link


class EventFeed:
    """The events a subscription received, shown per mailbox (or campaign) once they settle."""

    def __init__(self, subscription: BusSubscription, quiet_s: float = 0.5) -> None:
        self._subscription = subscription
        self._quiet_s = quiet_s
        self._events: list[dict[str, Any]] = []

    def about(self, *subjects: str) -> list[str]:
        """Lines of the events about `subjects`, after 0.5 s without a new one (bounded)."""
        deadline = time.monotonic() + 10 * self._quiet_s
        while time.monotonic() < deadline:
            arrived = self._subscription.receive(wait_seconds=0)
            self._events += arrived
            if not arrived:
                time.sleep(self._quiet_s)
                if not (more := self._subscription.receive(wait_seconds=0)):
                    break
                self._events += more
        return [
            event_line(event)
            for event in self._events
            if {str(event["detail"].get("email")), str(event["detail"].get("campaign_id"))}
            & set(subjects)
        ]


class Demo:
    def __init__(
        self,
        api_url: str,
        sandbox_url: str,
        out: TextIO,
        *,
        tag: str = "",
        timeout: float = 15.0,
        feed: EventFeed | None = None,
    ) -> None:
        self._api = httpx.Client(base_url=api_url, timeout=10.0)
        self._control = SandboxControl(sandbox_url)
        self._out = out
        self._tag = tag
        self._timeout = timeout
        self._feed = feed
        self.mailboxes: list[Mailbox] = []

    def close(self) -> None:
        self._api.close()
        self._control.close()

    # ---- the scenario

    def run(self) -> bool:
        self._say("warmgate demo: API " + str(self._api.base_url))
        for scene in (
            self.expected,
            self.paused,
            self.unexpected,
            self.reconnect,
            self.operator_pause,
        ):
            scene()
            self._show_events(self.mailboxes[-1])
        return self.report()

    def _show_events(self, box: Mailbox) -> None:
        if self._feed is not None:
            for line in self._feed.about(box.requested, str(box.campaign_id)):
                self._say(f"   ⇢ {line}")

    def expected(self) -> None:
        box = self._mailbox("1 expected", "ada", "ada", outcome="warming")
        self._heading(f"1. {box.requested} is requested and its owner consents")
        url = self._request(box)
        box.campaign_id = self._consent(url, box)
        record = self._wait_for_state(box.requested, "warming")
        self._step(f"worker re-read campaign {box.campaign_id} and started it → {record['state']}")

    def paused(self) -> None:
        box = self._mailbox("2 paused", "grace", "grace", outcome="warming")
        self._heading(f"2. {box.requested} consents; its campaign is paused before the webhook")
        url = self._request(box)
        self._control.set_webhooks("reorder")  # hold Mailivery's webhooks
        try:
            box.campaign_id = self._consent(url, box, note="(webhook held back)")
            self._control.pause_campaign(box.campaign_id)
            self._step(f"Mailivery pauses campaign {box.campaign_id} itself (no webhook for that)")
        finally:
            self._control.set_webhooks("deliver")
            released = self._control.flush_webhooks()
        self._step(f"the late webhook arrives ({released} released)")
        record = self._wait_for_state(box.requested, "warming")
        self._step(f"worker re-read the paused campaign and resumed it → {record['state']}")

    def unexpected(self) -> None:
        box = self._mailbox("3 unexpected", "bob", "mallory", outcome="consent_requested")
        self._heading(f"3. {box.requested} is requested; someone consents as {box.consented_as}")
        url = self._request(box)
        box.campaign_id = self._consent(url, box)
        self._wait(
            f"worker to re-read campaign {box.campaign_id}",
            lambda: self._reread(box.campaign_id),
        )
        self._settle(box.campaign_id)
        state = self._state(box.requested)
        campaign = self._campaign(box.campaign_id)
        status = campaign["status"] if campaign else "deleted"
        self._step(
            f"campaign {box.campaign_id} ({box.consented_as}) is not expected: never started, "
            f"Mailivery shows it {status}; {box.requested} is still {state}"
        )

    def reconnect(self) -> None:
        box = self._mailbox("4 reconnect", "lin", "lin", outcome="warming")
        self._heading(f"4. {box.requested} warms, loses its connection, and is reconnected")
        box.campaign_id = self._warming(box)
        self._control.break_connection(box.campaign_id)
        self._wait_for_state(box.requested, "connection_problem")
        self._step("Mailivery reports a connection problem → connection_problem")
        url = self._request(box)
        campaign = self._control.consent(url=url)["campaign"]
        self._step(
            f"the owner consents again → Mailivery reuses campaign {campaign['id']} "
            f"({campaign['status']}) and sends campaign.updated"
        )
        record = self._wait_for_state(box.requested, "warming")
        self._step(f"worker resumed campaign {box.campaign_id} → {record['state']}")

    def operator_pause(self) -> None:
        box = self._mailbox("5 operator pause", "kay", "kay", outcome="paused")
        self._heading(f"5. {box.requested} warms; an operator pauses it in Mailivery's dashboard")
        box.campaign_id = self._warming(box)
        self._control.pause_campaign(box.campaign_id)
        for event_type in ("campaign.updated", "campaign.pending"):
            self._control.send_webhook(box.campaign_id, event_type)
        self._step("Mailivery sends campaign.updated, then a late duplicate campaign.pending")
        self._wait_for_state(box.requested, "paused")
        self._settle(box.campaign_id)
        self._step(
            "recorded as paused and left alone: resuming takes a request "
            f"(POST /mailboxes/{box.requested}/resume)"
        )

    def _warming(self, box: Mailbox) -> int:
        campaign_id = self._consent(self._request(box), box)
        self._wait_for_state(box.requested, "warming")
        self._step(f"campaign {campaign_id} started → warming")
        return campaign_id

    # ---- the table

    def report(self) -> bool:
        campaigns = {c["id"]: c for c in self._control.campaigns()}
        calls = self._control.calls()
        header = (
            "scenario",
            "requested",
            "consented as",
            "requests",
            "campaign (calls)",
            "Mailivery",
            "warmgate",
        )
        rows = [header]
        ok = True
        for box in self.mailboxes:
            campaign = campaigns.get(box.campaign_id)
            state = self._state(box.requested)
            ok &= state == box.expected_outcome
            changes = [
                call["path"].rsplit("/", 1)[-1] if call["method"] == "PATCH" else "delete"
                for call in calls
                if call["method"] in ("PATCH", "DELETE")
                and f"/campaigns/{box.campaign_id}" in call["path"]
            ]
            rows.append(
                (
                    box.scenario,
                    box.requested,
                    box.consented_as,
                    str(box.requests),
                    f"{box.campaign_id} ({', '.join(changes) or 'no start'})",
                    campaign["status"] if campaign else "deleted",
                    state,
                )
            )
        widths = [max(len(str(row[i])) for row in rows) for i in range(len(header))]
        self._say("")
        for n, row in enumerate(rows):
            cells = (str(cell).ljust(width) for cell, width in zip(row, widths, strict=True))
            self._say("  ".join(cells).rstrip())
            if n == 0:
                self._say("  ".join("-" * width for width in widths))
        self._say("")
        self._say("every mailbox ended as expected" if ok else "UNEXPECTED FINAL STATES (above)")
        return ok

    # ---- steps

    def _mailbox(self, scenario: str, requested: str, consented: str, *, outcome: str) -> Mailbox:
        box = Mailbox(scenario, self._email(requested), self._email(consented), None, outcome)
        self.mailboxes.append(box)
        return box

    def _email(self, name: str) -> str:
        return f"{name}{self._tag}@contoso.com"

    def _request(self, box: Mailbox) -> str:
        first_name = box.requested.split("@")[0].split("-")[0].title()
        response = self._api.post(
            "/mailboxes",
            json={"email": box.requested, "first_name": first_name, "requested_by": "demo"},
        )
        body = response.json()
        if response.status_code not in (200, 201):
            raise RuntimeError(f"POST /mailboxes → {response.status_code} {body}")
        self._step(f"POST /mailboxes → {response.status_code} {body['state']}, consent URL issued")
        box.requests += 1
        return str(body["consent_url"])

    def _consent(self, url: str, box: Mailbox, note: str = "") -> int:
        email = None if box.consented_as == box.requested else box.consented_as
        campaign = self._control.consent(url=url, email=email)["campaign"]
        who = box.consented_as
        self._step(
            f"owner signs in at Microsoft as {who} → Mailivery campaign {campaign['id']} "
            f"{campaign['status']}, webhook campaign.pending {note}".rstrip()
        )
        return int(campaign["id"])

    def _wait_for_state(self, email: str, state: str) -> dict[str, Any]:
        return self._wait(
            f"{email} to be {state}",
            lambda: record if (record := self._record(email)).get("state") == state else None,
        )

    def _reread(self, campaign_id: int | None) -> bool | None:
        path = f"/api/v1/campaigns/{campaign_id}"
        seen = any(c["method"] == "GET" and c["path"] == path for c in self._control.calls())
        return True if seen else None

    def _settle(self, campaign_id: int | None, quiet_s: float = 0.5) -> None:
        """Waits until no vendor call about the campaign happened for `quiet_s` (the worker is
        done with it); the API alone cannot show that "nothing more will happen"."""

        def calls() -> int:
            return sum(f"/campaigns/{campaign_id}" in c["path"] for c in self._control.calls())

        seen, quiet_since = calls(), time.monotonic()
        while time.monotonic() - quiet_since < quiet_s:
            time.sleep(0.1)
            if (now := calls()) != seen:
                seen, quiet_since = now, time.monotonic()

    def _wait[T](self, what: str, probe: Callable[[], T | None]) -> T:
        deadline = time.monotonic() + self._timeout
        while True:
            result = probe()
            if result is not None:
                return result
            if time.monotonic() > deadline:
                raise TimeoutError(f"waited {self._timeout:g} s for {what}")
            time.sleep(0.1)

    # ---- reads

    def _record(self, email: str) -> dict[str, Any]:
        response = self._api.get(f"/mailboxes/{email}")
        return dict(response.json()) if response.status_code == 200 else {}

    def _state(self, email: str) -> str:
        return str(self._record(email).get("state", "none"))

    def _campaign(self, campaign_id: int | None) -> dict[str, Any] | None:
        return next((c for c in self._control.campaigns() if c["id"] == campaign_id), None)

    # ---- output

    def _heading(self, text: str) -> None:
        self._say(f"\n{text}")

    def _step(self, text: str) -> None:
        self._say(f"   → {text}")

    def _say(self, text: str) -> None:
        print(text, file=self._out, flush=True)
