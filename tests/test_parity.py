"""Parity metrics and gates against hand-computed cases (numpy only)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest

from edgekd.errors import GateError, RecipeError
from edgekd.verify.parity import (
    GateSet,
    accuracy_metrics,
    conversion_parity,
    distillation_gap,
    evaluate_gates,
    f1_scores,
    raise_on_failures,
    softmax,
)

SOURCE = np.array([[2.0, 0.0, 0.0], [0.0, 1.0, 0.5], [0.1, 0.0, 0.3], [1.0, 1.5, 0.0]], dtype=np.float32)


def test_conversion_parity_hand_computed() -> None:
    artifact = SOURCE.copy()
    artifact[1, 1] -= 0.75  # row 1: [0, 0.25, 0.5] -> top-1 flips from 1 to 2
    artifact[2, 0] += 0.01  # small change, no flip
    p = conversion_parity(artifact, SOURCE)
    assert p["n"] == 4 and p["flips"] == 1 and p["flipped"] == [1]
    assert p["agreement"] == pytest.approx(0.75)
    assert p["max_abs_logit"] == pytest.approx(0.75)
    assert p["mean_abs_logit"] == pytest.approx((0.75 + 0.01) / 12, rel=1e-5)
    # max |Δprob| is on row 1: softmax([0,1,.5]) vs softmax([0,.25,.5])
    e1, e2 = np.exp([0, 1, 0.5]), np.exp([0, 0.25, 0.5])
    expected = np.abs(e1 / e1.sum() - e2 / e2.sum()).max()
    assert p["max_abs_prob"] == pytest.approx(expected, rel=1e-6)


def test_identical_logits_are_perfect_and_empty_is_safe() -> None:
    p = conversion_parity(SOURCE, SOURCE)
    assert p["max_abs_logit"] == 0.0 and p["agreement"] == 1.0 and p["flips"] == 0
    assert conversion_parity(np.zeros((0, 3)), np.zeros((0, 3)))["agreement"] == 1.0
    with pytest.raises(ValueError, match="equal shapes"):
        conversion_parity(SOURCE, SOURCE[:2])


def test_softmax_is_float64_and_stable() -> None:
    probs = softmax(np.array([[1000.0, 1000.0, -1000.0]], dtype=np.float32))
    assert probs.dtype == np.float64 and probs[0].tolist() == pytest.approx([0.5, 0.5, 0.0])


def test_f1_matches_hand_computation() -> None:
    y_true = np.array([0, 0, 1, 1, 2, 2])
    y_pred = np.array([0, 1, 1, 1, 2, 0])
    # class 0: tp1 fp1 fn1 -> 0.5; class 1: tp2 fp1 fn0 -> 0.8; class 2: tp1 fp0 fn1 -> 2/3
    f = f1_scores(y_true, y_pred, 3)
    assert f["f1_macro"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)
    assert f["f1_weighted"] == pytest.approx((0.5 + 0.8 + 2 / 3) / 3)  # equal support
    # unequal support: weights 3, 1
    f = f1_scores(np.array([0, 0, 0, 1]), np.array([0, 0, 1, 1]), 2)
    c0, c1 = 2 * 2 / (3 + 2), 2 * 1 / (1 + 2)
    assert f["f1_weighted"] == pytest.approx((3 * c0 + 1 * c1) / 4)
    assert f["f1_macro"] == pytest.approx((c0 + c1) / 2)


def test_f1_agrees_with_sklearn() -> None:
    from sklearn.metrics import f1_score

    rng = np.random.default_rng(0)
    y_true, y_pred = rng.integers(0, 5, 200), rng.integers(0, 5, 200)
    y_pred[:100] = y_true[:100]
    f = f1_scores(y_true, y_pred, 5)
    assert f["f1_macro"] == pytest.approx(f1_score(y_true, y_pred, average="macro"))
    assert f["f1_weighted"] == pytest.approx(f1_score(y_true, y_pred, average="weighted"))


def test_distillation_gap() -> None:
    labels = np.array([0, 1, 2, 1])
    teacher = SOURCE.copy()  # predicts 0, 1, 2, 1: all right
    student = SOURCE.copy()
    student[3] = [2.0, 0.0, 0.0]  # predicts 0 on row 3: wrong, and a flip vs the teacher
    g = distillation_gap(student, teacher, labels)
    assert g["teacher_accuracy"] == 1.0 and g["accuracy"] == 0.75
    assert g["accuracy_gap"] == pytest.approx(0.25) and g["flips"] == 1 and g["agreement"] == 0.75
    assert accuracy_metrics(teacher, labels)["f1_macro"] == 1.0


def test_default_gates_per_precision() -> None:
    gates = GateSet()
    ok = {"agreement": 1.0, "max_abs_logit": 2e-4}
    assert all(r["passed"] for r in evaluate_gates("onnx-fp32", "fp32", ok, gates))
    rows = evaluate_gates("onnx-fp32", "fp32", {"agreement": 0.999, "max_abs_logit": 2e-3}, gates)
    assert [(r["metric"], r["passed"]) for r in rows] == [("agreement", False), ("max_abs_logit", False)]
    assert evaluate_gates("ov-fp16", "fp16", {"agreement": 0.995}, gates)[0]["passed"]
    int8 = evaluate_gates("onnx-int8", "int8", {"agreement": 0.99, "accuracy_drop": 0.006}, gates)
    assert [r["passed"] for r in int8] == [True, False]
    # a metric the row lacks fails its gate rather than passing silently
    assert not evaluate_gates("x", "int8", {"agreement": 1.0}, gates)[1]["passed"]


def test_gate_override_and_errors() -> None:
    gates = GateSet()
    gates.override("int8", "agreement", 0.95)
    gates.override("fp16", "max_abs_logit", 0.05)
    assert evaluate_gates("a", "int8", {"agreement": 0.96, "accuracy_drop": 0}, gates)[0]["passed"]
    assert [g.metric for g in gates.gates["fp16"]] == ["agreement", "max_abs_logit"]
    assert GateSet().gates["int8"][0].threshold == 0.99  # defaults are not shared state
    with pytest.raises(RecipeError, match="int4"):
        gates.override("int4", "agreement", 0.9)
    with pytest.raises(RecipeError, match="speed"):
        gates.override("fp32", "speed", 0.9)


def test_raise_on_failures_lists_every_failure() -> None:
    rows = evaluate_gates("onnx-int8", "int8", {"agreement": 0.9, "accuracy_drop": 0.02}, GateSet())
    with pytest.raises(GateError, match=r"2 gate\(s\) failed: onnx-int8 agreement=0.9 \(needs >= 0.99\); "
                                        r"onnx-int8 accuracy_drop=0.02 \(needs <= 0.005\)") as info:
        raise_on_failures(rows)
    assert info.value.exit_code == 1
    raise_on_failures(evaluate_gates("x", "fp16", {"agreement": 1.0, "max_abs_logit": 0.01}, GateSet()))
    # fp16 is gated on logits too: a metric the row lacks fails its gate, never passes
    rows = evaluate_gates("x", "fp16", {"agreement": 1.0}, GateSet())
    assert [(r["metric"], r["passed"]) for r in rows] == [("agreement", True), ("max_abs_logit", False)]


def test_a_precision_without_gates_is_an_error_not_a_pass() -> None:
    gates = GateSet()
    with pytest.raises(GateError, match=r"no gate is defined for precision 'bf16'.*--gate-bf16-agreement"):
        evaluate_gates("onnx-bf16", "bf16", {"agreement": 1.0}, gates)
    gates.gates["fp16"] = []
    with pytest.raises(GateError, match="no gate is defined for precision 'fp16'"):
        evaluate_gates("openvino-fp16", "fp16", {"agreement": 1.0}, gates)


@pytest.mark.parametrize(("k", "n"), [(198, 200), (192, 192), (0, 10), (600, 1000)])
def test_wilson_interval_solves_the_score_equation(k: int, n: int) -> None:
    """Recomputed another way: the Wilson bounds are the roots p of (k/n - p)^2 = z^2 p (1 - p) / n."""
    from edgekd.verify.parity import wilson_interval

    z, phat = 1.96, k / n
    a, b, c = 1 + z * z / n, -(2 * phat + z * z / n), phat * phat  # the quadratic in p
    roots = sorted(np.roots([a, b, c]).real)
    lo, hi = wilson_interval(k, n)
    assert lo == pytest.approx(max(0.0, roots[0]), abs=1e-9) and hi == pytest.approx(min(1.0, roots[1]), abs=1e-9)
    assert lo <= phat <= hi


def test_parity_module_imports_no_torch() -> None:
    code = "import sys, edgekd.verify.parity; assert 'torch' not in sys.modules and 'sklearn' not in sys.modules"
    subprocess.run([sys.executable, "-c", code], check=True)


def test_parity_by_length_groups() -> None:
    from edgekd.verify.parity import parity_by_length

    artifact = SOURCE.copy()
    artifact[3] += [0.0, -1.0, 0.0]  # the longest text flips
    groups = parity_by_length(artifact, SOURCE, [5, 9, 2, 40], groups=2)
    assert list(groups) == ["tokens 2-5", "tokens 9-40"]
    assert groups["tokens 2-5"]["agreement"] == 1.0 and groups["tokens 9-40"]["flips"] == 1
    assert groups["tokens 9-40"]["max_abs_logit"] == pytest.approx(1.0)


def test_a_gate_fails_on_evidence_and_is_inconclusive_on_too_few_texts() -> None:
    from edgekd.verify.parity import wilson_interval

    def row(flips: int, n: int) -> dict:
        metrics = {"agreement": 1 - flips / n, "agreement_ci": list(wilson_interval(n - flips, n)), "accuracy_drop": 0.0}
        return {r["metric"]: r for r in evaluate_gates("onnx-int8", "int8", metrics, GateSet())}["agreement"]

    assert row(3, 500)["verdict"] == "PASS"
    # 7 flips of 500 (0.986): below 0.99, but the interval (0.971-0.993) still reaches it
    inconclusive = row(7, 500)
    assert inconclusive["verdict"] == "INCONCLUSIVE" and inconclusive["passed"] is True
    raise_on_failures([inconclusive])  # not a failure: more texts decide
    # 30 flips of 1000 (0.970, interval 0.958-0.979): the data show it misses the gate
    failed = row(30, 1000)
    assert failed["verdict"] == "FAIL" and failed["passed"] is False
    with pytest.raises(GateError, match="agreement=0.97"):
        raise_on_failures([failed])
    # fp32 needs every prediction: one flip is a FAIL whatever the sample (the interval stays below 1)
    fp32 = evaluate_gates("onnx-fp32", "fp32", {"agreement": 191 / 192, "agreement_ci": list(wilson_interval(191, 192)),
                                                "max_abs_logit": 1e-6}, GateSet())
    assert [r["verdict"] for r in fp32] == ["FAIL", "PASS"]


def test_paired_drop_interval_by_hand() -> None:
    from edgekd.verify.parity import paired_drop_interval

    src = np.array([True] * 90 + [False] * 10)
    art = src.copy()
    art[:4] = False  # b = 4 right -> wrong
    art[95] = True  # c = 1 wrong -> right
    lo, hi = paired_drop_interval(src, art)
    drop, se = 3 / 100, np.sqrt(4 + 1 - 9 / 100) / 100  # (b - c)/n and the paired standard error
    assert (lo, hi) == pytest.approx((drop - 1.96 * se, drop + 1.96 * se))
    assert paired_drop_interval(src, src) == (0.0, 0.0)  # no discordant text: exactly no drop


def test_an_export_applies_its_overrides_on_a_copy_of_the_gate_table() -> None:
    from edgekd.exporters.bundle_writer import ExportOptions, _export_gates

    options = ExportOptions(max_accuracy_drop=0.02)
    before = options.gates.to_dict()
    gates = _export_gates(options, {"select_metric": "f1_macro"})
    assert gates.threshold("int8", "accuracy_drop") == 0.02 and gates.threshold("int8", "f1_macro_drop") == 0.01
    assert options.gates.to_dict() == before  # the caller's table is unchanged (a second export starts clean)
    assert _export_gates(ExportOptions(), {}).to_dict() == before
