"""Every relative link of the README and the docs resolves in a fresh checkout: the target exists
inside the repository, and an anchor names a heading of the target."""

from __future__ import annotations

import re
from functools import cache
from pathlib import Path
from urllib.parse import unquote, urlsplit

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCUMENTS = sorted(
    [ROOT / "README.md", ROOT / "clients" / "python" / "README.md", *(ROOT / "docs").glob("*.md")]
)

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_CODE_SPAN = re.compile(r"(`+).+?\1", re.DOTALL)
_INLINE_LINK = re.compile(r"!?\[[^\]]*\]\(\s*<?([^)\s>]+)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
_REFERENCE_DEFINITION = re.compile(r"^ {0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s.*)?$")
_HEADING = re.compile(r"^#{1,6}\s+(.+?)\s*#*\s*$", re.MULTILINE)


def prose(markdown: str) -> str:
    """The text outside fenced code blocks and code spans: links there are not links."""
    return _CODE_SPAN.sub("code", _FENCE.sub("", markdown))


def links(markdown: str) -> list[str]:
    text = prose(markdown)
    found = _INLINE_LINK.findall(text)
    # A reference definition cannot interrupt a paragraph: it follows a blank line or another one.
    after_break = True
    for line in text.splitlines():
        definition = _REFERENCE_DEFINITION.match(line)
        if definition and after_break:
            found.append(definition.group(1))
        after_break = not line.strip() or (definition is not None and after_break)
    return found


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lower case, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"`|\*\*?|__?|\[([^\]]*)\]\([^)]*\)", r"\1", heading).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


@cache
def anchors(path: Path) -> frozenset[str]:
    seen: dict[str, int] = {}
    found = set()
    for heading in _HEADING.findall(_FENCE.sub("", path.read_text())):
        base = slug(heading)
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return frozenset(found)


def relative_links() -> list[tuple[Path, str]]:
    return [
        (document, link)
        for document in DOCUMENTS
        for link in links(document.read_text())
        if not urlsplit(link).scheme and not link.startswith("//")
    ]


def test_documents_have_relative_links_to_check() -> None:
    # The README links the docs and the OpenAPI document: an empty list means a broken reader.
    found = {(d.name, link) for d, link in relative_links()}

    assert ("README.md", "docs/architecture.md") in found
    assert ("README.md", "openapi.yaml") in found


@pytest.mark.parametrize(
    ("document", "link"),
    relative_links(),
    ids=lambda value: value.name if isinstance(value, Path) else value,
)
def test_relative_link_resolves_in_the_checkout(document: Path, link: str) -> None:
    parts = urlsplit(link)
    target = (document.parent / unquote(parts.path)).resolve() if parts.path else document

    assert target.is_relative_to(ROOT), f"{link} points outside the repository"
    assert target.exists(), f"{link}: {target.relative_to(ROOT)} does not exist"
    if parts.fragment:
        assert target.suffix == ".md", f"{link}: anchors are checked in markdown files only"
        assert parts.fragment in anchors(target), f"{link}: no such heading"


@pytest.mark.parametrize(
    ("markdown", "expected"),
    [
        ("[a](docs/x.md) and ![img](i.png 'title')", ["docs/x.md", "i.png"]),
        ("`[not](a-link.md)`\n```\n[nor](this.md)\n```\n[yes](y.md#part)", ["y.md#part"]),
        ("[ref]: ../outside.md\n", ["../outside.md"]),
        ("text\n[doc]: not a definition inside a paragraph\n", []),
    ],
)
def test_links_are_read_outside_code_only(markdown: str, expected: list[str]) -> None:
    assert links(markdown) == expected


@pytest.mark.parametrize(
    ("heading", "anchor"),
    [
        ("4. Mailbox state machine", "4-mailbox-state-machine"),
        ("5. Where each guess is configured", "5-where-each-guess-is-configured"),
        ("The `VendorContract` (beta!)", "the-vendorcontract-beta"),
    ],
)
def test_slug_is_githubs_anchor(heading: str, anchor: str) -> None:
    assert slug(heading) == anchor


def test_every_test_the_guarantees_name_exists() -> None:
    """README "What warmgate guarantees" names the test proving each promise: a renamed or
    deleted test must not leave a promise without its proof."""
    readme = (ROOT / "README.md").read_text()
    section = readme.split("\n## What warmgate guarantees\n", 1)[1].split("\n## ", 1)[0]
    named = set(re.findall(r"`(test_\w+)`", section))
    defined = {
        name
        for path in (ROOT / "tests").rglob("test_*.py")
        for name in re.findall(r"^def (test_\w+)", path.read_text(), re.MULTILINE)
    }

    assert len(named) >= 10  # each promise names its proofs
    assert named - defined == set()
