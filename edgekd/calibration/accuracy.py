"""Accuracy control for int8: try quantization settings from the most aggressive to the most
conservative and keep the first whose validation accuracy drop stays within the budget.

Backends describe their candidates as data (name, settings, ops kept float) plus a `build`
callable; this module owns the loop and the record, so every backend decides the same way.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

DEFAULT_MAX_DROP = 0.005
# The int8 post-export gate is 0.99 top-1 agreement on a small held-out check set; accuracy control
# asks for more on its larger set, so a setting it keeps does not fail the gate by sampling noise.
MIN_AGREEMENT = 0.995


def accuracy(logits: np.ndarray, labels: Sequence[int]) -> float:
    """Top-1 accuracy of logits [n, num_labels] against label ids."""
    labels = np.asarray(labels)
    if len(labels) == 0:
        return float("nan")
    return float((np.asarray(logits).argmax(axis=1) == labels).mean())


@dataclass
class Int8Candidate:
    """One int8 setting to try. `build()` writes the artifact and returns its validation logits
    [n, num_labels]."""

    name: str
    settings: dict[str, Any]
    build: Callable[[], np.ndarray]
    # Ops (names or types) this setting leaves in float; may be filled in by `build`.
    float_ops: list[str] = field(default_factory=list)


@dataclass
class Int8Decision:
    chosen: Int8Candidate | None
    reference_accuracy: float
    max_drop: float
    tried: list[dict[str, Any]]

    def record(self) -> dict[str, Any]:
        return {
            "chosen": self.chosen.name if self.chosen else None,
            "reference_accuracy": self.reference_accuracy,
            "max_accuracy_drop": self.max_drop,
            "tried": self.tried,
        }


def select_int8(reference_logits: np.ndarray, labels: Sequence[int], candidates: Sequence[Int8Candidate],
                max_drop: float = DEFAULT_MAX_DROP, min_agreement: float = MIN_AGREEMENT,
                log: Callable[[str], None] | None = None) -> Int8Decision:
    """Build candidates in order; stop at the first whose validation accuracy drop <= max_drop
    and whose top-1 agreement with the float model >= min_agreement.

    Logits rows: the labelled validation texts first (len(labels) rows, for accuracy), then any
    extra unlabelled texts (agreement needs no labels). Returns `chosen=None` when no candidate
    meets both (the caller keeps the float artifact only and the record says why)."""
    n = len(labels)
    reference_accuracy = accuracy(np.asarray(reference_logits)[:n], labels)
    ref_top1 = np.asarray(reference_logits).argmax(1)
    tried = []
    for cand in candidates:
        logits = np.asarray(cand.build())
        acc = accuracy(logits[:n], labels)
        agreement = float((logits.argmax(1) == ref_top1).mean())
        ok = bool(reference_accuracy - acc <= max_drop + 1e-12 and agreement >= min_agreement)
        tried.append({"name": cand.name, "accuracy": acc, "drop": reference_accuracy - acc,
                      "agreement_with_float": agreement, "n_agreement": int(len(logits)), "accepted": ok})
        if log is not None:
            log(f"int8 {cand.name}: accuracy {acc:.4f} (float {reference_accuracy:.4f}), agreement "
                f"{agreement:.4f} on {len(logits)} texts -> {'kept' if ok else 'rejected'}")
        if ok:
            return Int8Decision(cand, reference_accuracy, max_drop, tried)
    return Int8Decision(None, reference_accuracy, max_drop, tried)
