"""Handlers stay thin: each functions/*/app.py wires settings to a service and an edge in
warmgate.api. (Function and module sizes everywhere: test_code_shape.py.)"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
HANDLERS = sorted((ROOT / "functions").glob("*/app.py"))
MAX_HANDLER_LINES = 40


def docstring_lines(tree: ast.Module) -> set[int]:
    lines: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Module | ast.ClassDef | ast.FunctionDef | ast.AsyncFunctionDef):
            first = node.body[0] if node.body else None
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant):
                lines.update(range(first.lineno, (first.end_lineno or first.lineno) + 1))
    return lines


def code_lines(source: str) -> int:
    """Lines that are neither blank, a comment nor a docstring."""
    docstrings = docstring_lines(ast.parse(source))
    return sum(
        1
        for number, line in enumerate(source.splitlines(), start=1)
        if line.strip() and not line.lstrip().startswith("#") and number not in docstrings
    )


def test_code_lines_leave_out_docstrings_comments_and_blanks() -> None:
    source = '"""Doc\n\nmore."""\n\n# why\nx = 1\n\n\ndef f() -> None:\n    """Doc."""\n    y = 2\n'
    assert code_lines(source) == 3


def test_every_function_has_a_handler() -> None:
    assert [path.parent.name for path in HANDLERS] == [
        "events",
        "onboarding",
        "reconciler",
        "webhook",
        "worker",
    ]


@pytest.mark.parametrize("handler", HANDLERS, ids=lambda path: path.parent.name)
def test_handler_module_is_at_most_40_lines_of_code(handler: Path) -> None:
    assert code_lines(handler.read_text()) <= MAX_HANDLER_LINES
