"""Accuracy control for int8: try quantization settings from the most aggressive to the most
conservative and keep the first that passes the int8 gates of THE gate table
(`edgekd.verify.parity.DEFAULT_GATES`: top-1 agreement with the PyTorch source and accuracy drop;
the macro-F1 drop too for a source selected on macro F1, `parity.SELECTION_GATES`),
measured on the whole validation split (plus held-out train texts for agreement when it is small).

This is the one int8 decision per artifact: the post-export check records the kept artifact's
parity but does not decide again on its smaller sample, and `edgekd verify` gates on the same table.
Backends describe their candidates as data (name, settings) plus a `build` callable; this module
owns the loop and the record, so every backend decides the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekd.verify.parity import (
    GateSet,
    accuracy,  # the one accuracy function; imported from here by the exporters
    conversion_parity,
    describe_agreement,
    evaluate_gates,
    f1_scores,
    paired_drop_interval,
    paired_f1_drop_interval,
)


@dataclass
class Int8Candidate:
    """One int8 setting to try. `build()` writes the artifact and returns its logits [n, num_labels]
    on the decision texts (validation rows first, then the extra agreement rows)."""

    name: str
    settings: dict[str, Any]
    build: Callable[[], np.ndarray]
    # Ops (names or types) this setting leaves in float; may be filled in by `build`.
    float_ops: list[str] = field(default_factory=list)


@dataclass
class Int8Decision:
    """What accuracy control decided for one backend, with the numbers behind it."""

    chosen: Int8Candidate | None
    reference_accuracy: float
    gates: list[dict[str, Any]]  # the int8 gates in force: [{metric, op, threshold}]
    tried: list[dict[str, Any]]
    n_validation: int = 0
    n_agreement: int = 0

    @property
    def chosen_row(self) -> dict[str, Any] | None:
        return next((t for t in self.tried if t["accepted"]), None)

    def record(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen.name if self.chosen else None,
            "reference": "PyTorch source model (fp32), the same reference verify uses",
            "reference_accuracy": self.reference_accuracy,
            "gates": self.gates,
            "n_validation": self.n_validation,
            "n_agreement": self.n_agreement,
            "tried": self.tried,
        }


def rejection_reason(record: dict[str, Any], what: str = "int8 setting") -> str:
    """One line from a decision record (`Int8Decision.record()`): on how many texts accuracy control
    decided and why each setting it tried (`what`: their kind) was rejected."""
    n_val, n = record["n_validation"], record["n_agreement"]
    tried = "; ".join(f"{t['name']}: {t.get('error') or t['failed']}" for t in record["tried"])
    return (f"accuracy control on {n_val} validation + {n - n_val} agreement texts: no {what} passed "
            f"the int8 gates ({tried})")


def measure(logits: np.ndarray, reference_logits: np.ndarray, labels: Sequence[int]) -> dict[str, Any]:
    """The int8 gate metrics of candidate logits vs the reference on the decision texts: agreement
    (with flips, Wilson interval, n) on every row, accuracy and accuracy_drop on the labelled rows."""
    n = len(labels)
    logits, reference_logits = np.asarray(logits), np.asarray(reference_logits)
    par = conversion_parity(logits, reference_logits, max_examples=0)
    del par["flipped"]
    acc, ref_acc = accuracy(logits[:n], labels), accuracy(reference_logits[:n], labels)
    y = np.asarray(labels, dtype=np.int64)
    ref_pred, pred = reference_logits[:n].argmax(1), logits[:n].argmax(1)
    interval = paired_drop_interval(ref_pred == y, pred == y)
    k = logits.shape[1]
    f1, ref_f1 = f1_scores(y, pred, k)["f1_macro"], f1_scores(y, ref_pred, k)["f1_macro"]
    # Macro F1 is always measured and recorded; it is gated when the source was selected on it
    # (the int8 f1_macro_drop gate of parity.SELECTION_GATES).
    return {**par, "accuracy": acc, "reference_accuracy": ref_acc, "accuracy_drop": ref_acc - acc,
            "accuracy_drop_ci": list(interval), "f1_macro": f1, "reference_f1_macro": ref_f1,
            "f1_macro_drop": ref_f1 - f1, "f1_macro_drop_ci": list(paired_f1_drop_interval(y, ref_pred, pred, k)),
            "n_accuracy": n}


def _keeps(row: dict[str, Any]) -> bool:
    """The int8 decision keeps a setting only on measured agreement: the agreement gate must PASS on
    the >= 1,000 decision texts. The other gates must not FAIL: an accuracy drop measured on a small
    labelled split (one text of 120 moves it by 0.83 points) whose 95% interval still reaches the
    budget is INCONCLUSIVE there, and the agreement on every decision text bounds it."""
    return row["verdict"] == "PASS" if row["metric"] == "agreement" else row["passed"]


def select_int8(reference_logits: np.ndarray, labels: Sequence[int], candidates: Sequence[Int8Candidate],
                gates: GateSet | None = None, log: Callable[[str], None] | None = None) -> Int8Decision:
    """Build candidates in order; keep the first whose agreement PASSes its int8 gate and whose other
    int8 gates do not FAIL (`_keeps`).

    reference_logits: the PyTorch source's logits on the decision texts, [n, num_labels]; rows are
    the labelled validation texts first (len(labels) rows, for accuracy), then extra unlabelled texts
    (agreement needs no labels). A candidate whose build raises is recorded as rejected with the
    error and the next one is tried. Returns `chosen=None` when none passes (the caller drops int8
    for that backend and records why)."""
    gates = gates or GateSet()
    n = len(labels)
    reference_accuracy = accuracy(np.asarray(reference_logits)[:n], labels)
    tried: list[dict[str, Any]] = []
    chosen = None
    for cand in candidates:
        try:
            logits = np.asarray(cand.build())
        except Exception as exc:  # a third-party quantizer failing is a rejected setting, not a crash
            tried.append({"name": cand.name, "accepted": False,
                          "error": f"{type(exc).__name__}: {(str(exc).strip().splitlines() or [''])[0]}"})
            if log is not None:
                log(f"int8 {cand.name}: failed to build ({tried[-1]['error']}) -> rejected")
            continue
        metrics = measure(logits, reference_logits, labels)
        rows = evaluate_gates(f"int8 {cand.name}", "int8", metrics, gates)
        failed = [f"{r['metric']} {r['value']:.4g} (needs {r['op']} {r['threshold']:g}"
                  + (", 95% CI {:.4g}-{:.4g})".format(*r["interval"]) if r["interval"] else ")")
                  for r in rows if not _keeps(r)]
        ok = not failed
        tried.append({"name": cand.name, **metrics, "accepted": ok, "failed": "; ".join(failed),
                      "verdicts": {r["metric"]: r["verdict"] for r in rows}})
        if log is not None:
            log(f"int8 {cand.name}: accuracy {metrics['accuracy']:.4f} (source {reference_accuracy:.4f}), macro F1 "
                f"{metrics['f1_macro']:.4f} (source {metrics['reference_f1_macro']:.4f}) on {n}, "
                f"agreement {describe_agreement(metrics)} -> {'kept' if ok else 'rejected'}")
        if ok:
            chosen = cand
            break
    gate_rows = [{"metric": g.metric, "op": g.op, "threshold": g.threshold} for g in gates.gates["int8"]]
    return Int8Decision(chosen, reference_accuracy, gate_rows, tried, n_validation=n,
                        n_agreement=int(len(reference_logits)))
