"""A mailbox's life after its first start, through the whole local stack over real HTTP:
reconnect, an operator's pause left alone, and an explicit resume request. Vendor calls are
counted in the sandbox's own log, per campaign."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from devstack.sandbox import SandboxControl
from devstack.stack import LocalStack
from tests.e2e.conftest import unique_email
from tests.e2e.test_local_stack import (
    request_consent,
    vendor_changes,
    wait_for_state,
    wait_until_worked_off,
)

pytestmark = pytest.mark.slow


def warming(api: httpx.Client, control: SandboxControl, name: str) -> tuple[str, int]:
    email = unique_email(name)
    campaign = control.consent(url=request_consent(api, email)["consent_url"])["campaign"]
    wait_for_state(api, email, "warming")
    return email, int(campaign["id"])


@pytest.mark.parametrize("reconnect_event", ["campaign.updated", "campaign.pending"])
def test_reconnect_after_connection_problem_resumes_once(
    api: httpx.Client, control: SandboxControl, reconnect_event: str
) -> None:
    email, campaign_id = warming(api, control, "lin")
    control.break_connection(campaign_id)  # sends Mailivery's connection-problem webhook
    wait_for_state(api, email, "connection_problem")

    control.set_options(reconnect_event=reconnect_event)
    try:
        answer = request_consent(api, email)  # the reconnect: a new link, the same campaign
        assert answer["state"] == "consent_requested"
        consented = control.consent(url=answer["consent_url"])
    finally:
        control.set_options(reconnect_event="campaign.updated")

    assert (consented["outcome"], consented["campaign"]["id"]) == ("reconnected", campaign_id)
    record = wait_for_state(api, email, "warming")
    assert record["campaign_id"] == str(campaign_id)
    assert vendor_changes(control, campaign_id) == ["start-warmup", "resume-warmup"]


def test_operator_pause_is_recorded_and_left_alone_then_resume_request_resumes_once(
    api: httpx.Client, control: SandboxControl, sqs: Any, local_stack: LocalStack
) -> None:
    email, campaign_id = warming(api, control, "kay")
    control.pause_campaign(campaign_id)  # in Mailivery's dashboard

    control.send_webhook(campaign_id, "campaign.updated")
    control.send_webhook(campaign_id, "campaign.pending")  # a late duplicate

    record = wait_for_state(api, email, "paused")
    wait_until_worked_off(sqs, local_stack)
    assert vendor_changes(control, campaign_id) == ["start-warmup"]
    assert "resume_requested" in record["next_states"]

    response = api.post(f"/mailboxes/{email}/resume")
    assert response.status_code == 202, response.text
    assert response.json()["state"] == "resume_requested"

    wait_for_state(api, email, "warming")
    assert vendor_changes(control, campaign_id) == ["start-warmup", "resume-warmup"]
    again = api.post(f"/mailboxes/{email}/resume")
    assert (again.status_code, again.json()["code"]) == (409, "ALREADY_WARMING")
