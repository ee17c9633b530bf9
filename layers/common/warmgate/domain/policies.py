"""The integrator's policy choices the decision table reads. On its own so that the settings
(which every function loads, the webhook too) do not pull in the decision table."""

from __future__ import annotations

from enum import StrEnum


class UnexpectedCampaignPolicy(StrEnum):
    """What to do with a campaign nobody asked for (architecture §4)."""

    LEAVE = "leave"  # leave it pending: it costs nothing and a human can look at it
    DELETE = "delete"
