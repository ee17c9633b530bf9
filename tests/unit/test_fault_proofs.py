"""The fault-proof table (tests/fault_proofs.py) stays in step with the code: every fault the
local stack can inject has a mutation, every mutation applies to the current tree, and every
test it names exists. Running the mutations themselves is `make fault-proofs`."""

from __future__ import annotations

import ast
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

from tests.fault_proofs import (
    MUTATIONS,
    PATHS,
    ROOT,
    Mutation,
    MutationNotApplied,
    Result,
    apply,
    fault_points,
    first_failure,
    markdown_table,
)


def test_every_fault_point_the_local_stack_offers_has_a_mutation() -> None:
    covered = {fault for mutation in MUTATIONS for fault in mutation.faults}

    assert sorted(fault_points() - covered) == []
    assert sorted(covered - fault_points()) == []  # no stale or misspelt fault point


def test_mutation_names_are_unique_and_each_changes_something() -> None:
    names = Counter(mutation.name for mutation in MUTATIONS)

    assert [name for name, n in names.items() if n > 1] == []
    assert [m.name for m in MUTATIONS if m.old == m.new or not m.tests or not m.why] == []
    assert {m.file for m in MUTATIONS} <= set(PATHS)


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.name)
def test_old_text_occurs_exactly_once_in_its_file(mutation: Mutation) -> None:
    text = (ROOT / mutation.path).read_text()

    assert text.count(mutation.old) == 1, f"{mutation.name}: {mutation.path}"


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.name)
def test_named_tests_exist(mutation: Mutation) -> None:
    for test in mutation.tests:
        module, _, name = test.partition("::")
        tree = ast.parse((ROOT / module).read_text())
        defined = {node.name for node in ast.walk(tree) if isinstance(node, ast.FunctionDef)}
        assert not name or name in defined, test


@pytest.mark.parametrize("mutation", MUTATIONS, ids=lambda m: m.name)
def test_mutated_file_still_parses(mutation: Mutation) -> None:
    """A mutation must be killed by a test's assertion, not by a syntax error."""
    mutated = (ROOT / mutation.path).read_text().replace(mutation.old, mutation.new)

    ast.parse(mutated)


def test_mutated_files_name_nothing_undefined(tmp_path: Path) -> None:
    """A name the mutated module does not define fails only when the line runs (an except
    clause: when the fault happens), and then as a NameError that may fail the item just as the
    right code does: the mutation would prove nothing. One ruff run over every mutated file."""
    for mutation in MUTATIONS:
        mutated = (ROOT / mutation.path).read_text().replace(mutation.old, mutation.new)
        (tmp_path / f"{mutation.name}.py").write_text(mutated)

    found = subprocess.run(  # noqa: S603 (a fixed command on files this test wrote)
        [
            sys.executable,
            "-m",
            "ruff",
            "check",
            "--isolated",
            "--no-cache",
            "--select",
            "F821",
            "--output-format",
            "concise",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        check=False,
    )

    assert found.returncode == 0, found.stdout


def test_apply_refuses_text_that_is_not_there_exactly_once(tmp_path: Path) -> None:
    mutation = MUTATIONS[0]
    target = tmp_path / mutation.path
    target.parent.mkdir(parents=True)
    target.write_text("nothing to see")

    with pytest.raises(MutationNotApplied, match=f"{mutation.name}.*0 times"):
        apply(mutation, tmp_path)
    target.write_text(mutation.old * 2)
    with pytest.raises(MutationNotApplied, match="2 times"):
        apply(mutation, tmp_path)
    target.write_text(f"before\n{mutation.old}\nafter")
    apply(mutation, tmp_path)
    assert target.read_text() == f"before\n{mutation.new}\nafter"


def test_first_failure_names_the_first_failed_test() -> None:
    output = (
        "ERROR    warmgate:app.py:115 unexpected error\n"  # a captured log line
        "FAILED tests/a.py::test_x[a b] - assert 1 == 2\nERROR tests/b.py::test_y\n"
    )

    assert first_failure(output) == "tests/a.py::test_x[a b]"
    assert first_failure("ERROR tests/b.py::test_y\n") == "tests/b.py::test_y"
    assert first_failure("1 passed") == "(no test id in pytest's output)"


def test_markdown_table_has_a_row_per_result_naming_the_failed_test_or_the_survivor() -> None:
    killed, survived = MUTATIONS[:2]
    table = markdown_table(
        [
            Result(killed, "killed", "tests/a.py::test_x[p]", 1.0),
            Result(survived, "SURVIVED", "tests/a.py passed", 1.0),
        ]
    ).splitlines()

    assert len(table) == 4
    assert f"`{killed.name}`" in table[2]
    assert table[2].endswith("| killed: `test_x[p]` |")
    assert table[3].endswith("| **SURVIVED** |")
