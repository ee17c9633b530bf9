"""Observability singletons: one Logger and one Metrics per process, and every metric's name.

The template's Globals set POWERTOOLS_SERVICE_NAME and POWERTOOLS_METRICS_NAMESPACE; the
defaults below only keep tests and local runs working without them.
"""

from __future__ import annotations

import os
from enum import StrEnum

from aws_lambda_powertools import Logger, Metrics
from aws_lambda_powertools.metrics import MetricUnit

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "warmgate")

logger = Logger(service=SERVICE)
metrics = Metrics(
    namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "warmgate"), service=SERVICE
)


class Metric(StrEnum):
    """Every custom metric warmgate emits, in CloudWatch's own CamelCase; template.yaml's
    alarms name members of it (a test checks)."""

    # OnboardingFunction
    CONSENT_LINK_ISSUED = "ConsentLinkIssued"
    CONSENT_LINK_REPLAYED = "ConsentLinkReplayed"
    CONSENT_LINK_NOT_SAVED = "ConsentLinkNotSaved"
    RESUME_REQUESTED = "ResumeRequested"
    # WebhookFunction
    WEBHOOK_ACCEPTED = "WebhookAccepted"
    WEBHOOK_REJECTED = "WebhookRejected"
    WEBHOOK_FAILED = "WebhookFailed"
    # WorkerFunction: one per outcome of the decision table (warmgate.domain.decisions.Outcome,
    # same member names, see `of`) ...
    STARTED = "Started"
    RESUMED = "Resumed"
    ALREADY_WARMING = "AlreadyWarming"
    PAUSE_RECORDED = "PauseRecorded"
    ACTIVE_RECORDED = "ActiveRecorded"
    AWAITING_RECONNECT = "AwaitingReconnect"
    UNEXPECTED_LEFT = "UnexpectedLeft"
    UNEXPECTED_DELETED = "UnexpectedDeleted"
    UNEXPECTED_ACTIVE = "UnexpectedActive"
    DUPLICATE = "Duplicate"
    NOT_MS_GRAPH = "NotMsGraph"
    ID_MISMATCH = "IdMismatch"
    CAMPAIGN_GONE = "CampaignGone"
    DELETED_SEEN = "DeletedSeen"
    CONNECTION_PROBLEM = "ConnectionProblem"
    UNKNOWN_STATUS = "UnknownStatus"
    IGNORED = "Ignored"
    BUSY = "Busy"
    START_PARKED = "StartParked"
    # ... one per kind of deferral (warmgate.services.worker.RetryLater.kind; busy above) ...
    RATE_LIMITED = "RateLimited"
    CONFLICT = "Conflict"
    START_FAILED = "StartFailed"
    OUTCOME_UNKNOWN = "OutcomeUnknown"
    # ... and the batch's own.
    OUT_OF_TIME = "OutOfTime"
    DLQ_BOUND = "DlqBound"
    # ReconcilerFunction
    EXPECTATIONS_EXPIRED = "ExpectationsExpired"
    PENDING_CAMPAIGNS_SEEN = "PendingCampaignsSeen"
    STRANDED_CAMPAIGNS_QUEUED = "StrandedCampaignsQueued"
    UNEXPECTED_PENDING_CAMPAIGNS = "UnexpectedPendingCampaigns"
    RESUME_REQUESTS_REQUEUED = "ResumeRequestsRequeued"
    RECONNECT_REQUESTS_REQUEUED = "ReconnectRequestsRequeued"
    RECONCILE_PAGES_READ = "ReconcilePagesRead"
    RECONCILE_INTERRUPTED = "ReconcileInterrupted"
    RECONCILE_PASS_COMPLETED = "ReconcilePassCompleted"  # noqa: S105 (a name, no secret)
    # EventsFunction
    MAILBOX_EVENTS_PUBLISHED = "MailboxEventsPublished"
    MAILBOX_EVENTS_DEFERRED = "MailboxEventsDeferred"

    @classmethod
    def of(cls, code: str) -> Metric:
        """The metric counting a worker outcome or deferral kind: `unexpected_left` →
        UnexpectedLeft. A code with no member fails loudly rather than invent a name."""
        return cls[code.upper()]


def count(metric: Metric, value: float = 1) -> None:
    metrics.add_metric(name=metric, unit=MetricUnit.Count, value=value)
