"""The embedding map of a verify report: the PyTorch student's embeddings of the test texts in 2-D.

A text's embedding is what the student's classification head reads: for BERT the pooler output
(the input of `classifier`), for heads that read the whole sequence (RoBERTa, MPNet) the first
([CLS]) token's hidden state. A forward pre-hook captures it during the pass that computes the
student's logits, so it costs no second pass. At most `MAX_POINTS` texts (a seeded sample) are
projected to 2-D with PCA: instant and deterministic, where UMAP (umap-learn) took 37 s to import and
fit 2,000 points in a fresh process (numba compiling) and t-SNE 48 s, on two busy cores
(docs/architecture.md).

The map is stored on the student's model row of the report (`models[i].embedding_map`):
`{method, n, rows, points: [[x, y], ...], labels, predicted, explained_variance}`, where `rows`
index the report's test texts and `labels`/`predicted` index `bundle.labels`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np

from edgekd.blas import blas_threads
from edgekd.errors import EdgekdError

METHOD = "pca"
# Points drawn at most: enough to see the classes' shapes, few enough that the map stays cheap and
# the report small (about 85 kB of JSON at 2,000).
MAX_POINTS = 2000
SEED = 0
# Significant digits kept per coordinate: finer than any chart shows.
DIGITS = 5
# Where transformers' *ForSequenceClassification models keep their classification head.
HEAD_NAMES = ("classifier", "score")


@contextlib.contextmanager
def capture_head_inputs(model: Any) -> Iterator[list[np.ndarray]]:
    """While the block runs, append what `model`'s classification head reads on each forward call
    to the yielded list, one float32 [batch, hidden] array per call (nothing when the model has no
    head under `HEAD_NAMES`)."""
    batches: list[np.ndarray] = []
    head = next((getattr(model, n) for n in HEAD_NAMES
                 if hasattr(getattr(model, n, None), "register_forward_pre_hook")), None)
    if head is None:
        yield batches
        return

    def hook(module: Any, args: tuple[Any, ...]) -> None:
        x = args[0]  # [batch, hidden], or [batch, seq, hidden] for heads that read the sequence
        if x.dim() == 3:
            x = x[:, 0, :]  # such heads classify from the first ([CLS]) token
        batches.append(x.detach().float().cpu().numpy())

    handle = head.register_forward_pre_hook(hook)
    try:
        yield batches
    finally:
        handle.remove()


def embedding_map(batches: Sequence[np.ndarray], labels: np.ndarray, predicted: np.ndarray,
                  max_points: int = MAX_POINTS, seed: int = SEED) -> dict[str, Any] | None:
    """The report's map of the embeddings in `batches` (rows in test-text order; `labels` and
    `predicted` are [n] label ids), or None when there is nothing to draw (no head captured, or
    fewer than 3 texts). At most `max_points` rows, a seeded sample kept in test-text order."""
    if not batches or len(labels) < 3:
        return None
    pooled = np.concatenate(batches)  # [n, hidden]
    n = len(labels)
    if len(pooled) != n:
        raise EdgekdError(f"the student's classification head was called for {len(pooled)} texts, not the {n} "
                          "test texts; verify cannot map its embeddings (report this model's architecture)")
    rows = np.arange(n)
    if n > max_points:
        rows = np.sort(np.random.default_rng(seed).choice(n, size=max_points, replace=False))
    points, explained = _pca_2d(pooled[rows])
    return {"method": METHOD, "n": n, "rows": rows.tolist(),
            "points": [[_round(x), _round(y)] for x, y in points],
            "labels": np.asarray(labels)[rows].astype(int).tolist(),
            "predicted": np.asarray(predicted)[rows].astype(int).tolist(),
            "explained_variance": [_round(v) for v in explained]}


def _pca_2d(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(points [n, 2], explained variance ratio of the two components): PCA from the eigenvectors
    of the [hidden, hidden] covariance, each axis signed so that its largest loading is positive
    (scikit-learn's convention), so the map is the same on every run. Cheaper than an SVD of the
    [n, hidden] rows (scikit-learn's full SVD of 2,000 x 384 took 5 s on two busy cores); under one
    BLAS thread, as two OpenBLAS threads made the eigh itself ~100x slower (3.5 s) there."""
    centred = x.astype(np.float64) - x.mean(axis=0)
    with blas_threads(1):
        values, vectors = np.linalg.eigh(centred.T @ centred)  # ascending eigenvalues, vectors in columns
    top = vectors[:, ::-1][:, :2]  # [hidden, 2]
    top = top * np.sign(top[np.abs(top).argmax(axis=0), [0, 1]])
    total = values.sum()
    ratio = values[::-1][:2] / total if total > 0 else np.zeros(2)  # all rows equal: no variance to explain
    return centred @ top, ratio


def _round(v: float) -> float:
    return float(f"{float(v):.{DIGITS}g}")
