"""`python -m warmgate_client …` is `warmgate-client …`."""

from warmgate_client.cli import run

run()
