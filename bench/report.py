"""Tables and statistics for the benchmarks: pure functions, no I/O except `write_json`.

Every benchmark returns a `Table`; a `Row` holds one figure, the baseline it is compared with
(measured in the same run), their ratio and, where the issue sets one, the goal. The ratio is
given by the benchmark because its direction depends on the figure (a speed-up is
baseline / value, an overhead value / baseline).
"""

from __future__ import annotations

import json
import math
import os
import platform
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

COLUMNS = ("metric", "value", "baseline", "ratio", "goal", "status")


# --------------------------------------------------------------------------- statistics


def percentile(values: Sequence[float], q: float) -> float:
    """The q-th percentile (0-100), linear between closest ranks (numpy's default method)."""
    if not values:
        raise ValueError("percentile of no values")
    if not 0 <= q <= 100:
        raise ValueError(f"q must be within 0..100, got {q}")
    ordered = sorted(values)
    position = (len(ordered) - 1) * q / 100
    below = math.floor(position)
    above = min(below + 1, len(ordered) - 1)
    fraction = position - below
    return ordered[below] + (ordered[above] - ordered[below]) * fraction


def median(values: Sequence[float]) -> float:
    if not values:
        raise ValueError("median of no values")
    return float(statistics.median(values))


def ratio(numerator: float | None, denominator: float | None) -> float | None:
    """numerator / denominator, or None when either is missing or the denominator is 0."""
    if numerator is None or denominator is None or denominator == 0:
        return None
    return numerator / denominator


# --------------------------------------------------------------------------- formatting


def format_number(value: float) -> str:
    """Three significant figures at most, no exponent for the ranges benchmarks produce."""
    if float(value).is_integer():
        return f"{value:.0f}"  # counts: 200, not 200.0
    magnitude = abs(value)
    if magnitude >= 100:
        return f"{value:.0f}"
    if magnitude >= 10:
        return f"{value:.1f}"
    if magnitude >= 1:
        return f"{value:.2f}"
    return f"{value:.3g}"


def format_quantity(value: float | None, unit: str) -> str:
    if value is None:
        return "-"
    if unit == "%":
        return f"{value * 100:.1f} %"
    text = format_number(value)
    return f"{text} {unit}" if unit else text


def format_ratio(value: float | None) -> str:
    return "-" if value is None else f"{format_number(value)}×"  # noqa: RUF001 - the symbol


@dataclass(frozen=True)
class Goal:
    """`value <= target` or `value >= target`, on the row's value or on its ratio."""

    op: Literal["<=", ">="]
    target: float
    unit: str = ""
    on: Literal["value", "ratio"] = "value"

    def met(self, row: Row) -> bool | None:
        actual = row.value if self.on == "value" else row.ratio
        if actual is None:
            return None
        return actual <= self.target if self.op == "<=" else actual >= self.target

    def __str__(self) -> str:
        sign = "≤" if self.op == "<=" else "≥"
        if self.on == "ratio":
            return f"ratio {sign} {format_ratio(self.target)}"
        return f"{sign} {format_quantity(self.target, self.unit)}"


@dataclass(frozen=True)
class Row:
    metric: str
    value: float | None
    unit: str = ""
    baseline: float | None = None
    baseline_unit: str | None = None  # None: same unit as the value
    ratio: float | None = None
    goal: Goal | None = None
    # Replaces the computed status, e.g. "missed: by design" when a goal cannot be met.
    status_note: str | None = None

    @property
    def status(self) -> str:
        if self.goal is None:
            return self.status_note or ""
        met = self.goal.met(self)
        verdict = "no data" if met is None else "goal met" if met else "goal missed"
        return f"{verdict} ({self.status_note})" if self.status_note else verdict

    def cells(self) -> tuple[str, ...]:
        baseline_unit = self.unit if self.baseline_unit is None else self.baseline_unit
        return (
            self.metric,
            format_quantity(self.value, self.unit),
            format_quantity(self.baseline, baseline_unit),
            format_ratio(self.ratio),
            "" if self.goal is None else str(self.goal),
            self.status,
        )

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["goal"] = None if self.goal is None else str(self.goal)
        data["status"] = self.status
        return data


@dataclass
class Table:
    name: str
    title: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # printed under the table: what was measured
    details: list[str] = field(default_factory=list)  # preformatted lines printed after the notes
    extra: dict[str, Any] = field(default_factory=dict)  # JSON only: raw samples, parameters

    def add(self, row: Row) -> Row:
        self.rows.append(row)
        return row

    def render(self) -> str:
        header = tuple(c for c in COLUMNS)
        cells = [header, *(row.cells() for row in self.rows)]
        widths = [max(len(line[i]) for line in cells) for i in range(len(COLUMNS))]

        def line(values: Sequence[str]) -> str:
            return "| " + " | ".join(v.ljust(w) for v, w in zip(values, widths, strict=True)) + " |"

        out = [f"## {self.title}", "", line(header)]
        out.append("|" + "|".join("-" * (w + 2) for w in widths) + "|")
        out += [line(row) for row in cells[1:]]
        if self.notes:
            out.append("")
            out += [f"- {note}" for note in self.notes]
        if self.details:
            out += ["", "```", *self.details, "```"]
        return "\n".join(out)

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "rows": [row.to_json() for row in self.rows],
            "notes": self.notes,
            "details": self.details,
            "extra": self.extra,
        }


# --------------------------------------------------------------------------- run metadata


def cpu_model(cpuinfo: str) -> str:
    """The first `model name` (x86) or `Model`/`Hardware` (arm) line of /proc/cpuinfo."""
    for key in ("model name", "Model", "Hardware"):
        for line in cpuinfo.splitlines():
            name, sep, value = line.partition(":")
            if sep and name.strip() == key and value.strip():
                return value.strip()
    return platform.processor() or platform.machine()


def machine() -> dict[str, Any]:
    try:
        cpuinfo = Path("/proc/cpuinfo").read_text()
    except OSError:
        cpuinfo = ""
    return {
        "cpu": cpu_model(cpuinfo),
        "cores": os.cpu_count(),
        "arch": platform.machine(),
        "python": platform.python_version(),
        "implementation": platform.python_implementation(),
        "os": platform.platform(),
    }


def run_header(started: datetime, info: dict[str, Any], quick: bool) -> str:
    mode = "quick" if quick else "full"
    return (
        f"warmgate benchmarks ({mode}) - {started:%Y-%m-%d %H:%M:%S} UTC - "
        f"{info['cpu']}, {info['cores']} cores, {info['arch']}, Python {info['python']}"
    )


def write_json(path: Path, started: datetime, quick: bool, tables: Iterable[Table]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    document = {
        "started_at": started.astimezone(UTC).isoformat(),
        "quick": quick,
        "machine": machine(),
        "tables": [table.to_json() for table in tables],
    }
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
