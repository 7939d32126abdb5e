"""Latency as a user feels it, through the runtime, on real texts.

- batch-1: p50/p90/p99 of single-text calls after a warm-up, with at least `runs` calls and at
  least `min_seconds` of measuring, so the median is stable on a noisy machine;
- throughput: texts per second at a larger batch;
- cold start: a fresh Python process that imports edgekd, loads the bundle and predicts once,
  with its peak RSS (resource.getrusage inside that process).
"""

from __future__ import annotations

import json
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from edgekd.errors import EdgekdError


@dataclass(frozen=True)
class LatencySettings:
    """How long to measure. Defaults suit a shared 2-core machine; raise them for a benchmark."""

    warmup: int = 10
    runs: int = 50
    min_seconds: float = 1.0
    max_runs: int = 1000
    batch_size: int = 32
    throughput_batches: int = 3
    cold_start: bool = True


def percentiles(samples_ms: Sequence[float]) -> dict[str, float]:
    """p50/p90/p99/mean/min of latency samples in milliseconds."""
    a = np.asarray(samples_ms, dtype=np.float64)
    if a.size == 0:
        return {"p50_ms": 0.0, "p90_ms": 0.0, "p99_ms": 0.0, "mean_ms": 0.0, "min_ms": 0.0}
    p50, p90, p99 = np.percentile(a, [50, 90, 99])
    return {"p50_ms": float(p50), "p90_ms": float(p90), "p99_ms": float(p99),
            "mean_ms": float(a.mean()), "min_ms": float(a.min())}


def batch1_latency(predict: Callable[[list[str]], Any], texts: Sequence[str],
                   settings: LatencySettings = LatencySettings()) -> dict[str, Any]:
    """Time `predict([text])` over `texts` (cycled). Returns percentiles, `runs` and the raw
    `samples_ms` (for the distribution plot)."""
    if not texts:
        raise EdgekdError("latency needs at least one text; pass a non-empty --data file")
    for i in range(settings.warmup):
        predict([texts[i % len(texts)]])
    samples: list[float] = []
    start = time.perf_counter()
    while len(samples) < settings.max_runs and (
        len(samples) < settings.runs or time.perf_counter() - start < settings.min_seconds
    ):
        text = texts[len(samples) % len(texts)]
        t0 = time.perf_counter()
        predict([text])
        samples.append((time.perf_counter() - t0) * 1000.0)
    return {**percentiles(samples), "runs": len(samples), "samples_ms": [round(s, 4) for s in samples]}


def throughput(predict: Callable[[list[str]], Any], texts: Sequence[str],
               settings: LatencySettings = LatencySettings()) -> dict[str, Any]:
    """Texts per second calling `predict` with batches of `settings.batch_size` texts (one warm-up batch)."""
    n = settings.batch_size
    batches = [[texts[(b * n + i) % len(texts)] for i in range(n)] for b in range(settings.throughput_batches)]
    predict(batches[0])
    t0 = time.perf_counter()
    for batch in batches:
        predict(batch)
    seconds = time.perf_counter() - t0
    return {"batch_size": n, "texts_per_s": float(n * len(batches) / seconds) if seconds > 0 else 0.0}


# Runs in a fresh interpreter: the timings a user sees when an app starts.
_COLD_START = r"""
import json, resource, sys, time
t0 = time.perf_counter()
import edgekd
t1 = time.perf_counter()
clf = edgekd.load(sys.argv[1], backend=sys.argv[2], precision=sys.argv[3], **json.loads(sys.argv[5]))
t2 = time.perf_counter()
clf.predict(sys.argv[4])
t3 = time.perf_counter()
# Linux: VmHWM of this process image. ru_maxrss would carry over the parent's peak across exec
# (the parent that forked us may hold torch), so it is only the fallback (macOS reports bytes).
try:
    rss = next(int(l.split()[1]) * 1024 for l in open("/proc/self/status") if l.startswith("VmHWM:"))
except (OSError, StopIteration):
    rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    rss = rss if sys.platform == "darwin" else rss * 1024
print(json.dumps({"import_s": t1 - t0, "load_s": t2 - t1, "first_predict_s": t3 - t2,
                  "total_s": t3 - t0, "peak_rss_bytes": rss, "engine": clf.engine if hasattr(clf, "engine") else None}))
"""


def cold_start(bundle: str, backend: str, precision: str, text: str, timeout: float = 300.0,
               options: dict[str, Any] | None = None) -> dict[str, Any]:
    """Import + load + first prediction in a fresh process; also the process's peak RSS and the
    wall time including interpreter start-up (`process_s`). `options` go to `edgekd.load`."""
    t0 = time.perf_counter()
    try:
        out = subprocess.run([sys.executable, "-c", _COLD_START, str(bundle), backend, precision, text,
                              json.dumps(options or {})],
                             capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        raise EdgekdError(f"cold start of {backend}-{precision} took over {timeout:.0f} s; "
                          "check the bundle loads with: edgekd predict BUNDLE 'text'") from exc
    wall = time.perf_counter() - t0
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise EdgekdError(f"cold start of {backend}-{precision} failed: {last}")
    result = json.loads(out.stdout.strip().splitlines()[-1])
    result.pop("engine", None)
    result["process_s"] = wall
    return result
