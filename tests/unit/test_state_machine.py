"""The mailbox state machine: one table (warmgate.domain.mailboxes.TRANSITIONS), and the README's
state diagram and state list generated from it.

`python -m tests.unit.test_state_machine` prints the README block to paste after a change."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from warmgate.domain.mailboxes import (
    STATE_DESCRIPTIONS,
    TRANSITIONS,
    MailboxEvent,
    MailboxState,
    next_states,
    state_diagram,
)

README = Path(__file__).resolve().parents[2] / "README.md"
BEGIN, END = "<!-- states:begin -->", "<!-- states:end -->"


def readme_block() -> str:
    rows = "\n".join(f"| `{state.value}` | {STATE_DESCRIPTIONS[state]} |" for state in MailboxState)
    return (
        f"{BEGIN}\n```mermaid\n{state_diagram()}\n```\n\n"
        f"| State | Meaning |\n|---|---|\n{rows}\n{END}"
    )


def test_readme_state_diagram_and_list_match_the_transition_table() -> None:
    found = re.search(f"{re.escape(BEGIN)}.*?{re.escape(END)}", README.read_text(), re.DOTALL)
    assert found is not None, f"README.md has no {BEGIN} … {END} block"
    assert found.group(0) == readme_block(), (
        "README's state block is stale: python -m tests.unit.test_state_machine"
    )


def test_every_state_is_described_reachable_and_left_or_final() -> None:
    reachable = {to for _, _, to in TRANSITIONS}
    assert set(STATE_DESCRIPTIONS) == set(MailboxState)
    assert reachable == set(MailboxState)
    for state in MailboxState:
        assert next_states(state), f"{state.value} is a dead end: a new request must be possible"


def test_every_event_is_used_and_a_new_record_starts_consent_requested() -> None:
    assert {event for _, event, _ in TRANSITIONS} == set(MailboxEvent)
    assert {(event, to) for frm, event, to in TRANSITIONS if frm is None} == {
        (MailboxEvent.REQUESTED, MailboxState.CONSENT_REQUESTED)
    }


@pytest.mark.parametrize(
    "state", [MailboxState.WARMING, MailboxState.PAUSED, MailboxState.CONNECTION_PROBLEM]
)
def test_what_mailivery_reports_never_leads_to_a_call_without_a_request(
    state: MailboxState,
) -> None:
    """From a consumed request, only the integrator's events reach a state that calls."""
    calling = {MailboxState.VERIFYING}
    for frm, event, to in TRANSITIONS:
        if frm is state and to in calling:
            pytest.fail(f"{state.value} --{event.value}--> {to.value} skips the request")


if __name__ == "__main__":
    print(readme_block())
