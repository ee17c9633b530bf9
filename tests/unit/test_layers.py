"""The package's layers hold: each module imports only what its layer may (docs/architecture.md),
and the README's layout and the architecture doc name every package there is."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "layers" / "common" / "warmgate"

THIRD_PARTY_IO = ("boto3", "botocore", "httpx", "aws_lambda_powertools", "mypy_boto3")
# What each layer must never import (prefixes of module names).
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "domain": (
        "warmgate.adapters",
        "warmgate.services",
        "warmgate.api",
        "warmgate.wiring",
        "warmgate.settings",
        "warmgate.observability",
        *THIRD_PARTY_IO,
    ),
    "adapters": ("warmgate.services", "warmgate.api", "warmgate.wiring", "warmgate.settings"),
    "services": (
        "warmgate.api",
        "warmgate.wiring",
        "warmgate.settings",
        "boto3",
        # The services take the ports (warmgate.services.ports), never the adapters that
        # implement them: wiring passes those in.
        "warmgate.adapters.dynamodb.MailboxRepository",
        "warmgate.adapters.mailivery.MailiveryClient",
        "warmgate.adapters.mailivery.client",
        "warmgate.adapters.sqs.WorkQueue",
        "warmgate.adapters.budget.RateBudget",
    ),
    "api": ("warmgate.wiring", "warmgate.settings"),
}


def imported_modules(source: str) -> set[str]:
    """Every module a source imports, at any depth (TYPE_CHECKING blocks and lazy imports too)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            names.add(node.module)
            names.update(f"{node.module}.{alias.name}" for alias in node.names)
    return names


def breaches(layer: str, source: str) -> set[str]:
    return {
        name
        for name in imported_modules(source)
        if any(name == banned or name.startswith(banned + ".") for banned in FORBIDDEN[layer])
    }


@pytest.mark.parametrize("layer", sorted(FORBIDDEN))
def test_each_layer_imports_only_what_it_may(layer: str) -> None:
    modules = sorted((PACKAGE / layer).rglob("*.py"))
    assert modules, f"warmgate/{layer}/ holds no module"
    found = {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in modules
        for name in breaches(layer, path.read_text())
    }
    assert found == set()


def test_a_breach_is_seen_at_any_depth() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from warmgate.adapters.dynamodb import MailboxRepository\n"
        "def lazy():\n    import httpx\n"
        "from warmgate.domain.emails import normalize_email\n"
    )
    assert breaches("domain", source) == {
        "warmgate.adapters.dynamodb",
        "warmgate.adapters.dynamodb.MailboxRepository",
        "httpx",
    }
    assert breaches("services", source) == {"warmgate.adapters.dynamodb.MailboxRepository"}


def test_the_layer_has_no_command_line() -> None:
    """The operator CLI is its own package (ops/, warmgate_ops) on top of the layer: nothing
    in the layer parses a command line or imports the CLI, so no function ships it."""
    found = {
        f"{path.relative_to(PACKAGE)} imports {name}"
        for path in sorted(PACKAGE.rglob("*.py"))
        for name in imported_modules(path.read_text())
        if name.split(".")[0] in ("argparse", "warmgate_ops")
    }
    assert found == set()


def packages() -> set[str]:
    return {path.parent.name for path in PACKAGE.glob("*/__init__.py")}


def test_the_package_is_split_by_layer() -> None:
    assert packages() == {"domain", "services", "adapters", "api"}


@pytest.mark.parametrize("document", ["README.md", "docs/architecture.md"])
def test_the_docs_name_every_package(document: str) -> None:
    text = (ROOT / document).read_text()
    named = set(re.findall(r"(?:warmgate\.|^  )(domain|services|adapters|api)\b/?", text, re.M))
    assert named >= packages(), f"{document} does not describe {packages() - named}"
    assert "wiring" in text
