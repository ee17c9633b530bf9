"""CPU measuring tools of bench.warm_cpu: process-time samples taken in turn, cProfile runs
(timer = process_time, so waiting on a socket is not counted), merged, and the share of the
profiled time spent under a library's entry function."""

from __future__ import annotations

import cProfile
import pstats
import statistics
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

from bench.report import median

# Entry points of the libraries whose share is reported: every botocore API call goes through
# a client method (`_api_call`), every Mailivery call through httpx.Client.request. Neither is
# re-entered from inside itself, so their cumulative times do not double count.
BOTOCORE_ENTRY: Final = ("botocore/client.py", "_api_call")
HTTPX_ENTRY: Final = ("httpx/_client.py", "request")

StatsDict = Mapping[tuple[str, int, str], tuple[int, int, float, float, Any]]


@dataclass(frozen=True)
class ProfileShares:
    total_s: float
    shares: dict[str, float]  # entry label → share of total
    calls: dict[str, int]  # entry label → number of calls


def cpu_ms(call: Callable[[], object]) -> float:
    started = time.process_time()
    call()
    return (time.process_time() - started) * 1000


def interleaved_cpu_ms(
    calls: Mapping[str, Callable[[], object]], iterations: int
) -> dict[str, list[float]]:
    """CPU of each call, taken in turn (A B C A B C ...) so drift on a shared machine hits the
    figure and its baseline alike."""
    samples: dict[str, list[float]] = {name: [] for name in calls}
    for _ in range(iterations):
        for name, call in calls.items():
            samples[name].append(cpu_ms(call))
    return samples


def entry_shares(stats: StatsDict, entries: Mapping[str, tuple[str, str]]) -> ProfileShares:
    """Share of all profiled time spent under each entry function (file suffix, name)."""
    total = sum(tottime for _, _, tottime, _, _ in stats.values())
    shares: dict[str, float] = {}
    calls: dict[str, int] = {}
    for label, (file_suffix, function) in entries.items():
        cumulative = 0.0
        count = 0
        for (filename, _, name), (_, total_calls, _, cumtime, _) in stats.items():
            if name == function and filename.replace("\\", "/").endswith(file_suffix):
                cumulative += cumtime
                count += total_calls
        shares[label] = cumulative / total if total else 0.0
        calls[label] = count
    return ProfileShares(total, shares, calls)


def profile(call: Callable[[], object], iterations: int) -> StatsDict:
    profiler = cProfile.Profile(time.process_time)
    for _ in range(iterations):
        profiler.enable()
        call()
        profiler.disable()
    stats: StatsDict = pstats.Stats(profiler).stats  # type: ignore[attr-defined]
    return stats


def merge(stats: Iterable[StatsDict]) -> StatsDict:
    """Sum several profiles' per-function (calls, tottime, cumtime); callers are dropped."""
    merged: dict[tuple[str, int, str], tuple[int, int, float, float, Any]] = {}
    for one in stats:
        for key, (cc, nc, tt, ct, _) in one.items():
            pcc, pnc, ptt, pct, _ = merged.get(key, (0, 0, 0.0, 0.0, None))
            merged[key] = (pcc + cc, pnc + nc, ptt + tt, pct + ct, None)
    return merged


def summary(samples: list[float]) -> dict[str, float]:
    return {
        "n": len(samples),
        "median": median(samples),
        "mean": statistics.fmean(samples),
        "min": min(samples),
        "max": max(samples),
    }
