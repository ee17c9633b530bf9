"""The soak's plans (the full one of `make soak`, the small one of `make test`) and the
facts its checks rest on."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Final

WEBHOOK, WORKER = "WebhookFunction", "WorkerFunction"
ONBOARDING, RECONCILER = "OnboardingFunction", "ReconcilerFunction"
FUNCTIONS: Final = (WEBHOOK, WORKER, ONBOARDING, RECONCILER)
VENDOR_LIMIT: Final = 240  # requests per (time-scaled) minute, contract §1
STORM_SECONDS: Final = 30  # on the vendor's time-scaled clock
SLOW_ANSWER_MS: Final = 12_000  # the client's read timeout is 10 s
# A reset connection's call lands this much later at the vendor (a proxy dropped the client,
# the vendor went on); within warmgate.domain.mailboxes.UNKNOWN_OUTCOME_SETTLE.
RESET_LANDS_MS: Final = 2_000
SECRET_MAX_AGE_SECONDS: Final = 5  # the functions' secret cache, short so rotation is quick
WATCH_INTERVAL_S: Final = 2.0
PROGRESS_EVERY_S: Final = 30.0  # a line on stderr
ACTIONS: Final = ("start-warmup", "resume-warmup")
# The sandbox's endpoint never ran for these calls (answered before it, as at the vendor).
NOT_REACHED_FAULTS: Final = frozenset({"error", "html"})
MAX_RECEIVES: Final = 5  # WorkQueue's maxReceiveCount (template.yaml)


@dataclass(frozen=True)
class SoakPlan:
    name: str
    expected: int
    other_mailbox: int  # the owner signs in with another mailbox; the request is withdrawn
    after_withdrawal: int  # the owner consents after the integrator withdrew the request
    reconnects: int
    pauses: int
    time_scale: float
    in_flight: int  # journeys the integrator runs at once
    storms: int  # 429 storms, spread over the onboarding phase
    deadline_s: float  # from the stack's start to the last check
    reconcile_every_s: float
    # A reconnect whose consent webhook is lost waits for the reconciler's requeue of waiting
    # requests (5 real minutes): only a run that long may drop those webhooks.
    drop_reconnect_webhooks: bool
    # CLAIM_LEASE_SECONDS. The local stack runs one invocation at a time, so no live worker can
    # hold a claim while another decides: a shorter lease only shortens the wait after a crash.
    claim_lease_s: int = 90
    # Crashes after the first of each kind (a crashed onboarding's retry waits out warmgate's
    # 60 s in-flight window; a crashed worker's claim, the lease): a short run has only those.
    repeat_crashes: bool = True
    seed: int = 14

    @property
    def mailboxes(self) -> int:
        return (
            self.expected
            + self.other_mailbox
            + self.after_withdrawal
            + self.reconnects
            + self.pauses
        )


FULL: Final = SoakPlan(
    "full",
    expected=800,
    other_mailbox=100,
    after_withdrawal=50,
    reconnects=25,
    pauses=25,
    time_scale=5,
    in_flight=40,
    storms=6,
    deadline_s=45 * 60,
    reconcile_every_s=60,
    drop_reconnect_webhooks=True,
)
SMALL: Final = SoakPlan(
    "small",
    expected=60,
    other_mailbox=8,
    after_withdrawal=4,
    reconnects=4,
    pauses=4,
    time_scale=5,
    in_flight=16,
    storms=1,
    deadline_s=170,
    reconcile_every_s=20,
    drop_reconnect_webhooks=False,
    claim_lease_s=35,  # the setting's minimum
    repeat_crashes=False,
)
