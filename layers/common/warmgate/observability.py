"""Observability singletons: one Logger and one Metrics per process.

The template's Globals set POWERTOOLS_SERVICE_NAME and POWERTOOLS_METRICS_NAMESPACE; the
defaults below only keep tests and local runs working without them.
"""

from __future__ import annotations

import os

from aws_lambda_powertools import Logger, Metrics

SERVICE = os.environ.get("POWERTOOLS_SERVICE_NAME", "warmgate")

logger = Logger(service=SERVICE)
metrics = Metrics(
    namespace=os.environ.get("POWERTOOLS_METRICS_NAMESPACE", "warmgate"), service=SERVICE
)
