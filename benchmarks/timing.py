"""Timing that survives a shared, noisy machine: warm-up, many repetitions, and competing systems
interleaved call by call so that load spikes hit all of them alike. Results are medians with spread."""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass


@dataclass
class Timing:
    p50_ms: float
    p90_ms: float
    p99_ms: float
    mean_ms: float
    iqr_ms: float  # spread: 75th - 25th percentile
    runs: int

    def to_dict(self) -> dict[str, float]:
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in asdict(self).items()}


def _quantile(sorted_ms: list[float], q: float) -> float:
    i = min(len(sorted_ms) - 1, max(0, round(q * (len(sorted_ms) - 1))))
    return sorted_ms[i]


def summarize(samples_ms: list[float]) -> Timing:
    s = sorted(samples_ms)
    return Timing(
        p50_ms=statistics.median(s), p90_ms=_quantile(s, 0.90), p99_ms=_quantile(s, 0.99),
        mean_ms=statistics.fmean(s), iqr_ms=_quantile(s, 0.75) - _quantile(s, 0.25), runs=len(s),
    )


def interleaved(systems: dict[str, Callable[[int], object]], runs: int, warmup: int = 10,
                pause_s: float = 0.0) -> dict[str, Timing]:
    """Time each `system(i)` (i = repetition index, e.g. to pick the i-th text) `runs` times, rotating
    the order of systems every round so none always runs first. pause_s: an untimed sleep before
    each call (a caller that does not call back to back)."""
    names = list(systems)
    for i in range(warmup):
        for n in names:
            systems[n](i)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for i in range(runs):
        order = names[i % len(names):] + names[: i % len(names)]
        for n in order:
            if pause_s:
                time.sleep(pause_s)
            t0 = time.perf_counter()
            systems[n](i)
            samples[n].append((time.perf_counter() - t0) * 1000.0)
    return {n: summarize(v) for n, v in samples.items()}


def back_to_back(systems: dict[str, Callable[[int], object]], runs: int, warmup: int = 10) -> dict[str, Timing]:
    """The cross-check of `interleaved`: each system timed alone, `runs` calls in two blocks of
    consecutive calls ordered A B ... B A, so a drift in machine load over the run hits all alike.
    Interleaving alone can bias a comparison: a system whose threads busy-wait after a call slows
    the other one's next call; back-to-back blocks cannot, so the two ratios should agree."""
    names = list(systems)
    samples: dict[str, list[float]] = {n: [] for n in names}
    for block in (names, names[::-1]):
        for n in block:
            for i in range(warmup):
                systems[n](i)
            for i in range(runs // 2):
                t0 = time.perf_counter()
                systems[n](i)
                samples[n].append((time.perf_counter() - t0) * 1000.0)
    return {n: summarize(v) for n, v in samples.items()}


def ratio(slow: Timing, fast: Timing) -> float:
    """How many times faster `fast` is than `slow`, on medians."""
    return slow.p50_ms / fast.p50_ms
