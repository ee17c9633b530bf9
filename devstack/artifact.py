"""The built artifact (`sam build` output) with hash-based .pyc, and the check that it has them.

Lambda's file system is read-only, so without .pyc in the artifact every cold start compiles
every module of every dependency again (measured for this project in bench/: about 2x Init).
`checked-hash` pyc stay valid whatever the files' timestamps (zip extraction resets them), and
the interpreter still verifies each against its source's hash.

    python -m devstack.artifact compile .aws-sam/build   # after `sam build`
    python -m devstack.artifact check .aws-sam/build     # fails if any .py lacks its .pyc
"""

from __future__ import annotations

import argparse
import compileall
import importlib.util
import py_compile
import sys
from pathlib import Path

BUILD_DIR = Path(".aws-sam/build")


def compile_tree(root: Path) -> bool:
    """Compile every .py under root for *this* interpreter (run it with the runtime's Python)."""
    return bool(
        compileall.compile_dir(
            root,
            quiet=1,
            workers=0,
            invalidation_mode=py_compile.PycInvalidationMode.CHECKED_HASH,
        )
    )


def missing_pyc(root: Path) -> list[Path]:
    """Sources without a .pyc for this interpreter's version next to them."""
    return [
        source
        for source in root.rglob("*.py")
        if not Path(importlib.util.cache_from_source(str(source))).exists()
    ]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m devstack.artifact", description=__doc__)
    parser.add_argument("command", choices=["compile", "check"])
    parser.add_argument("build_dir", nargs="?", type=Path, default=BUILD_DIR)
    args = parser.parse_args(argv)
    root: Path = args.build_dir
    if not root.is_dir():
        print(f"{root} does not exist: run `sam build` (make build) first", file=sys.stderr)
        return 2
    if args.command == "compile" and not compile_tree(root):
        print(f"compileall reported errors under {root}", file=sys.stderr)
        return 1
    sources = sum(1 for _ in root.rglob("*.py"))
    missing = missing_pyc(root)
    if missing:
        for source in missing[:20]:
            print(f"no .pyc for {source}", file=sys.stderr)
        print(f"{len(missing)} of {sources} modules have no .pyc", file=sys.stderr)
        return 1
    print(f"{sources} modules, each with a checked-hash .pyc ({sys.implementation.cache_tag})")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
