"""Output for people (aligned tables, ages) and for programs (JSON), on stdout."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence


def render_table(headers: Sequence[str], rows: Iterable[Iterable[object]]) -> str:
    cells = [["-" if v is None else str(v) for v in row] for row in rows]
    if not cells:
        return "(none)"
    widths = [max([len(h), *(len(row[n]) for row in cells)]) for n, h in enumerate(headers)]
    lines = [headers, ["-" * w for w in widths], *cells]
    return "\n".join(
        "  ".join(c.ljust(w) for c, w in zip(line, widths, strict=True)).rstrip() for line in lines
    )


def print_json(document: object) -> None:
    print(json.dumps(document, indent=2))


def age(seconds: int | None) -> str:
    """`95` → `95s`, `7200` → `2h`: the largest unit of which there are at least two."""
    if seconds is None:
        return "-"
    for unit, size in (("d", 86_400), ("h", 3_600), ("m", 60)):
        if seconds >= 2 * size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"
