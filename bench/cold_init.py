"""Cold init: how long importing each handler takes in a fresh process, from the built artifact.

What Lambda calls the Init phase is mostly this import: the handler module, the layer's
packages, boto3, and the module-level clients and settings. Each sample is a new interpreter
(`python -S`, an environment holding only what the handler needs, PYTHONDONTWRITEBYTECODE=1 so
no run leaves a .pyc for the next), timed around `import app` inside the child.

Three variants, copied once per run into a temporary directory, measured in turn (pyc,
no-pyc, before, pyc, ...) so machine drift hits them alike:
  pyc     the artifact as `make build` leaves it: every module with a checked-hash .pyc;
  no-pyc  the same files with every __pycache__ removed: what `sam build` alone ships, so
          every import compiles its module first (Lambda's file system is read-only, so
          nothing compiled is ever kept);
  before  the pyc variant with the warmgate package and the handlers of a baseline commit
          (`--baseline-ref`, default: where this branch left main), compiled the same way: the
          same dependencies, the code before this branch's changes.
boto3/botocore are not in the artifact (the Lambda runtime provides them, precompiled): every
variant takes them, with their .pyc, from this interpreter's site-packages, after the layer on
sys.path as in Lambda (/var/task, /opt/python, /var/runtime).

The artifact is built for the template's architecture (arm64). Where this host differs, the
copies get this interpreter's build of each native extension of the *same* distribution version
(checked against the dist-info); only the pure-Python files, whose .pyc are the subject here,
come from the artifact unchanged.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from bench.artifact_copies import (
    BUILD_DIR,
    FUNCTIONS,
    LAYER,
    ArtifactError,
    Variant,
    artifact_copies,
    baseline_commit,
    shown,
)
from bench.report import Goal, Row, Table, median, percentile, ratio

GOALS_MS: Final = {"webhook": 250.0, "worker": 400.0}
# Default build (no .pyc) / ours, per function (the goals; 2x for the others).
SPEEDUP_GOALS: Final = {"webhook": 2.5, "worker": 2.2}
SPEEDUP_GOAL: Final = 2.0
# What the functions import from the runtime's precompiled packages (neither variant's .pyc
# acts on it): botocore's session, since they make their clients from botocore directly.
RUNTIME_IMPORT: Final = "botocore.session"
# Dummy local values: the handlers validate these at import and create clients, but make no
# network call before the first invocation.
HANDLER_ENV: Final = {
    "AWS_DEFAULT_REGION": "eu-west-1",
    "AWS_REGION": "eu-west-1",
    "AWS_ACCESS_KEY_ID": "bench",
    "AWS_SECRET_ACCESS_KEY": "bench",
    "AWS_EC2_METADATA_DISABLED": "true",
    "WARMGATE_STAGE": "local",
    "POWERTOOLS_SERVICE_NAME": "warmgate",
    "POWERTOOLS_METRICS_NAMESPACE": "warmgate",
    "POWERTOOLS_LOG_LEVEL": "INFO",
    "MAILIVERY_BASE_URL": "http://127.0.0.1:9/api/v1",
    "MAILIVERY_API_KEY": "x",
    "MAILBOX_TABLE_NAME": "warmgate-bench",
    "WORK_QUEUE_URL": "http://127.0.0.1:9/123456789012/warmgate-bench",
    "WEBHOOK_TOKEN_SECRET": "warmgate/bench/webhook-token",
}
# Run in the child: the import, timed with the child's own clock.
TIMED_IMPORT: Final = (
    "import time\n"
    "started = time.perf_counter_ns()\n"
    "import {module}\n"
    "print((time.perf_counter_ns() - started) / 1e6)\n"
)


@dataclass(frozen=True)
class ImportRecord:
    name: str
    self_us: int
    cumulative_us: int
    depth: int


# --------------------------------------------------------------------------- the children


def child_env(variant: Variant, name: str, runtime: Path) -> dict[str, str]:
    path = os.pathsep.join(str(p) for p in (variant.functions[name], variant.layer, runtime))
    return {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONPATH": path,
        "PYTHONDONTWRITEBYTECODE": "1",
        "LANG": "C.UTF-8",
        **HANDLER_ENV,
    }


def child(
    variant: Variant, name: str, runtime: Path, *args: str
) -> subprocess.CompletedProcess[str]:
    """`python -S <args>` in the function's directory with only what its Init would see; a
    failure names the variant, the function and the child's stderr."""
    result = subprocess.run(
        [sys.executable, "-S", *args],
        env=child_env(variant, name, runtime),
        cwd=variant.functions[name],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ArtifactError(
            f"{variant.name} {name}: python -S {' '.join(args[:-1])} failed:\n"
            f"{result.stderr[-2000:]}"
        )
    return result


def timed_import_ms(variant: Variant, name: str, runtime: Path, module: str = "app") -> float:
    result = child(variant, name, runtime, "-c", TIMED_IMPORT.format(module=module))
    return float(result.stdout.strip().splitlines()[-1])


def parse_importtime(stderr: str) -> list[ImportRecord]:
    """`-X importtime` lines: `import time:  self | cumulative | <indent>name`."""
    records = []
    for line in stderr.splitlines():
        if not line.startswith("import time:"):
            continue
        fields = line[len("import time:") :].split("|")
        if len(fields) != 3 or not fields[0].strip().isdigit():
            continue  # the header line
        label = fields[2].rstrip()
        name = label.lstrip()
        depth = (len(label) - len(name) - 1) // 2  # one space after '|', two per level
        records.append(ImportRecord(name, int(fields[0]), int(fields[1]), depth))
    return records


def top_imports(records: Sequence[ImportRecord], count: int = 10) -> list[ImportRecord]:
    """The heaviest imports by cumulative time, the handler module itself left out (its
    cumulative time is the whole Init)."""
    return sorted(
        (r for r in records if r.name != "app"), key=lambda r: r.cumulative_us, reverse=True
    )[:count]


def importtime(variant: Variant, name: str, runtime: Path) -> list[ImportRecord]:
    return parse_importtime(
        child(variant, name, runtime, "-X", "importtime", "-c", "import app").stderr
    )


# --------------------------------------------------------------------------- the benchmark


@dataclass
class Measured:
    """What one run measured: per function and variant the Init samples (ms), the runtime's
    own import (the floor no .pyc acts on), and one `-X importtime` per (variant, function)."""

    samples: dict[str, dict[str, list[float]]]
    runtime_floor: list[float]
    importtimes: dict[tuple[str, str], list[ImportRecord]]
    swapped: list[str]


def run(*, quick: bool, build_dir: Path = BUILD_DIR, baseline_ref: str | None = None) -> Table:
    names = ["webhook", "worker"] if quick else list(FUNCTIONS)
    rounds = 3 if quick else 15
    table = Table(
        "cold_init",
        f"Cold init per function (import of the handler in a fresh process, median of {rounds})",
    )
    # --quick leaves the before variant out: the full run measures it.
    baseline = None if quick else baseline_commit(baseline_ref)
    measured = measure(build_dir, names, baseline, rounds)
    floor = median(measured.runtime_floor)
    for name in names:
        for row in function_rows(name, measured.samples[name], floor, baseline):
            table.add(row)
    table.notes += run_notes(floor, baseline)
    table.notes += spread_notes(names, measured.samples)
    built = datetime.fromtimestamp((build_dir / LAYER).stat().st_mtime, UTC)
    table.notes.append(
        f"artifact: {shown(build_dir)} as built {built:%Y-%m-%d %H:%M} UTC "
        "(`make build` refreshes it)"
    )
    if measured.swapped:
        table.notes.append(
            "native extensions replaced by this host's build of the same version: "
            + "; ".join(measured.swapped)
        )
    table.details += importtime_details(measured.importtimes)
    table.extra = {
        "rounds": rounds,
        "baseline_commit": baseline,
        "samples_ms": measured.samples,
        f"import_{RUNTIME_IMPORT}_ms": measured.runtime_floor,
        "swapped_extensions": measured.swapped,
        "importtime": {
            f"{name} {variant_name}": [vars(r) for r in top_imports(records, 25)]
            for (variant_name, name), records in measured.importtimes.items()
        },
    }
    return table


def measure(build_dir: Path, names: Sequence[str], baseline: str | None, rounds: int) -> Measured:
    samples: dict[str, dict[str, list[float]]] = {
        n: {"pyc": [], "no-pyc": [], "before": []} for n in names
    }
    # The part no variant changes: botocore comes precompiled from the runtime in each.
    runtime_floor: list[float] = []
    with artifact_copies(build_dir, names, baseline) as (variants, runtime, swapped):
        pyc = variants[0]
        for variant in variants:  # warm the page cache once, not measured
            timed_import_ms(variant, names[0], runtime)
        for _ in range(rounds):
            for name in names:
                for variant in variants:  # A B C A B C ...: drift hits every variant alike
                    samples[name][variant.name].append(timed_import_ms(variant, name, runtime))
            runtime_floor.append(timed_import_ms(pyc, names[0], runtime, module=RUNTIME_IMPORT))
        importtimes = {
            (variant.name, name): importtime(variant, name, runtime)
            for variant in variants
            if variant.name != "no-pyc"
            for name in names
        }
    return Measured(samples, runtime_floor, importtimes, swapped)


def function_rows(
    name: str, samples: Mapping[str, list[float]], floor: float, baseline: str | None
) -> list[Row]:
    with_pyc, without = median(samples["pyc"]), median(samples["no-pyc"])
    speedup = ratio(without, with_pyc)
    goal = GOALS_MS.get(name)
    rows = [
        Row(
            f"{name} Init, artifact (hash .pyc)",
            with_pyc,
            "ms",
            baseline=without,
            ratio=speedup,
            goal=None if goal is None else Goal("<=", goal, "ms"),
        ),
        Row(
            f"{name} Init saved by the .pyc",
            without - with_pyc,
            "ms",
            baseline=without,
            ratio=speedup,
            goal=Goal(">=", SPEEDUP_GOALS.get(name, SPEEDUP_GOAL), on="ratio"),
        ),
        Row(
            f"{name} Init without the runtime's `import {RUNTIME_IMPORT}`",
            with_pyc - floor,
            "ms",
            baseline=without - floor,
            ratio=ratio(without - floor, with_pyc - floor),
        ),
    ]
    if samples["before"]:
        before = median(samples["before"])
        rows.append(
            Row(
                f"{name} Init before this branch ({baseline[:7] if baseline else '?'})",
                before,
                "ms",
                baseline=with_pyc,
                ratio=ratio(before, with_pyc),
            )
        )
    return rows


def run_notes(floor: float, baseline: str | None) -> list[str]:
    return [
        "baseline = the same artifact with every __pycache__ removed (no-pyc), measured "
        "alternately with it in this run; ratio = no-pyc / pyc",
        "the goals are for Lambda arm64 at 512 MB; on a noisy or different machine the ms move "
        "with the machine, the ratio much less: the ratio is what this benchmark checks",
        "boto3/botocore come precompiled from the interpreter's site-packages in every variant "
        "(the Lambda runtime provides them, compiled): the .pyc cannot speed that part up. "
        f"A bare `import {RUNTIME_IMPORT}` (all the handlers take from the runtime) took "
        f"{floor:.0f} ms (median, same run); the third row of each function subtracts it from "
        "both variants, leaving what the artifact's .pyc act on",
        (
            f"before = the same artifact with warmgate and the handlers of {baseline[:12]} "
            "(where this branch left main), measured in turn with the others; ratio = before / "
            "pyc"
            if baseline
            else "before: not measured (--quick, or no baseline commit: not a git checkout, or "
            "no such ref)"
        ),
    ]


def spread_notes(
    names: Sequence[str], samples: Mapping[str, Mapping[str, list[float]]]
) -> list[str]:
    notes = []
    for name in names:
        spread = {
            v: (percentile(samples[name][v], 25), percentile(samples[name][v], 75))
            for v in ("pyc", "no-pyc")
        }
        notes.append(
            f"{name}: interquartile range pyc {spread['pyc'][0]:.0f}-{spread['pyc'][1]:.0f} ms, "
            f"no-pyc {spread['no-pyc'][0]:.0f}-{spread['no-pyc'][1]:.0f} ms"
        )
    return notes


def importtime_details(importtimes: Mapping[tuple[str, str], list[ImportRecord]]) -> list[str]:
    details = []
    for (variant_name, name), records in importtimes.items():
        root = next((r for r in records if r.name == "app"), None)
        details.append(f"{name}, {variant_name}: -X importtime, top 10 by cumulative (one run)")
        details.append(f"  {'cumulative':>10} {'self':>8}  module")
        for record in top_imports(records):
            details.append(
                f"  {record.cumulative_us / 1000:8.1f}ms {record.self_us / 1000:6.1f}ms  "
                f"{'  ' * record.depth}{record.name}"
            )
        if root is not None:
            details.append(
                f"  app itself: {root.cumulative_us / 1000:.1f} ms in all, "
                f"{root.self_us / 1000:.1f} ms in its own body (settings, clients at import)"
            )
    return details
