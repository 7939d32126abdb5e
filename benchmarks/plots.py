"""Benchmark plots (matplotlib, Agg)."""

from __future__ import annotations

from pathlib import Path
from typing import Any


def scaling_plot(scaling: dict[str, Any], path: Path) -> Path:
    """Latency vs sequence length (batch 1) and throughput vs batch size (seq 64), fp32 and int8."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (a, b) = plt.subplots(1, 2, figsize=(11, 4))
    for name, sc in (("fp32", scaling), ("int8", scaling.get("int8") or {})):
        if not sc.get("by_seq_len"):
            continue
        seq = sorted(sc["by_seq_len"], key=int)
        a.plot([int(s) for s in seq], [sc["by_seq_len"][s]["p50_ms"] for s in seq], marker="o", label=name)
        bs = sorted(sc["by_batch"], key=int)
        b.plot([int(x) for x in bs], [sc["by_batch"][x]["texts_per_s"] for x in bs], marker="o", label=name)
    a.set(xscale="log", yscale="log", xlabel="sequence length (tokens)", ylabel="batch-1 p50 latency (ms)",
          title="latency vs sequence length")
    b.set(xscale="log", xlabel="batch size (64 tokens)", ylabel="texts / s", title="throughput vs batch size")
    for ax in (a, b):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
