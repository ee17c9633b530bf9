"""Wiring: each function's service built from its settings, and the time budget they imply.

The one module (besides the handlers) that reads the settings models: the domain, the
services and the adapters take plain values, so they are built the same way by the
functions, the operator CLI, the local stack and the tests. The webhook and the events
function build their one adapter in their handler instead: importing this module would load
the Mailivery client (httpx) and every service into their cold start for nothing they use.

The time budget. Each Mailivery call has a deadline that the client enforces
(`worst_case_call_seconds`: every attempt at its timeouts, budget waits, backoff and
Retry-After sleeps). A unit of work adds its vendor calls and an allowance for its DynamoDB
and SQS calls. Two rules follow, both tested:
- every function's Timeout in template.yaml is above the worst case of its unit of work;
- a function starts a unit only while at least its worst case is left of the invocation.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import TYPE_CHECKING

import httpx

from warmgate.adapters import aws
from warmgate.adapters.budget import DEFAULT_MAX_WAIT, RateBudget
from warmgate.adapters.dynamodb import MailboxRepository
from warmgate.adapters.mailivery import MailiveryClient, RetryPolicy, VendorContract
from warmgate.adapters.mailivery.client import call_deadline_seconds
from warmgate.adapters.secrets import fetch_secret
from warmgate.adapters.sqs import WorkQueue
from warmgate.services.onboarding import OnboardingService
from warmgate.services.reconciler import Reconciler
from warmgate.services.worker import CampaignWorker
from warmgate.settings import (
    CampaignWorkerSettings,
    MailiverySettings,
    OnboardingSettings,
    ReconcilerSettings,
    SettingsError,
)

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

# The DynamoDB and SQS calls of one unit of work (claims, records, the request budget's
# reads and writes, a deferral): about ten, each a few milliseconds when AWS is healthy. Not
# modelled at their own timeouts: if AWS itself stalls, the invocation's timeout ends it, SQS
# delivers the record again and the claim lease keeps a second worker from acting twice.
AWS_CALLS_ALLOWANCE_SECONDS = 10.0


# --- the services ---


def onboarding_from_settings(
    settings: OnboardingSettings, dynamodb: DynamoDBClient
) -> OnboardingService:
    return OnboardingService(
        MailboxRepository(dynamodb, settings.mailbox_table_name),
        client_from_settings(settings, throttle=budget_from_settings(settings, dynamodb).acquire),
        WorkQueue(aws.client("sqs"), settings.work_queue_url),
        expectation_ttl=timedelta(hours=settings.expectation_ttl_hours),
        claim_lease=timedelta(seconds=settings.claim_lease_seconds),
        admin_principals=frozenset(settings.admin_principals),
    )


def worker_from_settings(
    settings: CampaignWorkerSettings, dynamodb: DynamoDBClient, budget: RateBudget | None = None
) -> CampaignWorker:
    """The worker as every entry point runs it: settings' policy, the shared request budget
    (`budget`: another one, e.g. on a benchmark's scaled clock)."""
    if budget is None:
        budget = budget_from_settings(settings, dynamodb)
    return CampaignWorker(
        MailboxRepository(dynamodb, settings.mailbox_table_name, budget=budget),
        client_from_settings(settings, throttle=budget.acquire),
        policy=settings.unexpected_campaign_policy,
        claim_lease=timedelta(seconds=settings.claim_lease_seconds),
        max_start_attempts=settings.max_start_attempts,
        claims_take_tokens=True,
    )


def reconciler_from_settings(settings: ReconcilerSettings, dynamodb: DynamoDBClient) -> Reconciler:
    return Reconciler(
        MailboxRepository(dynamodb, settings.mailbox_table_name),
        client_from_settings(settings, throttle=budget_from_settings(settings, dynamodb).acquire),
        WorkQueue(aws.client("sqs"), settings.work_queue_url),
        page_seconds=reconciler_page_seconds(settings),
    )


def budget_from_settings(settings: MailiverySettings, dynamodb: DynamoDBClient) -> RateBudget:
    """The request budget every instance shares (one per API key, in the mailbox table)."""
    return RateBudget(
        dynamodb,
        settings.mailbox_table_name,
        per_minute=settings.mailivery_requests_per_minute,
    )


# --- the Mailivery client ---


def api_key_provider(settings: MailiverySettings) -> Callable[[], str]:
    """Where the API key comes from: the secret (cached, warmgate.adapters.secrets), or a local
    plain key."""
    secret = settings.mailivery_api_key_secret
    if secret:
        return lambda: fetch_secret(secret, max_age=settings.secret_max_age_seconds)
    plain = settings.mailivery_api_key  # admitted only on the local stage
    if plain:
        return lambda: plain
    # MailiverySettings' validator refuses neither; only an unvalidated model_construct gets here.
    raise SettingsError("missing environment variable: MAILIVERY_API_KEY_SECRET")


def client_from_settings(
    settings: MailiverySettings, throttle: Callable[[], None] | None = None
) -> MailiveryClient:
    """The client every function uses; `throttle` is the shared request budget's acquire,
    which waits at most budget.DEFAULT_MAX_WAIT for a token."""
    try:
        contract = VendorContract.from_overrides(settings.mailivery_contract_overrides)
    except ValueError as exc:
        raise SettingsError(str(exc)) from None
    return MailiveryClient(
        base_url=settings.mailivery_base_url,
        api_key=api_key_provider(settings),
        contract=contract,
        consent_hosts=settings.mailivery_consent_hosts,
        timeout=_timeout(settings),
        retry=_retry_policy(settings),
        throttle=throttle,
        throttle_max_wait=DEFAULT_MAX_WAIT if throttle is not None else 0.0,
    )


def _timeout(settings: MailiverySettings) -> httpx.Timeout:
    return httpx.Timeout(
        settings.mailivery_read_timeout_seconds,
        connect=settings.mailivery_connect_timeout_seconds,
    )


def _retry_policy(settings: MailiverySettings) -> RetryPolicy:
    return RetryPolicy(attempts=settings.mailivery_read_retries + 1)


# --- the time budget ---


def worst_case_call_seconds(settings: MailiverySettings, *, retried: bool = True) -> float:
    """The deadline of one call of `client_from_settings(settings, throttle=budget.acquire)`:
    a read (`retried`) or a start/resume/delete/create (one attempt). The client enforces it."""
    return call_deadline_seconds(
        _retry_policy(settings), _timeout(settings), DEFAULT_MAX_WAIT, retried=retried
    )


def worker_record_seconds(settings: MailiverySettings) -> float:
    """One WorkQueue record: the re-read (GET), one start/resume/delete (never retried), and
    the GET that checks a 409 on start/resume."""
    return worst_case_call_seconds(settings) + claim_hold_seconds(settings)


def claim_hold_seconds(settings: MailiverySettings) -> float:
    """From a worker's claim (mailbox `verifying`, ledger `deleting`) to its result: the
    action and the GET that checks a 409. CLAIM_LEASE_SECONDS must be above it, or another
    worker could take over the claim of a worker that is still calling Mailivery."""
    return (
        worst_case_call_seconds(settings, retried=False)
        + worst_case_call_seconds(settings)
        + AWS_CALLS_ALLOWANCE_SECONDS
    )


def onboarding_request_seconds(settings: MailiverySettings) -> float:
    """One POST /mailboxes: the ms-graph create, never retried."""
    return worst_case_call_seconds(settings, retried=False) + AWS_CALLS_ALLOWANCE_SECONDS


def reconciler_page_seconds(settings: MailiverySettings) -> float:
    """One page of Mailivery's campaign list (a read) and the re-queueing of what it holds."""
    return worst_case_call_seconds(settings) + AWS_CALLS_ALLOWANCE_SECONDS
