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


def wilson_interval(successes: int, n: int, z: float = 1.96) -> tuple[float, float]:
    """Wilson score interval (95% for z=1.96) of a proportion successes/n: honest near 0 and 1,
    where the normal approximation gives bounds past 1 (agreement 1.0 on 192 texts is [0.980, 1])."""
    if n <= 0:
        return 0.0, 1.0
    p = successes / n
    denom = 1.0 + z * z / n
    centre = (p + z * z / (2 * n)) / denom
    half = z * np.sqrt(p * (1 - p) / n + z * z / (4 * n * n)) / denom
    # at k = 0 or k = n a bound is exactly 0 or 1 (rounding would leave 1 - 1e-16)
    lo = 0.0 if successes <= 0 else max(0.0, centre - half)
    hi = 1.0 if successes >= n else min(1.0, centre + half)
    return float(lo), float(hi)


def paired_drop_interval(source_correct: np.ndarray, artifact_correct: np.ndarray,
                         z: float = 1.96) -> tuple[float, float]:
    """95% interval of an accuracy drop (source accuracy - artifact accuracy) measured on the same
    labelled texts. Only discordant texts move it: b = right before, wrong after; c = the reverse;
    drop = (b - c) / n with the paired (McNemar) standard error sqrt(b + c - (b - c)^2 / n) / n.
    No discordant text: the drop is exactly 0 on these texts (interval [0, 0])."""
    source_correct, artifact_correct = np.asarray(source_correct, bool), np.asarray(artifact_correct, bool)
    n = len(source_correct)
    if n == 0:
        return -1.0, 1.0
    b = int((source_correct & ~artifact_correct).sum())
    c = int((~source_correct & artifact_correct).sum())
    drop = (b - c) / n
    se = np.sqrt(max(b + c - (b - c) ** 2 / n, 0.0)) / n
    return float(drop - z * se), float(drop + z * se)


def describe_agreement(metrics: dict[str, Any]) -> str:
    """'0.9951 (3 flips of 618; 95% CI 0.9859-0.9983)': an agreement figure with how sure it is."""
    n, flips = int(metrics.get("n", 0)), int(metrics.get("flips", 0))
    lo, hi = metrics.get("agreement_ci") or wilson_interval(n - flips, n)
    return f"{metrics['agreement']:.4f} ({flips} flips of {n}; 95% CI {lo:.4f}-{hi:.4f})"


def conversion_parity(artifact_logits: np.ndarray, source_logits: np.ndarray, max_examples: int = 10) -> dict[str, Any]:
    """Artifact vs the PyTorch model it came from, both logits [n, num_labels] on the same texts.

    Returns max_abs_logit, mean_abs_logit, max_abs_prob (softmax float64), agreement (top-1, 0..1),
    agreement_ci (Wilson 95% interval), flips (count) and flipped (up to `max_examples` row indices
    whose top-1 label differs)."""
    a, s = _check_pair(artifact_logits, source_logits)
    n = a.shape[0]
    if n == 0:
        return {"n": 0, "max_abs_logit": 0.0, "mean_abs_logit": 0.0, "max_abs_prob": 0.0,
                "agreement": 1.0, "agreement_ci": [0.0, 1.0], "flips": 0, "flipped": []}
    diff = np.abs(a.astype(np.float64) - s.astype(np.float64))
    flipped = np.flatnonzero(a.argmax(axis=1) != s.argmax(axis=1))
    return {
        "n": int(n),
        "max_abs_logit": float(diff.max()),
        "mean_abs_logit": float(diff.mean()),
        "max_abs_prob": float(np.abs(softmax(a) - softmax(s)).max()),
        "agreement": float(1.0 - len(flipped) / n),
        "agreement_ci": list(wilson_interval(n - len(flipped), n)),
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


def _f1_from_counts(tp: np.ndarray, support: np.ndarray, predicted: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(per-class F1, mask of the classes macro F1 averages over) from counts [..., num_labels]."""
    denom = support + predicted
    f1 = np.divide(2 * tp, denom, out=np.zeros_like(tp, dtype=np.float64), where=denom > 0)
    return f1, denom > 0


def f1_scores(y_true: np.ndarray, y_pred: np.ndarray, num_labels: int) -> dict[str, Any]:
    """Macro and weighted F1 over `num_labels` classes (a class with no true and no predicted rows
    scores 0 and, for macro, still counts only if it has support or predictions, as sklearn does),
    plus `f1_per_class` and `support` (lists in label-id order)."""
    y_true, y_pred = np.asarray(y_true, dtype=np.int64), np.asarray(y_pred, dtype=np.int64)
    cm = np.zeros((num_labels, num_labels), dtype=np.int64)  # cm[true, pred]
    np.add.at(cm, (y_true, y_pred), 1)
    support = cm.sum(axis=1).astype(np.float64)
    f1, present = _f1_from_counts(np.diag(cm).astype(np.float64), support, cm.sum(axis=0).astype(np.float64))
    macro = float(f1[present].mean()) if present.any() else 0.0
    weighted = float((f1 * support).sum() / support.sum()) if support.sum() else 0.0
    return {"f1_macro": macro, "f1_weighted": weighted, "f1_per_class": [float(x) for x in f1],
            "support": [int(x) for x in support]}


def accuracy(logits: np.ndarray, labels: Sequence[int] | np.ndarray, empty: float | None = float("nan")
             ) -> float | None:
    """Top-1 accuracy of logits [n, num_labels] against label ids [n]; `empty` when there are no rows
    (nan by default: no accuracy was measured). The one accuracy function."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return empty
    return float((np.asarray(logits).argmax(axis=1) == labels).mean())


def accuracy_metrics(logits: np.ndarray, labels: np.ndarray) -> dict[str, Any]:
    """accuracy (0.0 on no rows), f1_macro, f1_weighted, f1_per_class and support of logits
    [n, num_labels] against true label ids [n]."""
    logits = np.asarray(logits)
    labels = np.asarray(labels, dtype=np.int64)
    pred = logits.argmax(axis=1)
    return {"accuracy": accuracy(logits, labels, empty=0.0), **f1_scores(labels, pred, logits.shape[1])}


def paired_f1_drop_interval(y_true: np.ndarray, source_pred: np.ndarray, artifact_pred: np.ndarray,
                            num_labels: int, resamples: int = 1000, seed: int = 0) -> tuple[float, float]:
    """95% interval of a macro-F1 drop (source - artifact) on the same labelled texts: a paired
    percentile bootstrap (both models scored on each resample of the texts). Macro F1 has no closed-form
    variance. No text predicted differently: the drop is exactly 0 on these texts (interval [0, 0])."""
    y, a, b = (np.asarray(v, dtype=np.int64) for v in (y_true, source_pred, artifact_pred))
    n = len(y)
    if n == 0:
        return -1.0, 1.0
    if np.array_equal(a, b):
        return 0.0, 0.0
    rows = np.random.default_rng(seed).integers(0, n, size=(resamples, n))  # [resamples, n]

    offset = num_labels * np.arange(resamples)[:, None]  # each resample counts into its own row
    size = resamples * num_labels

    def macro(pred: np.ndarray) -> np.ndarray:  # macro F1 of each resample, [resamples]
        yt, pt = y[rows] + offset, pred[rows] + offset
        support = np.bincount(yt.ravel(), minlength=size).reshape(resamples, num_labels)
        predicted = np.bincount(pt.ravel(), minlength=size).reshape(resamples, num_labels)
        tp = np.bincount(yt.ravel(), weights=(yt == pt).ravel(), minlength=size).reshape(resamples, num_labels)
        f1, present = _f1_from_counts(tp, support.astype(np.float64), predicted.astype(np.float64))
        return (f1 * present).sum(axis=1) / np.maximum(present.sum(axis=1), 1)

    drops = macro(a) - macro(b)
    return float(np.percentile(drops, 2.5)), float(np.percentile(drops, 97.5))


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
        "agreement_ci": list(wilson_interval(n - flips, n)),
        "n": int(n),
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


# The int8 accuracy budget: the one place it is written (accuracy control, the post-export record,
# verify, the recipe default and the CLI default all read it from here).
INT8_MAX_ACCURACY_DROP = 0.005

# The int8 macro-F1 budget, gated when the model was selected on macro F1 (SELECTION_GATES): twice the
# accuracy budget, because macro F1 weighs a 30-text class like a 3,000-text one, so it moves more per
# flipped text (one text of a 30-text class moves that class's F1 by ~3 points, macro F1 by 3/K).
INT8_MAX_F1_MACRO_DROP = 2 * INT8_MAX_ACCURACY_DROP

# THE gate table. Accuracy control (int8 decision on the validation split), the post-export check
# (fp32/fp16 vs PyTorch on held-out texts) and `edgekd verify` (every artifact on the test split)
# all read their thresholds from here; a recipe or `--gate-<precision>-<metric>` flags override them.
DEFAULT_GATES: dict[str, tuple[Gate, ...]] = {
    "fp32": (
        Gate("agreement", ">=", 1.0, "an fp32 conversion must not change any prediction"),
        Gate("max_abs_logit", "<=", 1e-3, "fp32 kernels differ only by summation order"),
    ),
    "fp16": (
        Gate("agreement", ">=", 0.995, "half precision may flip near-ties only"),
        Gate("max_abs_logit", "<=", 0.05, "fp16 keeps ~3 significant digits: a sound conversion of logits "
                                          "|x| < 20 drifts < 0.05; a broken op (overflowed mask) by whole units"),
    ),
    "int8": (
        Gate("agreement", ">=", 0.99, "calibrated int8 may flip at most 1% of predictions"),
        Gate("accuracy_drop", "<=", INT8_MAX_ACCURACY_DROP,
             f"int8 may cost at most {INT8_MAX_ACCURACY_DROP * 100:g} accuracy point vs its source"),
    ),
}
GATE_METRICS = ("agreement", "max_abs_logit", "max_abs_prob", "accuracy_drop", "f1_macro_drop")

# Gates added to the table for a model whose best checkpoint was selected on a metric (its card's
# `select_metric`, `edgekd train/distill --select-metric`): what it was selected on, int8 must keep.
SELECTION_GATES: dict[str, dict[str, tuple[Gate, ...]]] = {
    "f1_macro": {"int8": (Gate("f1_macro_drop", "<=", INT8_MAX_F1_MACRO_DROP,
                               f"selected on macro F1: int8 may cost at most {INT8_MAX_F1_MACRO_DROP * 100:g} macro-F1 point "
                               "vs its source"),)},
}


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

    def copy(self) -> GateSet:
        """An independent copy (overrides on it leave this set as it is)."""
        return GateSet({p: list(gs) for p, gs in self.gates.items()})

    def select_on(self, metric: str | None) -> GateSet:
        """Add the gates of SELECTION_GATES[metric] (a model selected on that metric); a gate the user
        already set on the same metric is kept. Returns self."""
        for precision, extra in SELECTION_GATES.get(metric or "", {}).items():
            rows = self.gates.setdefault(precision, [])
            rows += [g for g in extra if all(r.metric != g.metric for r in rows)]
        return self

    def threshold(self, precision: str, metric: str) -> float:
        """The threshold of `metric` for `precision` (RecipeError naming the fix when none is set)."""
        for g in self.gates.get(precision, []):
            if g.metric == metric:
                return g.threshold
        raise RecipeError(f"no {precision} gate on {metric}; set one with --gate-{precision}-{metric.replace('_', '-')} X")

    def to_dict(self) -> dict[str, list[dict[str, Any]]]:
        return {p: [asdict(g) for g in gs] for p, gs in self.gates.items()}


# The 95% interval a metric carries in a parity row (a metric without one is exact on its texts).
INTERVAL_OF = {"agreement": "agreement_ci", "accuracy_drop": "accuracy_drop_ci", "f1_macro_drop": "f1_macro_drop_ci"}


def evaluate_gates(artifact: str, precision: str, parity: dict[str, Any], gates: GateSet) -> list[dict[str, Any]]:
    """One row per gate of `precision`: {artifact, precision, metric, op, threshold, value, interval,
    verdict, passed}. `parity` holds the metrics (conversion_parity output plus `accuracy_drop` and
    their 95% intervals). A precision with no gate is an error, never a pass (a metric the parity row
    lacks fails its gate).

    verdict: PASS when the measured value meets the gate; FAIL when it does not and its 95% interval
    lies wholly beyond the threshold too (the data show the artifact misses the gate); INCONCLUSIVE
    when the value misses but the interval still reaches the threshold (too few texts to tell: more
    texts decide). `passed` is `verdict != "FAIL"`: a gate fails a command only on evidence."""
    if not gates.gates.get(precision):
        raise GateError(f"no gate is defined for precision {precision!r} of {artifact or 'this artifact'} "
                        f"(gated precisions: {', '.join(p for p, g in gates.gates.items() if g)}); "
                        f"add one with --gate-{precision}-agreement X, or in the recipe's gates")
    rows = []
    for g in gates.gates[precision]:
        value = parity.get(g.metric)
        interval = parity.get(INTERVAL_OF.get(g.metric, ""))
        if value is not None and g.passes(float(value)):
            verdict = "PASS"
        elif value is not None and interval is not None and g.passes(interval[1] if g.op == ">=" else interval[0]):
            verdict = "INCONCLUSIVE"  # the interval's best side still meets the gate
        else:
            verdict = "FAIL"
        rows.append({"artifact": artifact, "precision": precision, "metric": g.metric, "op": g.op,
                     "threshold": g.threshold, "value": None if value is None else float(value),
                     "interval": None if interval is None else [float(x) for x in interval],
                     "verdict": verdict, "passed": verdict != "FAIL"})
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
