"""Calibration sets for int8 quantization: a stratified, length-aware, seeded sample of the
training split, recorded in the manifest so an int8 artifact can be reproduced.

Accuracy control (keep int8 only if validation accuracy stays within a drop budget) lives in
`edgekd.calibration.accuracy`.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from edgekd.data import stratified_sample
from edgekd.errors import DataError

DEFAULT_SIZE = 300
DEFAULT_SEED = 0
# Token-length bins are quantiles of the pool: 4 bins give short / medium / long / longest texts
# their share, so activation ranges see the long sequences too.
LENGTH_BINS = 4


@dataclass
class CalibrationSet:
    """Texts (and their label ids) picked for calibration, plus the record for the manifest."""

    texts: list[str]
    labels: list[int]
    record: dict[str, Any] = field(default_factory=dict)


def length_bin_edges(lengths: Sequence[int], n_bins: int = LENGTH_BINS) -> list[int]:
    """Inner quantile edges of the token-length distribution (deduplicated, ascending)."""
    if len(lengths) == 0:
        return []
    qs = np.quantile(np.asarray(lengths), np.linspace(0, 1, n_bins + 1)[1:-1])
    return sorted({int(round(q)) for q in qs})


def sample_calibration(texts: Sequence[str], labels: Sequence[int], lengths: Sequence[int],
                       size: int = DEFAULT_SIZE, seed: int = DEFAULT_SEED,
                       label_names: Sequence[str] | None = None) -> CalibrationSet:
    """Pick `size` texts stratified by (label, token-length bin), deterministically for a seed.

    texts/labels/lengths: the pool (the train split), `lengths` in tokens after truncation.
    """
    if not (len(texts) == len(labels) == len(lengths)):
        raise DataError(f"calibration pool sizes differ: {len(texts)} texts, {len(labels)} labels, "
                        f"{len(lengths)} lengths; pass one label and one length per text")
    if size <= 0:
        raise DataError(f"--calibration-size must be positive, got {size}; use e.g. 300")
    if len(texts) == 0:
        raise DataError("the calibration pool is empty; pass --calibration-data with a non-empty train split")
    size = min(size, len(texts))
    edges = length_bin_edges(lengths)
    bins = np.searchsorted(np.asarray(edges), np.asarray(lengths), side="right")
    strata = [(int(lab), int(b)) for lab, b in zip(labels, bins, strict=True)]
    picked = stratified_sample(strata, size, seed, method="largest_remainder").tolist()
    chosen_texts = [texts[i] for i in picked]
    chosen_labels = [int(labels[i]) for i in picked]
    return CalibrationSet(chosen_texts, chosen_labels,
                          _record(chosen_texts, chosen_labels, [int(bins[i]) for i in picked], edges,
                                  seed, len(texts), label_names))


def _record(texts: list[str], labels: list[int], bins: list[int], edges: list[int], seed: int,
            pool_size: int, label_names: Sequence[str] | None) -> dict[str, Any]:
    names = list(label_names) if label_names is not None else None
    label_counts: dict[str, int] = {}
    for lab in labels:
        key = names[lab] if names is not None and 0 <= lab < len(names) else str(lab)
        label_counts[key] = label_counts.get(key, 0) + 1
    h = hashlib.sha256()
    for t, lab in zip(texts, labels, strict=True):
        h.update(t.encode("utf-8") + b"\0" + str(lab).encode() + b"\n")
    return {
        "size": len(texts),
        "pool_size": pool_size,
        "seed": seed,
        "strategy": "stratified by label and token-length bin (quantile edges), seeded",
        "label_counts": dict(sorted(label_counts.items())),
        "length_bin_edges": edges,
        "length_bin_counts": [bins.count(b) for b in range(len(edges) + 1)],
        "fingerprint": h.hexdigest(),
    }
