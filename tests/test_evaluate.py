"""`edgekd evaluate`: the numbers are right (recomputed independently from raw logits), for a
checkpoint and a baseline dir; bad input is a one-line error with exit 2."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import read_texts

from edgekd.cli import main

N_TEST = 300


@pytest.fixture(scope="module")
def ag_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """AG News: 400 train rows and the first N_TEST test rows, in file order."""
    root = tmp_path_factory.mktemp("ag_eval")
    for split, n in (("train", 400), ("test", N_TEST)):
        texts, labels = read_texts("ag_news", split, n)
        pd.DataFrame({"text": texts, "label": labels}).to_csv(root / f"{split}.csv", index=False)
    return root


@pytest.fixture(scope="module")
def centred_tiny(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_bert with its classifier bias centred on real AG News train texts, so its argmax varies
    by text (the raw random model predicts one class for everything: a weak check of F1)."""
    import shutil

    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    out = tmp_path_factory.mktemp("tiny_centred")
    shutil.copytree(tiny_bert, out, dirs_exist_ok=True)
    tokenizer = AutoTokenizer.from_pretrained(out)
    model = AutoModelForSequenceClassification.from_pretrained(out).eval()
    texts, _ = read_texts("ag_news", "train", 200)
    with torch.no_grad():
        enc = tokenizer(texts, truncation=True, max_length=128, padding=True, return_tensors="pt")
        logits = model(**enc).logits  # [200, 4]
        model.classifier.bias -= logits.mean(0)
    model.save_pretrained(out)
    return out


def _independent_logits(model_dir: Path, texts: list[str], batch_size: int = 32) -> np.ndarray:
    """Raw logits straight from transformers, in dataset order (no edgekd code)."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(model_dir)
    model = AutoModelForSequenceClassification.from_pretrained(model_dir).eval()
    rows = []
    with torch.no_grad():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(texts[i : i + batch_size], truncation=True, max_length=128, padding=True,
                            return_tensors="pt")
            rows.append(model(**enc).logits.numpy())
    return np.concatenate(rows).astype(np.float32)


def _numpy_scores(y_true: np.ndarray, y_pred: np.ndarray, k: int) -> dict[str, float | np.ndarray]:
    """Accuracy, macro and weighted F1 and the confusion matrix in plain numpy."""
    cm = np.zeros((k, k), dtype=np.int64)
    np.add.at(cm, (y_true, y_pred), 1)
    tp = np.diag(cm).astype(float)
    predicted, support = cm.sum(0).astype(float), cm.sum(1).astype(float)
    precision = np.divide(tp, predicted, out=np.zeros(k), where=predicted > 0)
    recall = np.divide(tp, support, out=np.zeros(k), where=support > 0)
    denom = precision + recall
    f1 = np.divide(2 * precision * recall, denom, out=np.zeros(k), where=denom > 0)
    return {"accuracy": float((y_true == y_pred).mean()), "f1_macro": float(f1.mean()),
            "f1_weighted": float((f1 * support).sum() / support.sum()), "cm": cm}


def test_checkpoint_numbers_are_right(centred_tiny: Path, ag_dir: Path, tmp_path: Path,
                                      capsys: pytest.CaptureFixture) -> None:
    assert main(["evaluate", str(centred_tiny), "--data", str(ag_dir), "--out", str(tmp_path)]) == 0
    metrics = json.loads((tmp_path / "metrics.json").read_text())
    config = json.loads((centred_tiny / "config.json").read_text())
    labels = [config["id2label"][str(i)] for i in range(len(config["id2label"]))]
    texts, names = read_texts("ag_news", "test", N_TEST)
    y_true = np.array([labels.index(n) for n in names])
    logits = _independent_logits(centred_tiny, texts)  # [N_TEST, 4]
    expected = _numpy_scores(y_true, logits.argmax(1), len(labels))

    assert metrics["labels"] == labels == ["World", "Sports", "Business", "Sci/Tech"]  # checkpoint order
    assert metrics["n"] == N_TEST
    assert metrics["logits_sha256"] == hashlib.sha256(logits.tobytes()).hexdigest()  # same rows, same order
    assert metrics["accuracy"] == pytest.approx(expected["accuracy"], abs=1e-12)
    assert metrics["f1_macro"] == pytest.approx(expected["f1_macro"], abs=1e-12)
    assert metrics["f1_weighted"] == pytest.approx(expected["f1_weighted"], abs=1e-12)
    assert metrics["confusion_matrix"] == expected["cm"].tolist()
    assert len(set(logits.argmax(1).tolist())) > 1  # the random model is not constant: a real check
    assert f"{metrics['accuracy']:.4f}" in capsys.readouterr().out
    assert (tmp_path / "confusion_matrix.png").is_file() and (tmp_path / "class_distribution.png").is_file()


def test_baseline_dir_evaluates_with_its_recorded_data(ag_dir: Path, tmp_path: Path) -> None:
    baseline = tmp_path / "baseline"
    assert main(["baseline", "--data", str(ag_dir), "--out", str(baseline)]) == 0
    assert main(["evaluate", str(baseline), "--out", str(tmp_path / "eval")]) == 0  # no --data
    written = json.loads((baseline / "metrics.json").read_text())
    evaluated = json.loads((tmp_path / "eval" / "metrics.json").read_text())
    assert evaluated["logits_sha256"] == written["logits_sha256"]
    for key in ("accuracy", "f1_macro", "f1_weighted", "confusion_matrix", "per_class", "labels"):
        assert evaluated[key] == written[key]


def _error(argv: list[str], capsys: pytest.CaptureFixture) -> str:
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("edgekd evaluate: error:")
    return err


def test_evaluate_errors(tiny_bert: Path, ag_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert "is not a directory" in _error(["evaluate", str(tmp_path / "missing"), "--data", str(ag_dir)], capsys)
    assert "neither baseline.json nor config.json" in _error(["evaluate", str(tmp_path), "--data", str(ag_dir)],
                                                            capsys)
    assert "pass --data" in _error(["evaluate", str(tiny_bert), "--out", str(tmp_path)], capsys)
    other = tmp_path / "other"
    other.mkdir()
    pd.DataFrame({"text": [f"text {i}" for i in range(30)], "label": ["World", "Cats", "Sports"] * 10}).to_csv(
        other / "train.csv", index=False)
    pd.DataFrame({"text": ["x y"], "label": ["World"]}).to_csv(other / "test.csv", index=False)
    assert "'Cats'" in _error(["evaluate", str(tiny_bert), "--data", str(other), "--out", str(tmp_path)], capsys)
