"""`python -m bench [--quick] [--only NAME ...] [--json PATH]`: run the benchmarks, print one
table per benchmark, write every figure (and the raw samples) as JSON.

Benchmarks are measurements, not tests: nothing here fails on a missed goal; the exit status is
non-zero only when a benchmark could not run.
"""

from __future__ import annotations

import argparse
import sys
import time
import traceback
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from bench.cold_init import run as run_cold_init
from bench.e2e import run as run_e2e
from bench.report import Table, machine, run_header, write_json
from bench.throughput import run as run_throughput
from bench.warm_cpu import run as run_warm_cpu

RESULTS: Final = Path(__file__).resolve().parent / "results"
# A benchmark returns its table, or several measured in one run (e2e: latency and cost).
BENCHMARKS: Final[dict[str, Callable[..., Table | list[Table]]]] = {
    "cold_init": run_cold_init,
    "warm_cpu": run_warm_cpu,
    "throughput": run_throughput,
    "e2e": run_e2e,
}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument(
        "--quick", action="store_true", help="fewer runs and a smaller backlog (< 1 min)"
    )
    parser.add_argument(
        "--only",
        action="append",
        choices=sorted(BENCHMARKS),
        metavar="NAME",
        help=f"run only this benchmark (repeatable): {', '.join(BENCHMARKS)}",
    )
    parser.add_argument(
        "--json", type=Path, help="where to write the results (default: bench/results/<UTC>.json)"
    )
    parser.add_argument(
        "--baseline-ref",
        help="the git commit cold_init's `before` variant is built from "
        "(default: where HEAD left main)",
    )
    args = parser.parse_args(argv)
    options: dict[str, dict[str, Any]] = {"cold_init": {"baseline_ref": args.baseline_ref}}
    started = datetime.now(UTC)
    print(run_header(started, machine(), args.quick), flush=True)
    tables: list[Table] = []
    failed: list[str] = []
    for name in args.only or list(BENCHMARKS):
        print(f"\n[{name}] running…", file=sys.stderr, flush=True)
        began = time.monotonic()
        try:
            result = BENCHMARKS[name](quick=args.quick, **options.get(name, {}))
        except Exception as exc:
            # One benchmark that cannot run (no artifact, a port taken) must not hide the others.
            traceback.print_exc()
            print(f"[{name}] could not run: {exc}", file=sys.stderr, flush=True)
            failed.append(name)
            continue
        duration = round(time.monotonic() - began, 1)
        for table in result if isinstance(result, list) else [result]:
            table.extra["duration_s"] = duration
            tables.append(table)
            print("\n" + table.render(), flush=True)
        print(f"[{name}] took {duration} s", file=sys.stderr, flush=True)
    path = args.json or RESULTS / f"{started:%Y%m%dT%H%M%SZ}.json"
    write_json(path, started, args.quick, tables)
    print(f"\nresults: {path}", flush=True)
    if failed:
        print(f"could not run: {', '.join(failed)}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
