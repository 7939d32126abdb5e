"""Parity and accuracy metrics, and the per-precision gates. numpy only (no torch, no sklearn):
an app that embeds the runtime can run the same checks.

- conversion parity: artifact logits vs the logits of the PyTorch model it came from;
- distillation gap: a model's predictions vs the teacher's and vs the true labels;
- gates: thresholds per precision, declared as data, each check a pass/fail row.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from typing import Any

import numpy as np

from edgekd.errors import GateError, RecipeError
from edgekd.runtimes.classifier import softmax


def _check_pair(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    a, b = np.asarray(a), np.asarray(b)
    if a.shape != b.shape or a.ndim != 2:
        raise ValueError(f"logits must both be [n, num_labels] with equal shapes, got {a.shape} and {b.shape}")
    return a, b


def conversion_parity(artifact_logits: np.ndarray, source_logits: np.ndarray, max_examples: int = 10) -> dict[str, Any]:
    """Artifact vs the PyTorch model it came from, both logits [n, num_labels] on the same texts.

    Returns max_abs_logit, mean_abs_logit, max_abs_prob (softmax float64), agreement (top-1, 0..1),
    flips (count) and flipped (up to `max_examples` row indices whose top-1 label differs)."""
    a, s = _check_pair(artifact_logits, source_logits)
    n = a.shape[0]
    if n == 0:
        return {"n": 0, "max_abs_logit": 0.0, "mean_abs_logit": 0.0, "max_abs_prob": 0.0,
                "agreement": 1.0, "flips": 0, "flipped": []}
    diff = np.abs(a.astype(np.float64) - s.astype(np.float64))
    flipped = np.flatnonzero(a.argmax(axis=1) != s.argmax(axis=1))
    return {
        "n": int(n),
        "max_abs_logit": float(diff.max()),
        "mean_abs_logit": float(diff.mean()),
        "max_abs_prob": float(np.abs(softmax(a) - softmax(s)).max()),
        "agreement": float(1.0 - len(flipped) / n),
        "flips": int(len(flipped)),
        "flipped": [int(i) for i in flipped[:max_examples]],
    }


def parity_by_length(artifact_logits: np.ndarray, source_logits: np.ndarray, lengths: Sequence[int],
                     groups: int = 3) -> dict[str, dict[str, Any]]:
    """conversion_parity per token-length group (tertiles by default), keyed "tokens A-B", so a
    backend that is only wrong on long (or short) inputs shows where."""
    a, s = _check_pair(artifact_logits, source_logits)
    lengths = np.asarray(lengths)
    if len(lengths) != a.shape[0]:
        raise ValueError(f"{len(lengths)} lengths for {a.shape[0]} rows of logits")
    out: dict[str, dict[str, Any]] = {}
    if not len(lengths):
        return out
    order = np.argsort(lengths, kind="stable")
    for chunk in np.array_split(order, min(groups, len(order))):
        p = conversion_parity(a[chunk], s[chunk], max_examples=0)
        del p["flipped"]
        out[f"tokens {int(lengths[chunk].min())}-{int(lengths[chunk].max())}"] = p
    return out


def f1_scores(y_true: np.ndarray, y_pred: np.ndarray, num_labels: int) -> dict[str, float]:
    """Macro and weighted F1 over `num_labels` classes (a class with no true and no predicted rows
    scores 0 and, for macro, still counts only if it has support or predictions, as sklearn does)."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    cm = np.zeros((num_labels, num_labels), dtype=np.int64)  # cm[true, pred]
    np.add.at(cm, (y_true, y_pred), 1)
    tp = np.diag(cm).astype(np.float64)
    support = cm.sum(axis=1).astype(np.float64)
    predicted = cm.sum(axis=0).astype(np.float64)
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp), where=denom > 0)
    present = np.flatnonzero(denom > 0)
    macro = float(f1[present].mean()) if len(present) else 0.0
    weighted = float((f1 * support).sum() / support.sum()) if support.sum() else 0.0
    return {"f1_macro": macro, "f1_weighted": weighted}


def accuracy_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, float]:
    """accuracy, f1_macro, f1_weighted of logits [n, num_labels] against true label ids [n]."""
    logits = np.asarray(logits)
    labels = np.asarray(labels, dtype=np.int64)
    pred = logits.argmax(axis=1)
    acc = float((pred == labels).mean()) if len(labels) else 0.0
    return {"accuracy": acc, **f1_scores(labels, pred, logits.shape[1])}


def distillation_gap(model_logits: np.ndarray, teacher_logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """A model (student or artifact) vs the teacher on labelled texts: the model's accuracy and F1,
    the teacher's, the accuracy gap (teacher - model, 0..1), top-1 agreement and flips vs the teacher."""
    m, t = _check_pair(model_logits, teacher_logits)
    mine, theirs = accuracy_metrics(m, labels), accuracy_metrics(t, labels)
    flips = int((m.argmax(axis=1) != t.argmax(axis=1)).sum())
    n = m.shape[0]
    return {
        **mine,
        "teacher_accuracy": theirs["accuracy"],
        "teacher_f1_macro": theirs["f1_macro"],
        "accuracy_gap": theirs["accuracy"] - mine["accuracy"],
        "agreement": float(1.0 - flips / n) if n else 1.0,
        "flips": flips,
    }


# --- gates ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Gate:
    """One threshold: `metric op threshold`, with why it is there."""

    metric: str  # a key of the parity row: agreement, max_abs_logit, max_abs_prob, accuracy_drop
    op: str  # ">=" or "<="
    threshold: float
    reason: str = ""

    def passes(self, value: float) -> bool:
        return value >= self.threshold if self.op == ">=" else value <= self.threshold


# Defaults per precision; a recipe or `--gate-<precision>-<metric>` flags override the thresholds.
DEFAULT_GATES: dict[str, tuple[Gate, ...]] = {
    "fp32": (
        Gate("agreement", ">=", 1.0, "an fp32 conversion must not change any prediction"),
        Gate("max_abs_logit", "<=", 1e-3, "fp32 kernels differ only by summation order"),
    ),
    "fp16": (Gate("agreement", ">=", 0.995, "half precision may flip near-ties only"),),
    "int8": (
        Gate("agreement", ">=", 0.99, "calibrated int8 may flip at most 1% of predictions"),
        Gate("accuracy_drop", "<=", 0.005, "int8 may cost at most 0.5 accuracy point vs its source"),
    ),
}
GATE_METRICS = ("agreement", "max_abs_logit", "max_abs_prob", "accuracy_drop")


@dataclass
class GateSet:
    """The gates in force, per precision."""

    gates: dict[str, list[Gate]] = field(default_factory=lambda: {k: list(v) for k, v in DEFAULT_GATES.items()})

    def override(self, precision: str, metric: str, threshold: float) -> None:
        """Set (or add) the threshold of `metric` for `precision`."""
        if precision not in self.gates:
            raise RecipeError(f"gate precision {precision!r} is unknown; use one of {sorted(self.gates)}")
        if metric not in GATE_METRICS:
            raise RecipeError(f"gate metric {metric!r} is unknown; use one of {list(GATE_METRICS)}")
        rows = self.gates[precision]
        for i, g in enumerate(rows):
            if g.metric == metric:
                rows[i] = Gate(metric, g.op, float(threshold), "overridden")
                return
        op = ">=" if metric == "agreement" else "<="
        rows.append(Gate(metric, op, float(threshold), "added"))

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        return {p: [asdict(g) for g in gs] for p, gs in self.gates.items()}


def evaluate_gates(artifact: str, precision: str, parity: dict[str, Any], gates: GateSet) -> list[dict[str, Any]]:
    """One pass/fail row per gate of `precision`: {artifact, precision, metric, op, threshold, value, passed}.
    `parity` holds the metrics (conversion_parity output plus `accuracy_drop`)."""
    rows = []
    for g in gates.gates.get(precision, []):
        value = parity.get(g.metric)
        passed = value is not None and g.passes(float(value))
        rows.append({"artifact": artifact, "precision": precision, "metric": g.metric, "op": g.op,
                     "threshold": g.threshold, "value": None if value is None else float(value),
                     "passed": bool(passed)})
    return rows


def raise_on_failures(rows: Sequence[dict[str, Any]]) -> None:
    """Raise GateError listing every failed gate row (does nothing when all passed)."""
    failed = [r for r in rows if not r["passed"]]
    if failed:
        parts = [f"{r['artifact']} {r['metric']}={_fmt(r['value'])} (needs {r['op']} {_fmt(r['threshold'])})"
                 for r in failed]
        raise GateError(f"{len(failed)} gate(s) failed: " + "; ".join(parts)
                        + "; inspect the report, re-export, or relax the gate with --gate-<precision>-<metric>")


def _fmt(v: float | None) -> str:
    return "missing" if v is None else f"{v:.6g}"
