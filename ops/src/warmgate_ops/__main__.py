"""`python -m warmgate_ops`: the same as the `warmgate-ops` command."""

from warmgate_ops.cli import run

run()
