"""Small, imbalanced data (issue 19): class weights, the `auto` decisions, checkpoint selection on
macro F1, the int8 macro-F1 gate, and the reviewer's warnings in the CLI and the report."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import AG_LABELS, read_texts

from edgekd.metrics import ModelScores, review, scores_from_metrics
from edgekd.train.imbalance import (
    IMBALANCE_RATIO,
    best_epoch,
    class_weights,
    plan_training,
    schedule,
)


def test_weighted_cross_entropy_and_kd_loss_equal_hand_computation() -> None:
    import torch

    from edgekd.train.common import cross_entropy
    from edgekd.train.distill import kd_loss

    logits = torch.tensor([[2.0, 0.5, -1.0], [0.1, 0.2, 0.3], [-0.5, 1.5, 0.0], [1.0, 1.0, 3.0]])
    labels = torch.tensor([0, 2, 1, 2])
    weights = [0.5, 2.0, 1.5]  # per class
    # by hand: ce_i = logsumexp(z_i) - z_i[y_i]; weighted mean = sum w[y_i] ce_i / sum w[y_i]
    ce = [math.log(sum(math.exp(v) for v in row)) - row[y] for row, y in zip(logits.tolist(), labels.tolist(),
                                                                            strict=True)]
    w = [weights[y] for y in labels.tolist()]
    expected = sum(wi * ci for wi, ci in zip(w, ce, strict=True)) / sum(w)
    got = cross_entropy(logits, labels, torch.tensor(weights))
    assert float(got) == pytest.approx(expected, rel=1e-6)
    assert float(cross_entropy(logits, labels)) == pytest.approx(sum(ce) / 4, rel=1e-6)

    # The KD loss weights the cross-entropy part only: alpha * T^2 * KL + (1 - alpha) * weighted CE.
    teacher = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, 2.0, 0.0], [0.5, 0.5, 0.5]])
    t, alpha = 2.0, 0.3

    def softmax(row: list[float]) -> list[float]:
        e = [math.exp(v / t) for v in row]
        return [v / sum(e) for v in e]

    kl = sum(sum(p * math.log(p / q) for p, q in zip(softmax(tr), softmax(sr), strict=True))
             for tr, sr in zip(teacher.tolist(), logits.tolist(), strict=True)) / 4
    loss = kd_loss(logits, teacher, labels, t, alpha, torch.tensor(weights))
    assert float(loss) == pytest.approx(alpha * t * t * kl + (1 - alpha) * expected, rel=1e-5)


def test_class_weights_balanced_and_sqrt() -> None:
    counts = np.array([2419, 110, 500])
    n, k = counts.sum(), len(counts)
    balanced = class_weights(counts, "balanced")
    assert balanced == pytest.approx(n / (k * counts))  # scikit-learn's "balanced"
    sqrt = class_weights(counts, "sqrt")
    assert sqrt[1] / sqrt[0] == pytest.approx(math.sqrt(2419 / 110))
    for w in (balanced, sqrt):  # mean weight over training rows is 1: the loss keeps its scale
        assert float((w * counts).sum()) == pytest.approx(n)
    assert class_weights(counts, "none") is None
    assert class_weights(np.array([10, 0, 5]), "balanced")[1] == 0.0


def test_auto_decisions_follow_the_class_ratio_and_the_row_count() -> None:
    labels = ["a", "b", "c"]
    imbalanced = np.array([0] * 2000 + [1] * 600 + [2] * 60)
    plan = plan_training(imbalanced, labels, batch_size=32)
    assert plan.class_weight == "balanced" and plan.select_metric == "f1_macro"
    assert plan.numbers["imbalance_ratio"] == pytest.approx(2000 / 60, rel=1e-3)
    assert plan.epochs == 12 and plan.warmup_ratio == 0.1  # 2,660 rows = 84 steps/epoch: 12 epochs >= 1,000 steps
    assert "2000/60" in plan.reasons["class_weight"]

    balanced = np.array([0, 1, 2] * 7000)
    plan = plan_training(balanced, labels, batch_size=32)
    assert plan.class_weight == "none" and plan.weights is None and plan.select_metric == "accuracy"
    assert (plan.epochs, plan.warmup_ratio) == (3.0, 0.06)
    # At the threshold: not imbalanced; just above it: imbalanced.
    at = np.array([0] * 250 + [1] * 100 + [2] * 100)
    assert plan_training(at, labels, 32).class_weight == "none" and IMBALANCE_RATIO == 2.5
    assert plan_training(np.array([0] * 251 + [1] * 100 + [2] * 100), labels, 32).class_weight == "balanced"
    # What the user sets is kept; only `auto` is decided.
    plan = plan_training(imbalanced, labels, 32, class_weight="none", select_metric="accuracy", epochs=2.0,
                         warmup_ratio=0.0, patience=0)
    assert (plan.class_weight, plan.select_metric, plan.epochs, plan.warmup_ratio, plan.patience) == \
        ("none", "accuracy", 2.0, 0.0, 0) and plan.reasons == {}
    assert schedule(100, 32)[0] == 15 and schedule(1_000_000, 32)[0] == 3


def test_selection_keeps_the_epoch_with_the_best_metric_on_a_fake_history() -> None:
    history = [{"loss": 1.0, "epoch": 1.0},
               {"eval_accuracy": 0.80, "eval_f1_macro": 0.40, "epoch": 1.0, "step": 10},
               {"eval_accuracy": 0.78, "eval_f1_macro": 0.55, "epoch": 2.0, "step": 20},
               {"eval_accuracy": 0.79, "eval_f1_macro": 0.55, "epoch": 3.0, "step": 30}]
    assert best_epoch(history, "accuracy")["epoch"] == 1.0
    best = best_epoch(history, "f1_macro")
    assert best["epoch"] == 2.0 and best["f1_macro"] == 0.55  # a tie keeps the earlier epoch
    assert best["validation"] == {"accuracy": 0.78, "f1_macro": 0.55}
    assert best_epoch([{"loss": 1.0}], "accuracy") is None


def _imbalanced_dataset(root: Path) -> Path:
    """AG News rows with 120 / 40 / 20 / 12 training rows per class and a 100-row test split."""
    import csv

    texts, names = read_texts("ag_news", "train", 3000)
    quota = dict(zip(AG_LABELS, (120, 40, 20, 12), strict=True))
    rows = []
    for t, n in zip(texts, names, strict=True):
        if quota[n] > 0:
            quota[n] -= 1
            rows.append((t, n))
    root.mkdir(parents=True)
    for split, data in (("train", rows), ("test", list(zip(*read_texts("ag_news", "test", 100), strict=True)))):
        with open(root / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows([("text", "label"), *data])
    return root


def test_train_selects_the_checkpoint_with_the_best_validation_macro_f1(tiny_bert: Path, tmp_path: Path) -> None:
    import torch

    from edgekd.cli import main
    from edgekd.train.common import evaluate_checkpoint
    from edgekd.train.infer import load_checkpoint

    data = _imbalanced_dataset(tmp_path / "data")
    out = tmp_path / "teacher"
    argv = ["train", "--data", str(data), "--model", str(tiny_bert), "--out", str(out), "--epochs", "4",
            "--lr", "3e-3", "--batch-size", "16", "--max-length", "32", "--patience", "0", "--no-progress"]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # a 32-wide model gains nothing from threads on shared cores (see conftest)
    try:
        assert main(argv) == 0
    finally:
        torch.set_num_threads(threads)
    card = json.loads((out / "edgekd-model.json").read_text())
    d = card["decisions"]
    assert d["class_weight"] == "balanced" and d["select_metric"] == "f1_macro" == card["select_metric"]
    counts = list(d["train_class_counts"].values())
    rarest, commonest = counts.index(min(counts)), counts.index(max(counts))
    assert d["class_weights"][rarest] > d["class_weights"][commonest] and d["epochs"] == 4.0
    history = card["validation_history"]
    assert len(history) == 4
    best = max(history, key=lambda h: h["f1_macro"])  # first maximum, as the Trainer keeps it
    assert card["best_validation"]["epoch"] == best["epoch"]
    # The checkpoint written is that epoch's: its validation macro F1 is the best one.
    from edgekd.data import DataSpec, load_splits

    splits = load_splits(DataSpec(path=str(data)), labels=card["labels"])
    model, tokenizer = load_checkpoint(out)
    metrics, _ = evaluate_checkpoint(model, tokenizer, splits.validation.texts, splits.validation.labels,
                                     card["labels"], 32)
    assert metrics["f1_macro"] == pytest.approx(best["f1_macro"], abs=1e-6)


@pytest.mark.parametrize("flag, value, message", [
    ("--patience", "-1", "--patience must be >= 0"),
    ("--warmup-ratio", "1.5", "--warmup-ratio must be in [0, 1)"),
])
def test_train_rejects_bad_imbalance_flags_before_loading(tmp_path: Path, capsys: pytest.CaptureFixture,
                                                          flag: str, value: str, message: str) -> None:
    from edgekd.cli import main

    argv = ["train", "--data", str(tmp_path / "missing"), "--out", str(tmp_path / "out"), flag, value]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1


def _metrics(f1: list[float], support: list[int], accuracy: float) -> dict:
    labels = [f"c{i}" for i in range(len(f1))]
    return {"accuracy": accuracy, "f1_macro": float(np.mean(f1)),
            "per_class": {lab: {"f1": f, "support": n} for lab, f, n in zip(labels, f1, support, strict=True)}}


def test_warnings_fire_on_a_crafted_metrics_file_and_stay_silent_on_a_balanced_one(tmp_path: Path) -> None:
    # The user's case: the teacher beats the baseline on accuracy but never predicts two classes right.
    teacher_file = tmp_path / "metrics.json"
    teacher_file.write_text(json.dumps(_metrics([0.9, 0.8, 0.0, 0.0, 0.0], [500, 300, 40, 12, 6], 0.730)))
    teacher = scores_from_metrics("teacher", "teacher", json.loads(teacher_file.read_text()))
    baseline = scores_from_metrics("baseline-tfidf", "baseline", _metrics([0.85, 0.7, 0.3, 0.2, 0.0],
                                                                          [500, 300, 40, 12, 6], 0.693))
    warnings = review([baseline, teacher])
    zero = [w for w in warnings if "F1 = 0" in w]
    assert len(zero) == 1 and zero[0].startswith("teacher:")
    assert "c2 (40 texts)" in zero[0] and "c3 (12 texts)" in zero[0] and "c4" not in zero[0]  # 6 < 10 texts
    below = [w for w in warnings if "below the TF-IDF baseline" in w]
    assert len(below) == 1 and "macro F1" in below[0] and "teacher 0.340" in below[0]  # not below on accuracy
    # Two models with the same finding share a line.
    student = ModelScores("student", "student", 0.72, 0.3, dict(teacher.per_class))
    assert sum("F1 = 0" in w for w in review([teacher, student])) == 1

    balanced = _metrics([0.9, 0.88, 0.91, 0.87], [100, 100, 100, 100], 0.89)
    good = [scores_from_metrics("teacher", "teacher", balanced), scores_from_metrics("student", "student", balanced),
            scores_from_metrics("baseline-tfidf", "baseline", _metrics([0.85, 0.8, 0.86, 0.83], [100] * 4, 0.84))]
    assert review(good) == []


def test_report_shows_warnings_and_the_per_class_chart(tmp_path: Path) -> None:
    from test_report import make_report

    from edgekd.verify.report import to_html, to_markdown

    report = make_report()
    labels = report["bundle"]["labels"]
    k = len(labels)
    for m in report["models"]:
        m["accuracy"]["f1_per_class"] = [0.9] * k
        m["accuracy"]["support"] = [50] * k
    silent_md = to_markdown(report)
    assert "## Warnings" not in silent_md and "## F1 per class" in silent_md
    assert "F1 per class" in to_html(report) and "class='warning'" not in to_html(report)

    teacher = next(m for m in report["models"] if m["kind"] == "teacher")
    teacher["accuracy"]["f1_per_class"] = [0.0] + [0.9] * (k - 1)
    md, page = to_markdown(report), to_html(report)
    assert "## Warnings" in md and f"teacher: F1 = 0 on 1 of {k} classes: {labels[0]} (50 texts)" in md
    assert page.count("class='warning'") >= 1 and 'alt="F1 per class"' in page


def test_int8_macro_f1_gate_rejects_a_setting_that_loses_a_small_class() -> None:
    from edgekd.calibration.accuracy import Int8Candidate, select_int8
    from edgekd.verify.parity import INT8_MAX_F1_MACRO_DROP, GateSet

    # 1,000 labelled decision texts; class 3 has 8 of them. The reference is right on every text; the
    # candidate never predicts class 3 (8 flips: agreement 0.992 passes, and an accuracy drop of 0.8
    # points whose paired interval still reaches the 0.5-point budget is INCONCLUSIVE, not a failure).
    y = np.array([0] * 400 + [1] * 300 + [2] * 292 + [3] * 8)
    reference = np.eye(4)[y] * 5.0
    lossy = reference.copy()
    lossy[y == 3] = np.eye(4)[0] * 5.0
    candidate = [Int8Candidate("lossy", {}, lambda: lossy)]
    kept = select_int8(reference, y, candidate, GateSet())
    assert kept.chosen is not None and kept.tried[0]["f1_macro_drop"] == pytest.approx(0.25, abs=0.01)

    gates = GateSet().select_on("f1_macro")
    assert gates.threshold("int8", "f1_macro_drop") == INT8_MAX_F1_MACRO_DROP
    rejected = select_int8(reference, y, candidate, gates)
    assert rejected.chosen is None and "f1_macro_drop" in rejected.tried[0]["failed"]
    assert rejected.tried[0]["verdicts"]["f1_macro_drop"] == "FAIL"
    # A gate the user set on the same metric is kept; selection on accuracy adds nothing.
    mine = GateSet()
    mine.override("int8", "f1_macro_drop", 0.3)
    assert mine.select_on("f1_macro").threshold("int8", "f1_macro_drop") == 0.3
    assert [g.metric for g in GateSet().select_on("accuracy").gates["int8"]] == ["agreement", "accuracy_drop"]


def test_recipe_keys_reach_train_and_distill_and_bad_values_name_the_key() -> None:
    from edgekd.errors import RecipeError
    from edgekd.pipeline import plan
    from edgekd.recipe import parse_recipe

    base = {"data": {"path": "data"}, "students": {"specs": ["layers=2"], "class_weight": "sqrt", "epochs": 2}}
    steps, _ = plan(parse_recipe(base, ["teacher.select_metric=f1_macro", "teacher.patience=0"]))
    argv = {s.name: s.command for s in steps if s.command}
    teacher, student = argv["teacher"], argv["distill layers-2"]
    assert "--epochs" not in teacher  # unset: decided from the training rows
    assert teacher[teacher.index("--select-metric") + 1] == "f1_macro" and teacher[teacher.index("--patience") + 1] == "0"
    assert student[student.index("--class-weight") + 1] == "sqrt" and student[student.index("--epochs") + 1] == "2.0"
    with pytest.raises(RecipeError, match="recipe key 'teacher.class_weight' is 'heavy'; use one of auto, none"):
        parse_recipe(base, ["teacher.class_weight=heavy"])
    with pytest.raises(RecipeError, match="students.patience"):
        parse_recipe(base, ["students.patience=-2"])


def test_the_schedule_reason_says_which_parts_were_given():
    labels = np.array([0] * 90 + [1] * 10)
    assert plan_training(labels, ["a", "b"], 32).reasons["schedule"].startswith("auto: ")
    given = plan_training(labels, ["a", "b"], 32, epochs=3)
    assert given.epochs == 3 and given.reasons["schedule"].startswith("3 epochs given; auto warm-up")
    both = plan_training(labels, ["a", "b"], 32, epochs=3, warmup_ratio=0.2)
    assert "schedule" not in both.reasons and both.warmup_ratio == 0.2


def test_decisions_line_names_the_embedding_rate_only_when_it_differs(tmp_path: Path) -> None:
    """The card's `decisions` (plan + embedding rate and reason) and the one line train/distill print from it."""
    import io

    from rich.console import Console

    from edgekd.metrics import print_decisions
    from edgekd.train.imbalance import plan_training
    from edgekd.train.teacher import decisions

    plan = plan_training(np.array([0] * 30 + [1] * 3), ["a", "b"], batch_size=8)
    for rate, shown in ((3e-3, True), (5e-5, False)):
        record = decisions(plan, rate, "why")
        assert record["embedding_lr"] == rate and record["reasons"]["embedding_lr"] == "why"
        assert set(plan.record()["reasons"]) < set(record["reasons"])
        (tmp_path / "edgekd-model.json").write_text(json.dumps({"decisions": record, "training": {"lr": 5e-5}}))
        out = io.StringIO()
        print_decisions(tmp_path, Console(file=out, width=300))
        assert ("word embeddings at lr 0.003 (body 5e-05)" in out.getvalue()) is shown
