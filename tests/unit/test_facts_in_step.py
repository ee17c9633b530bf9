"""Facts written in two places because each place needs it (the template for AWS, the code for
its own decisions): a test keeps every pair equal."""

from __future__ import annotations

import ast
from pathlib import Path

from devstack.template import load_template

ROOT = Path(__file__).resolve().parents[2]


def module_constant(path: Path, name: str) -> object:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Assign) and any(
            isinstance(target, ast.Name) and target.id == name for target in node.targets
        ):
            return ast.literal_eval(node.value)
    raise AssertionError(f"{path} defines no {name}")


def test_worker_counts_the_dlq_bound_receive_as_the_template_redrives_it() -> None:
    redrive = load_template()["Resources"]["WorkQueue"]["Properties"]["RedrivePolicy"]

    assert module_constant(
        ROOT / "layers/common/warmgate/api/worker_batch.py", "MAX_RECEIVES"
    ) == int(redrive["maxReceiveCount"])


def test_event_type_strings_are_written_only_in_the_event_type_enum() -> None:
    home = ROOT / "layers/common/warmgate/domain/webhooks.py"
    product = [*(ROOT / "functions").rglob("*.py"), *(ROOT / "layers").rglob("*.py")]
    literals = {
        f"{path.relative_to(ROOT)}:{node.lineno}"
        for path in product
        if path != home
        for node in ast.walk(ast.parse(path.read_text()))
        if isinstance(node, ast.Constant)
        and isinstance(node.value, str)
        and node.value.startswith(("campaign.", "warmgate.resume"))
    }
    assert literals == set()
