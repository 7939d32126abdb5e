"""edgekd.metrics against hand-computed values; the table and the PNGs."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from edgekd.metrics import classification_metrics, evaluate_logits, print_metrics, write_metrics

LABELS = ["a", "b", "c"]
Y_TRUE = np.array([0, 0, 0, 1, 1, 2])
Y_PRED = np.array([0, 0, 1, 1, 2, 2])


def test_metrics_match_hand_computed_values() -> None:
    m = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    assert m["confusion_matrix"] == [[2, 1, 0], [0, 1, 1], [0, 0, 1]]
    assert m["accuracy"] == pytest.approx(4 / 6)
    assert m["f1_macro"] == pytest.approx((0.8 + 0.5 + 2 / 3) / 3)
    assert m["f1_weighted"] == pytest.approx((3 * 0.8 + 2 * 0.5 + 2 / 3) / 6)
    assert m["precision_macro"] == pytest.approx(2 / 3)
    assert m["precision_weighted"] == pytest.approx(0.75)
    assert m["recall_weighted"] == pytest.approx(4 / 6)
    assert m["recall_macro"] == pytest.approx((2 / 3 + 0.5 + 1) / 3)
    assert m["per_class"]["a"] == {"precision": 1.0, "recall": pytest.approx(2 / 3), "f1": pytest.approx(0.8),
                                   "support": 3, "tp": 2, "fp": 0, "fn": 1, "tn": 3}
    assert m["per_class"]["c"] == {"precision": 0.5, "recall": 1.0, "f1": pytest.approx(2 / 3),
                                   "support": 1, "tp": 1, "fp": 1, "fn": 0, "tn": 4}
    assert m["labels"] == LABELS and m["n"] == 6


def test_a_label_never_seen_scores_zero_not_nan() -> None:
    m = classification_metrics(np.array([0, 1, 0]), np.array([0, 1, 1]), ["x", "y", "z"])
    assert m["per_class"]["z"] == {"precision": 0.0, "recall": 0.0, "f1": 0.0, "support": 0,
                                   "tp": 0, "fp": 0, "fn": 0, "tn": 3}
    assert json.loads(json.dumps(m)) == m  # JSON-safe: plain ints and floats


def test_evaluate_logits_uses_argmax_and_checks_shape() -> None:
    logits = np.eye(3, dtype=np.float32)[Y_PRED] * 5 - 1  # [6, 3], argmax = Y_PRED
    m = evaluate_logits(logits, Y_TRUE, LABELS)
    assert m["accuracy"] == pytest.approx(4 / 6) and len(m["logits_sha256"]) == 64
    with pytest.raises(ValueError, match=r"\(6, 4\)"):
        evaluate_logits(logits, Y_TRUE, LABELS + ["d"])


def test_write_metrics_writes_json_and_pngs(tmp_path: Path) -> None:
    from matplotlib.image import imread

    m = classification_metrics(Y_TRUE, Y_PRED, LABELS)
    path = write_metrics(m, tmp_path, {"train": {"a": 5, "b": 3, "c": 1}, "test": {"a": 3, "b": 2, "c": 1}})
    assert json.loads(path.read_text()) == m
    for name in ("confusion_matrix.png", "class_distribution.png"):
        image = imread(tmp_path / name)
        assert image.shape[0] > 300 and image.shape[1] > 300
        assert image[..., :3].std() > 0.05  # something was drawn


def test_print_metrics_table_shows_the_numbers() -> None:
    from rich.console import Console

    console = Console(record=True, width=140)
    print_metrics(classification_metrics(Y_TRUE, Y_PRED, LABELS), console=console)
    text = console.export_text()
    assert "0.6667" in text and "0.6556" in text  # accuracy, macro F1
    assert "│ a " in text and "0.8000" in text
