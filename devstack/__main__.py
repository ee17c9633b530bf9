"""`python -m devstack`: runs the Mailivery sandbox until Ctrl-C.

A placeholder entry: the full local stack replaces it.
"""

from devstack.sandbox import main

if __name__ == "__main__":
    raise SystemExit(main())
