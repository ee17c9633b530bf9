"""The reliability soak's small variant (tests/e2e/soak.py), in the default suite.

`make soak` runs the full one (1,000 onboardings). This one runs 80 with every fault of the
full one, in a process of its own: its stack has a time scale, fault rules and a secret cache
of its own, and moto's backends are process-wide (this session's stack lives in this one).
Every check is the soak's: a mismatch of its three ledgers fails it, naming the campaign.
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

from tests.e2e.soak import SMALL

pytestmark = [pytest.mark.slow, pytest.mark.soak]

ROOT = Path(__file__).resolve().parents[2]
SUMMARY = re.compile(
    r"processed (?P<processed>\d+), started (?P<started>\d+), resumed (?P<resumed>\d+), "
    r"unexpected (?P<unexpected>\d+) \(started 0\), actions duplicated 0, messages lost 0, "
    r"DLQ (?P<dead>\d+) \(each explained\), 429 received (?P<throttled>\d+), "
    r"max 60 s window (?P<window>\d+)/240, wall \S+"
)


def test_soak_small_every_fault_at_once_and_the_three_ledgers_agree() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "tests.e2e.soak", "--small"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=SMALL.deadline_s + 60,
        check=False,
    )

    assert done.returncode == 0, f"{done.stdout}\n{done.stderr[-6000:]}"
    lines = done.stdout.splitlines()
    assert len(lines) == 1, done.stdout  # exactly one summary line
    summary = SUMMARY.fullmatch(lines[0])
    assert summary is not None, lines[0]
    counts = {name: int(value) for name, value in summary.groupdict().items()}
    lifecycle = SMALL.reconnects + SMALL.pauses
    assert counts["processed"] == SMALL.mailboxes
    assert counts["started"] == SMALL.expected + lifecycle
    assert counts["resumed"] == lifecycle
    assert counts["unexpected"] == SMALL.other_mailbox + SMALL.after_withdrawal
    assert counts["dead"] >= 1  # the poisoned mailbox's message, explained and redriven
    assert counts["throttled"] > 0  # the storm happened
    assert 0 < counts["window"] <= 240
