"""The local stack's two kinds of failure, shared by every devstack.stack module."""

from __future__ import annotations


class TemplateError(ValueError):
    """template.yaml holds something the local stack does not understand; names where."""


class StackError(RuntimeError):
    """The local stack cannot start or reach something (port taken, stack not running …)."""
