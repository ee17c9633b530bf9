"""Failed start/resume attempts: counted, retried with a growing delay, parked at the bound.

The worker's side of "not done yet": `RetryLater` tells the handler to bring the message back
(the handler and the operator CLI map it), and `failed_attempt` says what one failed call
leaves on the mailbox record and when it is tried again. Pure: the worker does the writes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import datetime

from warmgate.adapters.mailivery import (
    ConnectionLost,
    MailiveryError,
    ServerError,
    Timeout,
    UnexpectedResponse,
)
from warmgate.domain.mailboxes import ExpectedMailbox, LastError, MailboxEvent, MailboxState, iso

START_RETRY_BASE_SECONDS = 60  # refused or conflicting: 60, 120, 240, 480 s …
UNKNOWN_OUTCOME_RETRY_BASE_SECONDS = 15  # settled by a cheap re-read: 15, 30, 60 s …
# A start/resume that failed this way may still have run at Mailivery.
AMBIGUOUS_ERRORS = (ServerError, Timeout, ConnectionLost, UnexpectedResponse)
MAX_DEFER_SECONDS = 900  # SQS DelaySeconds maximum
RACE_RETRY_SECONDS = 2  # a concurrent write won: decide again soon on the new record


class RetryLater(Exception):
    """Not done yet, not failed: the message should come back after `delay` seconds.

    `kind` names why, for metrics: rate_limited, busy, start_failed, outcome_unknown, conflict.
    `attempt` is the start/resume attempt count the re-enqueued message carries (None: as is).
    """

    def __init__(self, delay: float, kind: str, reason: str, *, attempt: int | None = None) -> None:
        super().__init__(reason)
        self.delay = max(1, min(MAX_DEFER_SECONDS, math.ceil(delay)))
        self.kind = kind
        self.reason = reason
        self.attempt = attempt


@dataclass(frozen=True, slots=True)
class FailedAttempt:
    record: ExpectedMailbox  # the claim moved on: start_failed (parked or not), or verifying
    retry: RetryLater | None  # None: parked, no retry without a new request


def failed_attempt(
    claimed: ExpectedMailbox,
    error: MailiveryError,
    attempt: int,
    *,
    outcome_known: bool,
    max_attempts: int,
    now: datetime,
) -> FailedAttempt:
    """A start/resume that did not (or not surely) work: retry later, or park at the bound.

    The count is the larger of the record's (shared by duplicate messages) and the message's
    own (`attempt`, carried in its message attribute), so no chain of deferrals can spend
    vendor calls forever. An unknown outcome keeps the claim (`verifying`): the retry re-reads.
    """
    attempts = max(claimed.start_attempts, attempt) + 1
    code = error.code or type(error).__name__
    parked = attempts >= max_attempts
    note = f"{code}, attempt {attempts}/{max_attempts}"
    if parked or outcome_known:
        state, event = MailboxState.START_FAILED, MailboxEvent.REFUSED
        reason = f"{'parked' if parked else 'retrying'}: start/resume failed ({note})"
    else:
        state, event = MailboxState.VERIFYING, MailboxEvent.OUTCOME_UNKNOWN
        reason = f"outcome unknown ({note}): the retry re-reads the campaign first"
    record = claimed.transition(
        state,
        event=event,
        now=now,
        reason=reason,
        start_attempts=attempts,
        last_error=LastError(code, error.message, iso(now), error.request_id),
        parked=parked,
        outcome_unknown=not (parked or outcome_known),
    )
    if parked:
        return FailedAttempt(record, None)
    base = START_RETRY_BASE_SECONDS if outcome_known else UNKNOWN_OUTCOME_RETRY_BASE_SECONDS
    retry = RetryLater(
        base * 2 ** (attempts - 1),
        "start_failed" if outcome_known else "outcome_unknown",
        f"{code}: {error.message}",
        attempt=attempts,
    )
    return FailedAttempt(record, retry)
