"""The house plan's size limits, read from the source with `ast`: no function over 60 lines in
the product (layers/, functions/) or the tooling (bench/, devstack/), no module over 400 lines
outside tests/ (the soak's modules, tooling that lives in tests/e2e/, count too). No exception.
"""

from __future__ import annotations

import ast
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Final

ROOT: Final = Path(__file__).resolve().parents[2]
MAX_FUNCTION_LINES: Final = 60
MAX_MODULE_LINES: Final = 400
FUNCTION_ROOTS: Final = ("bench", "devstack", "layers", "functions")
MODULE_ROOTS: Final = ("bench", "devstack", "layers", "functions", "clients")
TOOLING_IN_TESTS: Final = "tests/e2e/soak*.py"


def python_files(*roots: str) -> Iterator[Path]:
    for root in roots:
        for path in sorted((ROOT / root).rglob("*.py")):
            if not any(part.startswith(".") for part in path.relative_to(ROOT).parts):
                yield path


def relative(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def long_functions(source: str, shown: str) -> Iterator[tuple[str, int]]:
    """(shown:qualified name, lines) of every function or method over the limit."""

    def walk(node: ast.AST, prefix: str) -> Iterator[tuple[str, int]]:
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef):
                name = f"{prefix}{child.name}"
                if not isinstance(child, ast.ClassDef):
                    lines = (child.end_lineno or child.lineno) - child.lineno + 1
                    if lines > MAX_FUNCTION_LINES:
                        yield f"{shown}:{name}", lines
                yield from walk(child, f"{name}.")

    yield from walk(ast.parse(source, shown), "")


@cache
def offenders() -> dict[str, int]:
    found = {
        name: lines
        for path in python_files(*FUNCTION_ROOTS)
        for name, lines in long_functions(path.read_text(), relative(path))
    }
    modules = [*python_files(*MODULE_ROOTS), *sorted(ROOT.glob(TOOLING_IN_TESTS))]
    for path in modules:
        lines = len(path.read_text().splitlines())
        if lines > MAX_MODULE_LINES:
            found[relative(path)] = lines
    return found


def test_long_functions_are_found() -> None:
    # The check itself: a 61-line function is reported with its class, a 60-line one is not.
    body = "\n".join(f"    x{i} = {i}" for i in range(59))
    source = f"class Box:\n  def big(self):\n{body}\n    return 1\n\ndef fits():\n{body}\n"
    assert list(long_functions(source, "probe.py")) == [("probe.py:Box.big", 61)]


def test_no_function_or_module_over_the_limits() -> None:
    assert offenders() == {}, (
        f"functions over {MAX_FUNCTION_LINES} lines or modules over {MAX_MODULE_LINES} "
        f"lines: {offenders()}"
    )


def test_the_soak_modules_are_counted() -> None:
    # The glob must keep finding the soak's modules, or their size would go unchecked.
    found = {path.name for path in ROOT.glob(TOOLING_IN_TESTS)}
    assert {"soak.py", "soak_run.py", "soak_ledgers.py"} <= found
