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

import importlib.machinery
import io
import os
import shutil
import subprocess
import sys
import sysconfig
import tarfile
import tempfile
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from bench.report import Goal, Row, Table, median, percentile, ratio
from devstack.artifact import compile_tree

ROOT: Final = Path(__file__).resolve().parents[1]
BUILD_DIR: Final = ROOT / ".aws-sam" / "build"
LAYER: Final = "CommonLayer"
FUNCTIONS: Final = {
    "webhook": "WebhookFunction",
    "worker": "WorkerFunction",
    "onboarding": "OnboardingFunction",
    "reconciler": "ReconcilerFunction",
}
GOALS_MS: Final = {"webhook": 250.0, "worker": 400.0}
# Default build (no .pyc) / ours, per function (the goals; 2x for the others).
SPEEDUP_GOALS: Final = {"webhook": 2.5, "worker": 2.2}
SPEEDUP_GOAL: Final = 2.0
BASELINE_BRANCH: Final = "main"
# What the functions import from the runtime's precompiled packages (neither variant's .pyc
# acts on it): botocore's session, since they make their clients from botocore directly.
RUNTIME_IMPORT: Final = "botocore.session"
# What the Lambda python3.12 runtime puts on sys.path besides our code: boto3 and its deps.
RUNTIME_PACKAGES: Final = ("boto3", "botocore", "s3transfer", "dateutil", "urllib3", "six.py")
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


class ArtifactError(RuntimeError):
    """The built artifact is missing or cannot run on this host; the message says what to do."""


@dataclass(frozen=True)
class Variant:
    name: str
    layer: Path
    functions: dict[str, Path]  # short name → function directory


@dataclass(frozen=True)
class ImportRecord:
    name: str
    self_us: int
    cumulative_us: int
    depth: int


# --------------------------------------------------------------------------- the copies


def site_packages() -> Path:
    return Path(sysconfig.get_paths()["purelib"])


def elf_machine(path: Path) -> bytes:
    """The ELF header's e_machine field (x86-64, AArch64, ...): what a shared object runs on.
    File suffixes cannot tell (`.abi3.so` and `.so` name no architecture)."""
    with path.open("rb") as binary:
        header = binary.read(20)
    return header[18:20] if header[:4] == b"\x7fELF" else b""


def foreign_extensions(layer: Path) -> list[Path]:
    """Native extensions in the layer that this interpreter cannot load (another machine)."""
    host = elf_machine(Path(sys.executable).resolve())
    return [so for so in layer.rglob("*.so") if elf_machine(so) != host]


def _owning_dist_info(layer: Path, relative: str) -> str | None:
    for record in layer.glob("*.dist-info/RECORD"):
        if any(line.split(",", 1)[0] == relative for line in record.read_text().splitlines()):
            return record.parent.name
    return None


def use_host_extensions(layer: Path, source: Path) -> list[str]:
    """Replace each foreign extension with this interpreter's build of the same version."""
    swapped = []
    for extension in foreign_extensions(layer):
        relative = extension.relative_to(layer).as_posix()
        dist_info = _owning_dist_info(layer, relative)
        if dist_info is None or not (source / dist_info).is_dir():
            raise ArtifactError(
                f"{relative} is built for another platform and {source} has no "
                f"{dist_info or 'matching distribution'} to take a host build from"
            )
        stem = extension.name.split(".", 1)[0]
        candidates = [
            source / Path(relative).parent / (stem + suffix)
            for suffix in importlib.machinery.EXTENSION_SUFFIXES
        ]
        host_build = next((c for c in candidates if c.is_file()), None)
        if host_build is None:
            raise ArtifactError(f"no host build of {relative} under {source}")
        extension.unlink()
        shutil.copy2(host_build, extension.parent / host_build.name)
        swapped.append(f"{relative} → {host_build.name} ({dist_info})")
    return swapped


def _link(source: str, destination: str) -> None:
    """Copy by hard link where the file system allows (the copies are only read, replaced or
    removed, never written through), else copy."""
    try:
        os.link(source, destination)
    except OSError:
        shutil.copy2(source, destination)


def remove_pycache(root: Path) -> int:
    caches = [p for p in root.rglob("__pycache__") if p.is_dir()]
    for cache in caches:
        shutil.rmtree(cache)
    return len(caches)


def baseline_commit(ref: str | None) -> str | None:
    """The commit the `before` variant is built from: `ref`, else where HEAD left main; None
    when git cannot tell (no repository, no such ref)."""
    if ref is None:
        command = ["git", "merge-base", "HEAD", BASELINE_BRANCH]
    else:
        command = ["git", "rev-parse", "--verify", f"{ref}^{{commit}}"]
    result = subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=False)
    commit = result.stdout.strip()
    return commit if result.returncode == 0 and commit else None


def code_at(commit: str, destination: Path) -> Path:
    """layers/common/warmgate and functions/ as they were at `commit`, under `destination`."""
    archive = subprocess.run(
        ["git", "archive", "--format=tar", commit, "layers/common/warmgate", "functions"],
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout
    with tarfile.open(fileobj=io.BytesIO(archive)) as tar:
        tar.extractall(destination, filter="data")
    return destination


def before_variant(pyc: Variant, base: Path, commit: str, names: Sequence[str]) -> Variant:
    """The pyc variant with the warmgate package and the handlers of `commit`."""
    old = code_at(commit, base / "source")
    layer = base / "layer"
    shutil.copytree(pyc.layer, layer, symlinks=True, copy_function=_link)
    shutil.rmtree(layer / "warmgate")
    shutil.copytree(old / "layers" / "common" / "warmgate", layer / "warmgate")
    compile_tree(layer / "warmgate")
    functions = {}
    for name in names:
        functions[name] = base / name
        shutil.copytree(pyc.functions[name], functions[name], symlinks=True, copy_function=_link)
        (functions[name] / "app.py").unlink()  # a link to the pyc variant's: not written through
        shutil.copy2(old / "functions" / name / "app.py", functions[name] / "app.py")
        compile_tree(functions[name])
    return Variant("before", layer, functions)


def shown(path: Path) -> str:
    return str(path.relative_to(ROOT)) if path.is_relative_to(ROOT) else str(path)


def check_artifact(build_dir: Path) -> None:
    missing = [d for d in (LAYER, *FUNCTIONS.values()) if not (build_dir / d).is_dir()]
    if missing:
        raise ArtifactError(
            f"{build_dir} lacks {', '.join(missing)}: run `make build` first "
            "(sam build, then the checked-hash .pyc step)"
        )
    if not any((build_dir / LAYER / "python").rglob("*.pyc")):
        raise ArtifactError(f"{build_dir} has no .pyc: run `make build` (not only `sam build`)")


@contextmanager
def artifact_copies(
    build_dir: Path, names: Sequence[str], baseline: str | None = None
) -> Iterator[tuple[list[Variant], Path, list[str]]]:
    """([pyc, no-pyc, before if `baseline`], runtime dir, swapped extensions) in a temporary
    directory."""
    check_artifact(build_dir)
    with tempfile.TemporaryDirectory(prefix="warmgate-bench-") as temp:
        work = Path(temp)
        runtime = work / "runtime"
        runtime.mkdir()
        for package in RUNTIME_PACKAGES:
            (runtime / package).symlink_to(site_packages() / package)
        variants = []
        swapped: list[str] = []
        for variant in ("pyc", "no-pyc"):
            base = work / variant
            layer = base / "layer"
            shutil.copytree(build_dir / LAYER / "python", layer, symlinks=True, copy_function=_link)
            functions = {}
            for name in names:
                functions[name] = base / name
                shutil.copytree(
                    build_dir / FUNCTIONS[name], functions[name], symlinks=True, copy_function=_link
                )
            swapped = use_host_extensions(layer, site_packages())
            if variant == "no-pyc":
                remove_pycache(base)
            variants.append(Variant(variant, layer, functions))
        if baseline is not None:
            variants.append(before_variant(variants[0], work / "before", baseline, names))
        yield variants, runtime, swapped


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


def timed_import_ms(variant: Variant, name: str, runtime: Path, module: str = "app") -> float:
    result = subprocess.run(
        [sys.executable, "-S", "-c", TIMED_IMPORT.format(module=module)],
        env=child_env(variant, name, runtime),
        cwd=variant.functions[name],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ArtifactError(f"{variant.name} {name}: import failed:\n{result.stderr[-2000:]}")
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
    result = subprocess.run(
        [sys.executable, "-S", "-X", "importtime", "-c", "import app"],
        env=child_env(variant, name, runtime),
        cwd=variant.functions[name],
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        raise ArtifactError(f"{name}: -X importtime run failed:\n{result.stderr[-2000:]}")
    return parse_importtime(result.stderr)


# --------------------------------------------------------------------------- the benchmark


def run(*, quick: bool, build_dir: Path = BUILD_DIR, baseline_ref: str | None = None) -> Table:
    names = ["webhook", "worker"] if quick else list(FUNCTIONS)
    rounds = 3 if quick else 15
    table = Table(
        "cold_init",
        f"Cold init per function (import of the handler in a fresh process, median of {rounds})",
    )
    # --quick leaves the before variant out: the full run measures it.
    baseline = None if quick else baseline_commit(baseline_ref)
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
        offenders = {
            (variant.name, name): importtime(variant, name, runtime)
            for variant in variants
            if variant.name != "no-pyc"
            for name in names
        }
    floor = median(runtime_floor)

    for name in names:
        with_pyc, without = median(samples[name]["pyc"]), median(samples[name]["no-pyc"])
        speedup = ratio(without, with_pyc)
        goal = GOALS_MS.get(name)
        table.add(
            Row(
                f"{name} Init, artifact (hash .pyc)",
                with_pyc,
                "ms",
                baseline=without,
                ratio=speedup,
                goal=None if goal is None else Goal("<=", goal, "ms"),
            )
        )
        table.add(
            Row(
                f"{name} Init saved by the .pyc",
                without - with_pyc,
                "ms",
                baseline=without,
                ratio=speedup,
                goal=Goal(">=", SPEEDUP_GOALS.get(name, SPEEDUP_GOAL), on="ratio"),
            )
        )
        table.add(
            Row(
                f"{name} Init without the runtime's `import {RUNTIME_IMPORT}`",
                with_pyc - floor,
                "ms",
                baseline=without - floor,
                ratio=ratio(without - floor, with_pyc - floor),
            )
        )
        if samples[name]["before"]:
            before = median(samples[name]["before"])
            table.add(
                Row(
                    f"{name} Init before this branch ({baseline[:7] if baseline else '?'})",
                    before,
                    "ms",
                    baseline=with_pyc,
                    ratio=ratio(before, with_pyc),
                )
            )
    table.notes += [
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
    for name in names:
        spread = {
            v: (percentile(samples[name][v], 25), percentile(samples[name][v], 75))
            for v in ("pyc", "no-pyc")
        }
        table.notes.append(
            f"{name}: interquartile range pyc {spread['pyc'][0]:.0f}-{spread['pyc'][1]:.0f} ms, "
            f"no-pyc {spread['no-pyc'][0]:.0f}-{spread['no-pyc'][1]:.0f} ms"
        )
    built = datetime.fromtimestamp((build_dir / LAYER).stat().st_mtime, UTC)
    table.notes.append(
        f"artifact: {shown(build_dir)} as built {built:%Y-%m-%d %H:%M} UTC "
        "(`make build` refreshes it)"
    )
    if swapped:
        table.notes.append(
            "native extensions replaced by this host's build of the same version: "
            + "; ".join(swapped)
        )
    for (variant_name, name), records in offenders.items():
        root = next((r for r in records if r.name == "app"), None)
        table.details.append(
            f"{name}, {variant_name}: -X importtime, top 10 by cumulative (one run)"
        )
        table.details.append(f"  {'cumulative':>10} {'self':>8}  module")
        for record in top_imports(records):
            table.details.append(
                f"  {record.cumulative_us / 1000:8.1f}ms {record.self_us / 1000:6.1f}ms  "
                f"{'  ' * record.depth}{record.name}"
            )
        if root is not None:
            table.details.append(
                f"  app itself: {root.cumulative_us / 1000:.1f} ms in all, "
                f"{root.self_us / 1000:.1f} ms in its own body (settings, clients at import)"
            )
    table.extra = {
        "rounds": rounds,
        "baseline_commit": baseline,
        "samples_ms": samples,
        f"import_{RUNTIME_IMPORT}_ms": runtime_floor,
        "swapped_extensions": swapped,
        "importtime": {
            f"{name} {variant_name}": [vars(r) for r in top_imports(records, 25)]
            for (variant_name, name), records in offenders.items()
        },
    }
    return table
