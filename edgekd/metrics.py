"""Classification metrics (scikit-learn), the metrics table (rich) and PNG plots (matplotlib Agg).

`metrics.json` keys: `accuracy, precision_weighted, recall_weighted, f1_weighted, precision_macro,
recall_macro, f1_macro, per_class {label: {precision, recall, f1, support, tp, fp, fn, tn}},
confusion_matrix (rows = true label, columns = predicted, in `labels` order), labels, n`, plus
`logits_sha256` when computed from logits.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

CONFUSION_PNG = "confusion_matrix.png"
DISTRIBUTION_PNG = "class_distribution.png"
METRICS_JSON = "metrics.json"


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """All metrics for label ids `y_true` vs `y_pred` (indices into `labels`)."""
    from sklearn.metrics import accuracy_score, confusion_matrix, precision_recall_fscore_support

    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    ids = list(range(len(labels)))
    out: dict[str, Any] = {"accuracy": float(accuracy_score(y_true, y_pred))}
    for average in ("weighted", "macro"):
        p, r, f, _ = precision_recall_fscore_support(y_true, y_pred, labels=ids, average=average,
                                                     zero_division=0)
        out.update({f"precision_{average}": float(p), f"recall_{average}": float(r),
                    f"f1_{average}": float(f)})
    p, r, f, support = precision_recall_fscore_support(y_true, y_pred, labels=ids, zero_division=0)
    cm = confusion_matrix(y_true, y_pred, labels=ids)  # [num_labels, num_labels], rows = true
    tp = np.diag(cm)
    fp, fn = cm.sum(axis=0) - tp, cm.sum(axis=1) - tp
    tn = cm.sum() - tp - fp - fn
    out["per_class"] = {
        label: {"precision": float(p[i]), "recall": float(r[i]), "f1": float(f[i]),
                "support": int(support[i]), "tp": int(tp[i]), "fp": int(fp[i]),
                "fn": int(fn[i]), "tn": int(tn[i])}
        for i, label in enumerate(labels)
    }
    out["confusion_matrix"] = cm.astype(int).tolist()
    out["labels"] = list(labels)
    out["n"] = int(len(y_true))
    return out


def evaluate_logits(logits: np.ndarray, y_true: np.ndarray, labels: list[str]) -> dict[str, Any]:
    """Metrics of argmax(`logits` [n, num_labels]) against label ids `y_true`, plus `logits_sha256`."""
    logits = np.asarray(logits)
    if logits.ndim != 2 or logits.shape != (len(y_true), len(labels)):
        raise ValueError(f"logits shape {logits.shape} does not match ({len(y_true)}, {len(labels)})")
    out = classification_metrics(y_true, logits.argmax(axis=1), labels)
    out["logits_sha256"] = hashlib.sha256(np.ascontiguousarray(logits, dtype=np.float32).tobytes()).hexdigest()
    return out


def write_metrics(metrics: dict[str, Any], out_dir: str | Path,
                  class_counts: dict[str, dict[str, int]] | None = None, title: str = "") -> Path:
    """Write `metrics.json`, `confusion_matrix.png` and (given per-split counts)
    `class_distribution.png` into `out_dir`; returns the metrics.json path."""
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    path = out / METRICS_JSON
    path.write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
    plot_confusion_matrix(np.array(metrics["confusion_matrix"]), metrics["labels"],
                          out / CONFUSION_PNG, title=title)
    if class_counts:
        plot_class_distribution(class_counts, out / DISTRIBUTION_PNG, title=title)
    return path


def print_metrics(metrics: dict[str, Any], title: str = "test metrics", console: Any = None) -> None:
    """Print the overall numbers, the per-class table and `review`'s warnings (a class never right)."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console()
    overall = Table(title=f"{title} (n={metrics.get('n', '?')})")
    for col in ("accuracy", "f1 macro", "f1 weighted", "precision w", "recall w"):
        overall.add_column(col, justify="right")
    overall.add_row(*(f"{metrics[k]:.4f}" for k in ("accuracy", "f1_macro", "f1_weighted",
                                                   "precision_weighted", "recall_weighted")))
    console.print(overall)
    per = Table(title="per class")
    per.add_column("label")
    for col in ("precision", "recall", "f1", "support", "tp", "fp", "fn", "tn"):
        per.add_column(col, justify="right")
    for label, m in metrics["per_class"].items():
        per.add_row(label, *(f"{m[k]:.4f}" for k in ("precision", "recall", "f1")),
                    *(str(m[k]) for k in ("support", "tp", "fp", "fn", "tn")))
    console.print(per)
    print_warnings(review([scores_from_metrics(title.split(",")[0], "model", metrics)]), console)


def _figure(width: float, height: float) -> Any:
    # A bare Figure with an Agg canvas: no pyplot global state, no display needed.
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), dpi=110)
    FigureCanvasAgg(fig)
    return fig


def plot_confusion_matrix(cm: np.ndarray, labels: list[str], path: str | Path, title: str = "") -> Path:
    """Confusion matrix heat map (rows true, columns predicted), counts in each cell."""
    n = len(labels)
    size = max(4.0, 0.6 * n + 2.5)
    fig = _figure(size, size)
    ax = fig.add_subplot()
    image = ax.imshow(cm, cmap="Blues")
    fig.colorbar(image, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), labels, rotation=45, ha="right")
    ax.set_yticks(range(n), labels)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title(f"confusion matrix {title}".strip())
    if n <= 30:
        high = cm.max() / 2 if cm.size else 0
        for i in range(n):
            for j in range(n):
                ax.text(j, i, str(int(cm[i, j])), ha="center", va="center", fontsize=8,
                        color="white" if cm[i, j] > high else "black")
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def plot_class_distribution(counts: dict[str, dict[str, int]], path: str | Path, title: str = "") -> Path:
    """Grouped bars: rows per label for each split (`{split: {label: count}}`)."""
    splits = list(counts)
    labels = list(next(iter(counts.values())))
    x = np.arange(len(labels))
    width = 0.8 / max(1, len(splits))
    fig = _figure(max(5.0, 0.5 * len(labels) * len(splits) + 2), 4.0)
    ax = fig.add_subplot()
    for k, split in enumerate(splits):
        ax.bar(x + k * width - 0.4 + width / 2, [counts[split].get(lab, 0) for lab in labels],
               width, label=split)
    ax.set_xticks(x, labels, rotation=45, ha="right")
    ax.set_ylabel("rows")
    ax.set_title(f"class distribution {title}".strip())
    ax.legend()
    fig.tight_layout()
    fig.savefig(path)
    return Path(path)


def split_counts(report: dict[str, Any]) -> dict[str, dict[str, int]]:
    """`{split: {label: count}}` from a `Splits.report`, for `plot_class_distribution`."""
    return {name: info["counts"] for name, info in report["splits"].items()}


# --- what a careful reviewer would say ------------------------------------------------------------

# A class with at least this many test texts and F1 = 0: the model never gets it right, which is a
# finding, not noise (at 10 texts a model with any skill on the class would get one right).
ZERO_F1_MIN_SUPPORT = 10


@dataclass
class ModelScores:
    """The numbers `review` reads of one model: `per_class` = {label: (f1, support)}."""

    name: str
    kind: str  # baseline | teacher | student | artifact
    accuracy: float
    f1_macro: float
    per_class: dict[str, tuple[float, int]] = field(default_factory=dict)


def scores_from_metrics(name: str, kind: str, metrics: dict[str, Any]) -> ModelScores:
    """ModelScores of a `metrics.json` (train, distill, baseline, evaluate)."""
    per_class = {label: (float(m["f1"]), int(m["support"])) for label, m in metrics.get("per_class", {}).items()}
    return ModelScores(name, kind, float(metrics["accuracy"]), float(metrics["f1_macro"]), per_class)


def scores_from_report(model: dict[str, Any], labels: list[str]) -> ModelScores:
    """ModelScores of one model row of a verification report (`accuracy` holds f1_per_class and
    support in the bundle's label order; older reports have neither)."""
    acc = model["accuracy"]
    f1, support = acc.get("f1_per_class") or [], acc.get("support") or []
    per_class = {label: (float(f), int(n)) for label, f, n in zip(labels, f1, support, strict=False)}
    return ModelScores(model["name"], model["kind"], float(acc["accuracy"]), float(acc["f1_macro"]), per_class)


def review(models: list[ModelScores]) -> list[str]:
    """Warnings a careful reviewer would give, one line each (empty when there is nothing to say):
    a class with F1 = 0 on >= ZERO_F1_MIN_SUPPORT test texts, and a transformer model (teacher,
    student or artifact) below the TF-IDF baseline on macro F1 or on accuracy. Models with the same
    finding share one line."""
    by_finding: dict[str, list[str]] = {}
    for m in models:
        never = [f"{label} ({n} texts)" for label, (f1, n) in m.per_class.items() if f1 == 0 and n >= ZERO_F1_MIN_SUPPORT]
        if never:
            finding = (f"F1 = 0 on {len(never)} of {len(m.per_class)} classes: {', '.join(never)}: never predicted "
                       "right (more rows of them, --class-weight balanced or --select-metric f1_macro may help)")
            by_finding.setdefault(finding, []).append(m.name)
    out = [f"{', '.join(names)}: {finding}" for finding, names in by_finding.items()]
    baseline = next((m for m in models if m.kind == "baseline"), None)
    if baseline is None:
        return out
    for key, title in (("f1_macro", "macro F1"), ("accuracy", "accuracy")):
        ref = getattr(baseline, key)
        below = [f"{m.name} {getattr(m, key):.3f}" for m in models if m.kind != "baseline" and getattr(m, key) < ref]
        if below:
            out.append(f"below the TF-IDF baseline ({baseline.name} {ref:.3f}) on {title}: {', '.join(below)}; "
                       "the transformer does not earn its cost here (see the per-class F1 chart)")
    return out


def report_warnings(report: dict[str, Any]) -> list[str]:
    """`review` of every model of a verification report."""
    labels = report["bundle"]["labels"]
    return review([scores_from_report(m, labels) for m in report["models"]])


def print_warnings(warnings: list[str], console: Any = None) -> None:
    """Each warning as one bold yellow line."""
    from rich.console import Console
    from rich.text import Text

    console = console or Console()
    for line in warnings:
        console.print(Text(f"warning: {line}", style="bold yellow"))


def print_decisions(checkpoint: str | Path, console: Any = None) -> None:
    """One line of what a checkpoint's training decided (its card's `decisions`): class weights,
    selection metric and schedule, and the epoch it kept."""
    from rich.console import Console

    from edgekd.checkpoint import read_card

    card = read_card(checkpoint)
    d = card.get("decisions")
    if not d:
        return
    best = card.get("best_validation") or {}
    kept = f", kept epoch {best['epoch']:g} (validation {d['select_metric']} {best[d['select_metric']]:.4f})" \
        if best.get("epoch") is not None else ""
    rate, body = d.get("embedding_lr"), (card.get("training") or {}).get("lr")
    embedding = f"; word embeddings at lr {rate:g} (body {body:g})" if rate is not None and rate != body else ""
    console = console or Console()
    console.print(f"{Path(checkpoint).name}: class weight {d['class_weight']}, selected on {d['select_metric']}, "
                  f"{d['epochs']:g} epochs planned (ran {card.get('epochs_run') or 0:g}), warm-up {d['warmup_ratio']:g}"
                  f"{kept}; imbalance {d.get('imbalance_ratio')} (threshold {d['imbalance_threshold']:g})"
                  f"{embedding}",
                  markup=False, highlight=False)
