"""How many examples a property test tries: every one in `make test`, a tenth in the unit tier.

The unit tier (`pytest tests/unit`, `make unit`) is the edit-and-run loop and stays within
seconds; `make test` sets WARMGATE_PROPERTIES=full and runs each property at its full count.
A test names its full count with `examples(n)`; one that names none takes the hypothesis
profile's (registered in tests/conftest.py: "unit" or "full").
"""

from __future__ import annotations

import os

FULL = os.environ.get("WARMGATE_PROPERTIES") == "full"
UNIT_SHARE = 10  # the unit tier tries one example in this many
UNIT_MINIMUM = 10  # and never fewer than this


def examples(full: int) -> int:
    """`full` under WARMGATE_PROPERTIES=full, else a tenth of it (at least UNIT_MINIMUM)."""
    return full if FULL else max(UNIT_MINIMUM, full // UNIT_SHARE)
