"""Latency measurement: percentiles, run counts, warm-up, throughput, cold-start failures."""

from __future__ import annotations

import time

import pytest

from edgekd.errors import EdgekdError
from edgekd.verify.latency import LatencySettings, batch1_latency, cold_start, percentiles, throughput


def test_percentiles_hand_computed() -> None:
    p = percentiles([float(i) for i in range(1, 101)])  # 1..100 ms
    assert p["p50_ms"] == pytest.approx(50.5) and p["p90_ms"] == pytest.approx(90.1)
    assert p["p99_ms"] == pytest.approx(99.01) and p["min_ms"] == 1.0 and p["mean_ms"] == 50.5
    assert percentiles([])["p50_ms"] == 0.0


def test_batch1_counts_warmup_runs_and_texts() -> None:
    calls: list[list[str]] = []
    settings = LatencySettings(warmup=3, runs=20, min_seconds=0.0, max_runs=100)
    out = batch1_latency(calls.append, ["a", "b"], settings)
    assert len(calls) == 23 and all(len(c) == 1 for c in calls)  # warm-up + timed, batch 1 each
    assert out["runs"] == 20 and len(out["samples_ms"]) == 20
    assert calls[3:6] == [["a"], ["b"], ["a"]]  # the texts are cycled


def test_batch1_measures_real_time_until_min_seconds() -> None:
    settings = LatencySettings(warmup=1, runs=3, min_seconds=0.1, max_runs=1000)
    out = batch1_latency(lambda _: time.sleep(0.01), ["x"], settings)
    # kept measuring until 0.1 s had passed, not just 3 runs (no upper bound: a loaded machine oversleeps)
    assert out["runs"] > 3 and sum(out["samples_ms"]) >= 90.0
    assert out["p50_ms"] >= 9.0 and out["p99_ms"] >= out["p90_ms"] >= out["p50_ms"]
    capped = batch1_latency(lambda _: None, ["x"], LatencySettings(warmup=0, runs=1, min_seconds=10, max_runs=50))
    assert capped["runs"] == 50


def test_throughput_uses_full_batches() -> None:
    sizes: list[int] = []

    def predict(batch: list[str]) -> None:
        sizes.append(len(batch))
        time.sleep(0.005)

    out = throughput(predict, ["a", "b", "c"], LatencySettings(batch_size=8, throughput_batches=2))
    assert sizes == [8, 8, 8] and out["batch_size"] == 8
    assert 0 < out["texts_per_s"] <= 8 / 0.005


def test_batch1_needs_texts() -> None:
    with pytest.raises(EdgekdError, match="at least one text"):
        batch1_latency(lambda _: None, [])


def test_cold_start_failure_names_backend(tmp_path) -> None:
    with pytest.raises(EdgekdError, match="cold start of onnx-fp32 failed: .*not an edgekd bundle"):
        cold_start(str(tmp_path), "onnx", "fp32", "hello")
