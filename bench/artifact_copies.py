"""The artifact copies cold_init measures: `make build`'s layer and functions copied once per
run into a temporary directory as the pyc, no-pyc and before variants (bench.cold_init says
what each is), with the runtime's packages beside them and, where this host's architecture
differs from the artifact's, this host's build of each native extension of the same version."""

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
from pathlib import Path
from typing import Final

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
BASELINE_BRANCH: Final = "main"
# What the Lambda python3.12 runtime puts on sys.path besides our code: boto3 and its deps.
RUNTIME_PACKAGES: Final = ("boto3", "botocore", "s3transfer", "dateutil", "urllib3", "six.py")


class ArtifactError(RuntimeError):
    """The built artifact is missing or cannot run on this host; the message says what to do."""


@dataclass(frozen=True)
class Variant:
    name: str
    layer: Path
    functions: dict[str, Path]  # short name → function directory


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
