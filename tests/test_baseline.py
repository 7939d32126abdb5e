"""TF-IDF + logistic regression baseline: fit on real data, save without pickle, reload exactly."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import read_texts

from edgekd.cli import main
from edgekd.data import DataSpec, load_splits
from edgekd.errors import ModelError
from edgekd.train.baseline import fit_baseline, load_baseline

METRIC_KEYS = {"accuracy", "f1_weighted", "f1_macro", "precision_weighted", "recall_weighted",
               "per_class", "confusion_matrix", "labels"}


@pytest.fixture(scope="module")
def ag_small(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small AG News directory: 1,500 train rows and the first 500 test rows, in file order."""
    root = tmp_path_factory.mktemp("ag_small")
    for split, n in (("train", 1500), ("test", 500)):
        texts, labels = read_texts("ag_news", split, n)
        pd.DataFrame({"text": texts, "label": labels}).to_csv(root / f"{split}.csv", index=False)
    return root


@pytest.mark.parametrize("dataset", ["ag_news", "sst2"])
def test_reloaded_baseline_predicts_exactly_like_sklearn(ag_small: Path, shared_data: Path, tmp_path: Path,
                                                         dataset: str) -> None:
    # 4 classes (multinomial softmax) and 2 classes (sklearn's binary logistic) both round-trip.
    path = ag_small if dataset == "ag_news" else shared_data / "sst2"
    splits = load_splits(DataSpec(str(path), max_train_samples=1500))
    model = fit_baseline(splits.train.texts, splits.train.labels, splits.labels)
    texts = splits.test.texts[:1000]
    expected = model.sklearn_classifier.predict_proba(model.vectorizer.transform(texts))
    model.save(tmp_path)
    reloaded = load_baseline(tmp_path)
    np.testing.assert_allclose(reloaded.predict_proba(texts), expected, rtol=0, atol=1e-12)
    assert reloaded.labels == splits.labels
    accuracy = float((expected.argmax(1) == splits.test.labels[:1000]).mean())
    assert accuracy > 0.7  # chance: 0.25 (ag_news) / 0.5 (sst2)


def test_saved_files_hold_no_pickle(ag_small: Path, tmp_path: Path) -> None:
    splits = load_splits(DataSpec(str(ag_small), max_train_samples=500))
    fit_baseline(splits.train.texts, splits.train.labels, splits.labels).save(tmp_path)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["baseline.json", "vocabulary.json", "weights.npz"]
    with np.load(tmp_path / "weights.npz", allow_pickle=False) as weights:
        assert weights["coef"].shape == (4, len(json.loads((tmp_path / "vocabulary.json").read_text())))
    meta = json.loads((tmp_path / "baseline.json").read_text())
    assert meta["vectorizer"]["ngram_range"] == [1, 2] and meta["labels"] == splits.labels


def test_load_baseline_rejects_other_dirs(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="edgekd baseline"):
        load_baseline(tmp_path)


def test_baseline_cli_writes_metrics_and_plots(ag_small: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "baseline"
    assert main(["baseline", "--data", str(ag_small), "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    metrics = json.loads((out / "metrics.json").read_text())
    assert METRIC_KEYS <= set(metrics) and metrics["n"] == 500
    assert f"{metrics['accuracy']:.4f}" in printed
    assert (out / "confusion_matrix.png").stat().st_size > 5000
    assert (out / "class_distribution.png").stat().st_size > 5000
    texts, names = read_texts("ag_news", "test", 500)
    model = load_baseline(out)
    predicted = [model.labels[i] for i in model.logits(texts).argmax(1)]
    assert metrics["accuracy"] == pytest.approx(np.mean([p == n for p, n in zip(predicted, names, strict=True)]))
    assert metrics["accuracy"] > 0.6
