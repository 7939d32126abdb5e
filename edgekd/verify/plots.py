"""The report's charts as PNG bytes (matplotlib, Agg backend, no display needed).

Each function takes plain report rows and returns PNG bytes, so the HTML can embed them as base64
and stay one self-contained file.
"""

from __future__ import annotations

import io
from collections.abc import Sequence
from typing import Any

from edgekd.errors import require

# One colour per model kind, so the teacher and the PyTorch student stand out from the artifacts.
KIND_COLOURS = {"baseline": "#9c9c9c", "teacher": "#7a5195", "student": "#ef5675", "artifact": "#2f6fb0"}
DEVICE_COLOURS = ("#2f6fb0", "#ffa600", "#7a5195", "#ef5675", "#4c9f70", "#955251")


def _figure(width: float = 7.0, height: float = 3.2) -> tuple[Any, Any]:
    mpl = require("matplotlib", "train", "report plots")
    mpl.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(width, height), dpi=110)
    ax.spines[["top", "right"]].set_visible(False)
    ax.grid(axis="y", alpha=0.3)
    return fig, ax


def _png(fig: Any) -> bytes:
    import matplotlib.pyplot as plt

    buf = io.BytesIO()
    fig.tight_layout()
    fig.savefig(buf, format="png")
    plt.close(fig)
    return buf.getvalue()


def _bars(models: Sequence[dict[str, Any]], values: Sequence[float], ylabel: str, title: str,
          fmt: str) -> tuple[Any, Any]:
    fig, ax = _figure()
    names = [m["name"] for m in models]
    bars = ax.bar(names, values, color=[KIND_COLOURS.get(m["kind"], "#888") for m in models])
    ax.bar_label(bars, labels=[fmt.format(v) for v in values], fontsize=8, padding=2)
    ax.set_ylabel(ylabel)
    ax.set_title(title, fontsize=11)
    ax.tick_params(axis="x", labelrotation=30, labelsize=8)
    return fig, ax


def accuracy_chart(models: Sequence[dict[str, Any]]) -> bytes:
    """Test accuracy per model, teacher first, with the teacher's accuracy as a dashed line."""
    values = [m["accuracy"]["accuracy"] * 100 for m in models]
    fig, ax = _bars(models, values, "accuracy (%)", "Accuracy per model vs teacher", "{:.1f}")
    teacher = [v for m, v in zip(models, values, strict=True) if m["kind"] == "teacher"]
    if teacher:
        ax.axhline(teacher[0], ls="--", color=KIND_COLOURS["teacher"], lw=1, label="teacher")
        ax.legend(fontsize=8, loc="lower right")
    low = min(values) if values else 0
    ax.set_ylim(max(0.0, low - 10), 100)
    return _png(fig)


def size_chart(models: Sequence[dict[str, Any]]) -> bytes:
    """File size per model in MB (models without a size are left out)."""
    sized = [m for m in models if m.get("bytes")]
    fig, _ = _bars(sized, [m["bytes"] / 1e6 for m in sized], "size (MB)", "Size per model", "{:.1f}")
    return _png(fig)


def latency_chart(models: Sequence[dict[str, Any]]) -> bytes:
    """Batch-1 p50 latency per model, with p90 and p99 drawn as marks."""
    timed = [m for m in models if m.get("latency")]
    p50 = [m["latency"]["batch1"]["p50_ms"] for m in timed]
    fig, ax = _bars(timed, p50, "batch-1 latency (ms)", "Latency per model (p50; ticks: p90, p99)", "{:.2f}")
    if p50 and min(p50) > 0 and max(p50) > 20 * min(p50):
        ax.set_yscale("log")  # a 100x slower teacher would flatten the students' bars
        ax.set_ylabel("batch-1 latency (ms, log)")
    for i, m in enumerate(timed):
        b = m["latency"]["batch1"]
        ax.plot([i, i], [b["p90_ms"], b["p99_ms"]], color="#333", lw=1)
        ax.plot([i], [b["p90_ms"]], marker="_", color="#333", ms=10)
        ax.plot([i], [b["p99_ms"]], marker="_", color="#333", ms=10)
    return _png(fig)


def latency_distribution(models: Sequence[dict[str, Any]]) -> bytes:
    """Box plot of every batch-1 sample per model (log scale when the range is wide)."""
    timed = [m for m in models if m.get("latency") and m["latency"]["batch1"].get("samples_ms")]
    fig, ax = _figure(7.0, 3.4)
    data = [m["latency"]["batch1"]["samples_ms"] for m in timed]
    if data:
        ax.boxplot(data, showfliers=True, flierprops={"markersize": 2})
        ax.set_xticks(range(1, len(timed) + 1), [m["name"] for m in timed], rotation=30, fontsize=8)
        if max(max(d) for d in data) > 20 * min(min(d) for d in data):
            ax.set_yscale("log")
    ax.set_ylabel("batch-1 latency (ms)")
    ax.set_title("Latency distribution (every run)", fontsize=11)
    return _png(fig)


def merged_latency_chart(names: Sequence[str], devices: Sequence[str],
                         table: dict[tuple[str, str], float]) -> bytes:
    """Grouped bars: batch-1 p50 per model (groups) and device (bars); `table[(name, device)]` in ms."""
    fig, ax = _figure(8.0, 3.6)
    width = 0.8 / max(1, len(devices))
    for j, device in enumerate(devices):
        xs = [i + j * width for i in range(len(names))]
        ys = [table.get((n, device), 0.0) for n in names]
        ax.bar(xs, ys, width=width, label=device, color=DEVICE_COLOURS[j % len(DEVICE_COLOURS)])
    ax.set_xticks([i + width * (len(devices) - 1) / 2 for i in range(len(names))], names, rotation=30, fontsize=8)
    ax.set_ylabel("batch-1 p50 (ms)")
    ax.set_title("Latency per model and device", fontsize=11)
    ax.legend(fontsize=7)
    return _png(fig)


def embedding_chart(embedding: dict[str, Any], labels: Sequence[str], model: str) -> bytes:
    """A model's embedding map (`report.models[i].embedding_map`): one dot per text coloured by its
    true label; misclassified texts are crosses in their true label's colour."""
    import matplotlib
    import numpy as np

    fig, ax = _figure(7.6, 4.6)
    ax.grid(alpha=0.3)
    points = np.asarray(embedding["points"], dtype=float).reshape(-1, 2)  # [n, 2]
    true, predicted = np.asarray(embedding["labels"]), np.asarray(embedding["predicted"])
    wrong = true != predicted
    colours = matplotlib.colormaps["tab10" if len(labels) <= 10 else "tab20"]
    for i, name in enumerate(labels):
        colour = colours(i % colours.N)
        ax.scatter(*points[(true == i) & ~wrong].T, s=8, color=colour, alpha=0.6, linewidths=0, label=name)
        ax.scatter(*points[(true == i) & wrong].T, s=26, color=colour, marker="x", linewidths=1.1)
    ax.scatter([], [], s=26, color="#333", marker="x", linewidths=1.1, label=f"misclassified ({int(wrong.sum())})")
    method = embedding["method"].upper()
    variance = list(embedding.get("explained_variance") or []) + [None, None]
    for axis, i in ((ax.set_xlabel, 0), (ax.set_ylabel, 1)):
        axis(f"{method} {i + 1}" + (f" ({variance[i]:.0%} of variance)" if variance[i] is not None else ""))
    shown = f"{len(points):,} of {embedding['n']:,}" if len(points) < embedding["n"] else f"{len(points):,}"
    ax.set_title(f"Embeddings of {model} ({method} of what its classifier reads), {shown} test texts", fontsize=10)
    ax.legend(fontsize=7, markerscale=1.5, loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False,
              ncol=1 if len(labels) <= 12 else 2)
    return _png(fig)


def per_class_f1_chart(models: Sequence[dict[str, Any]], labels: Sequence[str]) -> bytes:
    """Grouped bars: F1 per class (groups, with their test support) for the baseline, the teacher and
    the PyTorch student (bars) side by side; a class none of them gets right shows as an empty group."""
    import numpy as np

    shown = [m for m in models if m["kind"] in ("baseline", "teacher", "student") and m["accuracy"].get("f1_per_class")]
    fig, ax = _figure(max(7.0, 0.55 * len(labels) * max(1, len(shown)) + 2), 3.6)
    width = 0.8 / max(1, len(shown))
    x = np.arange(len(labels))
    for k, m in enumerate(shown):
        ax.bar(x + k * width - 0.4 + width / 2, m["accuracy"]["f1_per_class"], width, label=m["name"],
               color=KIND_COLOURS.get(m["kind"], "#888"))
    support = shown[0]["accuracy"].get("support") if shown else None
    ticks = [f"{name} ({support[i]})" if support else name for i, name in enumerate(labels)]
    ax.set_xticks(x, ticks, rotation=30, ha="right", fontsize=8)
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("F1 (test)")
    ax.set_title("F1 per class (test texts per class): baseline vs teacher vs student", fontsize=11)
    if shown:
        ax.legend(fontsize=8)
    return _png(fig)
