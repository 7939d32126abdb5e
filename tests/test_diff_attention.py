"""Differential-attention hybrids (issue 15): the conversion grammar, lambda, start equivalence at ramp 0,
the card round trip (student and teacher), and every export of a tiny hybrid passing its parity gates."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest
from conftest import AG_LABELS, read_texts, write_dataset

from edgekd.cli import main
from edgekd.errors import ModelError
from edgekd.train import diff_attention as da


def test_grammar_selects_layers_and_names_the_fix() -> None:
    cases = {"0.5": [3, 4, 5], "0.25": [4, 5], "upper:1": [5], "lower:2": [0, 1], "lower:0.5": [0, 1, 2],
             "0+2": [0, 2], "at:3": [3], "all": [0, 1, 2, 3, 4, 5], "1.0/norm": [0, 1, 2, 3, 4, 5]}
    for value, layers in cases.items():
        assert da.parse_diff(value).layers(6) == layers, value
    # a share rounds half up and keeps at least one layer: 25% of a 3-layer student is 1, 50% is 2
    assert [da.parse_diff(v).layers(3) for v in ("0.25", "0.5", "0.01")] == [[2], [1, 2], [2]]
    flags = da.parse_diff("upper:1/norm/zeros")
    assert (flags.norm, flags.init) == (True, "zeros") and da.parse_diff("0.5").init == "copy"
    for bad, message in [("2", "ambiguous.*upper:2.*at:2"), ("middle:2", "not upper or lower"), ("1.5", "cannot read"),
                         ("0+x", "integers"), ("2+0", "ascending"), ("upper:0", "at least one"),
                         ("0.5/fast", "unknown or repeated flag"), ("0.5/norm/norm", "repeated")]:
        with pytest.raises(ModelError, match=message):
            da.parse_diff(bad)
    for value, n, message in [("at:6", 6, r"\[6\]"), ("upper:4", 3, "has 3")]:
        with pytest.raises(ModelError, match=message):
            da.parse_diff(value).layers(n)


def _tiny(layers: int = 3, seed: int = 0):
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=120, hidden_size=32, num_hidden_layers=layers, num_attention_heads=2,
                        intermediate_size=64, num_labels=4)
    model = BertForSequenceClassification(config).eval()
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)
    return model


def _batch():
    import torch

    ids = torch.randint(5, 120, (3, 11), generator=torch.Generator().manual_seed(1))
    mask = torch.ones_like(ids)
    mask[1, 6:] = 0  # a padded row: the mask must reach both branches
    return ids, mask


def test_lambda_follows_the_formula() -> None:
    import torch

    assert [round(da.lambda_init(d), 6) for d in (1, 2, 6)] == [0.2, round(0.8 - 0.6 * math.exp(-0.3), 6),
                                                                 round(0.8 - 0.6 * math.exp(-1.5), 6)]
    model = da.apply(_tiny(), "all")
    for depth, layer in enumerate(model.bert.encoder.layer, start=1):
        m = layer.attention.self
        with torch.no_grad():
            m.lambda_q1.normal_(0, 0.3)
            m.ramp.fill_(0.5)
        q1, k1, q2, k2 = (getattr(m, n).detach().double().numpy() for n in ("lambda_q1", "lambda_k1", "lambda_q2",
                                                                              "lambda_k2"))
        want = math.exp(q1 @ k1) - math.exp(q2 @ k2) + da.lambda_init(depth)
        assert float(m.lambda_init) == pytest.approx(da.lambda_init(depth), abs=1e-7)
        assert float(m.lambda_full().detach()) == pytest.approx(want, rel=1e-5)
        assert m.coefficient() == pytest.approx(0.5 * want, rel=1e-5)  # eval: a float, ramp * lambda
        with torch.no_grad():
            m.lambda_k2.add_(0.2)  # the eval constant follows a weight change (version counters)
        q1, k1, q2, k2 = (getattr(m, n).detach().double().numpy() for n in ("lambda_q1", "lambda_k1", "lambda_q2",
                                                                              "lambda_k2"))
        assert m.coefficient() == pytest.approx(0.5 * (math.exp(q1 @ k1) - math.exp(q2 @ k2) + da.lambda_init(depth)),
                                                rel=1e-5)


@pytest.mark.parametrize("value", ["0.5", "all/zeros"])
def test_ramp_zero_reproduces_the_original_model(value: str) -> None:
    import torch

    ids, mask = _batch()
    model = _tiny()
    original = model.bert.encoder.layer[2].attention.self
    hidden = torch.randn(3, 11, 32, generator=torch.Generator().manual_seed(2))
    additive = (1.0 - mask[:, None, None, :].float()) * -1e4
    with torch.no_grad():
        want_logits = model(input_ids=ids, attention_mask=mask).logits
        want_layer = original(hidden, attention_mask=additive)[0]
    da.apply(model, value)
    converted = model.bert.encoder.layer[2].attention.self
    assert type(converted).__name__ == "DiffSelfAttention" and not converted.training
    with torch.no_grad():
        got_layer = converted(hidden, attention_mask=additive)[0]
        got_logits = model(input_ids=ids, attention_mask=mask).logits
        assert (got_layer - want_layer).abs().max() < 1e-5
        assert (got_logits - want_logits).abs().max() < 1e-5
        for m in model.modules():
            if type(m).__name__ == "DiffSelfAttention":
                m.ramp.fill_(1.0)
        moved = model(input_ids=ids, attention_mask=mask).logits
    assert (moved - want_logits).abs().max() > 1e-3  # at ramp 1 the negative branch does change the output


def test_paper_norm_breaks_start_equivalence() -> None:
    """Why /norm is not the default: the per-head RMSNorm and (1 - lambda_init) scale change the
    output even at ramp 0."""
    import torch

    ids, mask = _batch()
    model = _tiny()
    with torch.no_grad():
        want = model(input_ids=ids, attention_mask=mask).logits
        got = da.apply(model, "0.5/norm")(input_ids=ids, attention_mask=mask).logits
    assert (got - want).abs().max() > 1e-3


def test_ramp_callback_reaches_one_over_its_share() -> None:
    from types import SimpleNamespace

    model = da.apply(_tiny(), "upper:1")
    callback = da.ramp_callback(model, share=0.25)
    state = SimpleNamespace(max_steps=40, global_step=0)
    callback.on_train_begin(None, state, None)
    module = model.bert.encoder.layer[2].attention.self
    seen = []
    for step in (0, 5, 10, 39):
        state.global_step = step
        callback.on_step_begin(None, state, None)
        seen.append(float(module.ramp))
    assert seen == [0.0, 0.5, 1.0, 1.0]
    assert da.ramp_callback(model) is None  # nothing left below ramp 1: no callback


def _save(model, out: Path, tokenizer_dir: Path, value: str) -> Path:
    from transformers import AutoTokenizer

    model.save_pretrained(out)
    AutoTokenizer.from_pretrained(tokenizer_dir).save_pretrained(out)
    (out / "edgekd-model.json").write_text(json.dumps({"max_length": 64, "role": "test"}))
    da.record(out, model, value)
    return out


def _hybrid_from(checkpoint: Path, out: Path, value: str = "upper:1"):
    """A hybrid of `checkpoint` at ramp 1 whose negative branch differs from the positive one, so
    parity checks see the differential term."""
    import torch

    from edgekd.train.infer import load_checkpoint

    model = da.apply(load_checkpoint(checkpoint)[0], value)
    torch.manual_seed(3)
    for m in model.modules():
        if type(m).__name__ == "DiffSelfAttention":
            with torch.no_grad():
                m.ramp.fill_(1.0)
                m.query2.weight.add_(torch.randn_like(m.query2.weight) * 0.3)
    return _save(model, out, checkpoint, value)


def test_hybrid_student_round_trips_save_and_load(tiny_bert: Path, tmp_path: Path) -> None:
    import torch

    from edgekd.train.infer import load_checkpoint, torch_logits
    from edgekd.train.students import build_student, parse_student_spec

    spec = parse_student_spec("layers=0,1,diff=upper:1")
    student, tokenizer, layers = build_student(spec, tiny_bert, AG_LABELS)
    assert layers == [0, 1] and da.converted_layers(student) == [1]
    with torch.no_grad():
        for m in student.modules():
            if type(m).__name__ == "DiffSelfAttention":
                m.ramp.fill_(0.7)
                m.key2.weight.mul_(2.0)
    out = _save(student.eval(), tmp_path / "student", tiny_bert, spec.option("diff"))
    card = json.loads((out / "edgekd-model.json").read_text())["diff_attention"]
    assert card["layers"] == [1] and card["spec"] == "upper:1" and card["ramp"] == [0.7] and card["norm"] is False
    texts, _ = read_texts("ag_news", "test", 24)
    loaded, tok = load_checkpoint(out)
    assert da.converted_layers(loaded) == [1]
    np.testing.assert_array_equal(torch_logits(loaded, tok, texts, 64), torch_logits(student, tokenizer, texts, 64))
    # A layer student of this hybrid (as a teacher) keeps the converted layer's trained negative branch.
    grand, _, copied = build_student(parse_student_spec("layers=1"), out, AG_LABELS)
    assert copied == [1] and da.converted_layers(grand) == [0]
    got, want = grand.bert.encoder.layer[0].attention.self, loaded.bert.encoder.layer[1].attention.self
    for name in ("query", "query2", "key2", "lambda_q1", "ramp", "lambda_init"):
        assert torch.equal(getattr(got, name).weight if name in ("query", "query2", "key2") else getattr(got, name),
                           getattr(want, name).weight if name in ("query", "query2", "key2") else getattr(want, name))
    with pytest.raises(ModelError, match="heads="):
        build_student(parse_student_spec("layers=1,heads=1,diff=upper:1"), tiny_bert, AG_LABELS)


def test_train_and_distill_cli_with_differential_attention(tiny_bert: Path, tmp_path: Path) -> None:
    """`edgekd train --diff-attention`: the ramp reaches 1 and the card records it; `evaluate` and
    `distill --teacher` load the hybrid; a student's diff= converts its own layers."""
    data = write_dataset(tmp_path / "data", {"train": 64, "test": 32})
    teacher = tmp_path / "teacher"
    common = ["--data", str(data), "--epochs", "1", "--batch-size", "16", "--max-length", "32", "--no-progress"]
    assert main(["train", *common, "--model", str(tiny_bert), "--diff-attention", "upper:1", "--out",
                 str(teacher)]) == 0
    card = json.loads((teacher / "edgekd-model.json").read_text())["diff_attention"]
    assert card["layers"] == [1] and card["ramp"] == [1.0] and card["spec"] == "upper:1"
    assert main(["evaluate", str(teacher), "--out", str(tmp_path / "eval")]) == 0
    saved = json.loads((teacher / "metrics.json").read_text())["accuracy"]
    assert json.loads((tmp_path / "eval" / "metrics.json").read_text())["accuracy"] == pytest.approx(saved)
    student = tmp_path / "student"
    assert main(["distill", "--teacher", str(teacher), *common, "--student", "layers=0,1,diff=lower:1",
                 "--cache-dir", str(tmp_path / "cache"), "--out", str(student)]) == 0
    card = json.loads((student / "edgekd-model.json").read_text())["diff_attention"]
    assert card["layers"] == [0, 1] and card["ramp"] == [1.0, 1.0]  # its own layer 0 + the teacher's layer 1


def test_bad_value_fails_before_loading(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["train", "--data", str(tmp_path / "none"), "--diff-attention", "middle:1", "--out",
                 str(tmp_path / "t")]) == 2
    err = capsys.readouterr().err.strip()
    assert "placement 'middle'" in err and "\n" not in err


def test_tiny_hybrid_exports_pass_parity_on_every_target(trained_tiny_bert: Path, tmp_path: Path) -> None:
    """ONNX, OpenVINO and Core ML (run by the MIL reference evaluator) at fp32/fp16 and int8: every
    artifact kept, every parity check passed; lambda is one constant per layer in the ONNX graph."""
    import onnx
    from conftest import TRAINED_ROWS

    from edgekd.exporters.bundle_writer import ExportData, ExportOptions, export_bundle

    hybrid = _hybrid_from(trained_tiny_bert, tmp_path / "hybrid")
    texts, names = read_texts("ag_news", "train", TRAINED_ROWS)
    ids = [AG_LABELS.index(n) for n in names]
    half = TRAINED_ROWS // 2
    data = ExportData(test_texts=texts[half:], train=(texts[:half], ids[:half]), validation=(texts[half:], ids[half:]))
    manifest = export_bundle(hybrid, tmp_path / "bundle", data,
                             ExportOptions(targets=["all"], int8=True, calibration_size=64, check_per_class=8),
                             log=lambda m: None)
    assert manifest.dropped == []
    assert {a.name for a in manifest.artifacts} == {"onnx-fp32", "onnx-int8", "openvino-fp32", "openvino-fp16",
                                                     "openvino-int8", "coreml-fp16", "coreml-int8"}
    for name, parity in manifest.parity.items():
        assert parity.get("status") == "passed" or parity.get("decided_by") == "accuracy control", (name, parity)
    assert manifest.parity["onnx-fp32"]["max_abs_logit"] <= 1e-3
    assert manifest.parity["coreml-fp16"]["engine"] == "mil-reference"
    graph = onnx.load(str(tmp_path / "bundle" / "onnx" / "model.onnx")).graph
    assert not [n for n in graph.node if n.op_type == "Exp"]  # lambda folded to a constant


def test_activation_peaks_are_the_largest_real_token_values(tiny_bert: Path) -> None:
    """benchmarks/outliers.py on the tiny model: per layer, the hooked peaks equal the max |value| of the
    hidden states over real tokens only (padding excluded), and the model is left without hooks."""
    import torch

    from benchmarks.outliers import activation_peaks, summary
    from edgekd.train.infer import load_checkpoint

    model, tokenizer = load_checkpoint(tiny_bert)
    model = da.apply(model, "upper:1")
    texts, _ = read_texts("ag_news", "test", 12)
    texts[3] = "short"  # a padded row in its batch
    peaks = activation_peaks(model, tokenizer, texts, 64, batch_size=4)
    assert len(peaks) == 2
    want = [0.0, 0.0]
    with torch.no_grad():
        for i in range(0, 12, 4):
            enc = tokenizer(texts[i:i + 4], truncation=True, max_length=64, padding=True, return_tensors="pt")
            states = model(**enc, output_hidden_states=True).hidden_states[1:]
            real = enc["attention_mask"].bool()
            want = [max(w, float(s[real].abs().max())) for w, s in zip(want, states, strict=True)]
    assert [p["hidden"] for p in peaks] == pytest.approx(want, abs=1e-3)
    assert all(p["ffn"] > 0 and p["context"] > 0 and p["outlier_ratio"] >= 1.0 for p in peaks)
    assert summary(peaks)["hidden"] == pytest.approx(max(want), abs=1e-3)
    assert not any(m._forward_hooks for m in model.modules())


def test_diffattn_benchmark_steps_and_table() -> None:
    """The benchmark part's plan (a hybrid student distils from the plain teacher; every model is exported)
    and its RESULTS.md table from two seeds' rows."""
    from benchmarks import diffattn

    steps = diffattn.steps("ag_news", 42, diffattn.SMOKE)
    assert steps["teacher-hybrid-50"].stage.diff_attention == "0.5"
    student = steps["student-hybrid-25"]
    assert student.stage.students == ["layers=3,diff=0.25"] and student.stage.teacher.endswith("teacher-plain")
    assert student.after == [steps["teacher-plain"].name]  # it reads the plain teacher: redone when that is
    # AG News: plain, 25%, 50% for both roles, plus the teacher with the paper's norm on (7 bundles)
    assert sum(1 for k in steps if k.startswith("bundle-")) == 7
    assert steps["teacher-hybrid-50-norm"].stage.diff_attention == "0.5/norm" and "student-hybrid-50-norm" not in steps
    arabic = diffattn.steps("arabic_news_ant", 42, diffattn.SMOKE)
    adapt = arabic["adapt"]  # the Arabic teachers start from an adapted vocabulary, and are redone with it
    assert all(arabic[f"teacher-{v}"].after == [adapt.name] and arabic[f"teacher-{v}"].stage.model == str(
        diffattn.out_dir(adapt)) and arabic[f"teacher-{v}"].stage.train.lr == 1e-4 for v in diffattn.VARIANTS)
    assert sum(1 for k in arabic if k.startswith("bundle-")) == 6
    rows = [{"dataset": "ag_news", "seed": s, "role": "student", "variant": v, "converted": c,
             "fp32": {"accuracy": a, "agreement": 0.9, "bytes": 9e7, "ratio": r}, "int8": {"accuracy": a, "bytes": 2e7},
             "static_int8": {"agreement": 0.95}, "peak_max": {"ffn": 10.0, "hidden": 5.0, "outlier_ratio": 3.0}}
            for s, a in ((42, 0.8), (43, 0.9)) for v, c, r in (("plain", [], 1.0), ("hybrid-50", [1, 2], 1.2))]
    lines = diffattn.markdown({"scale": diffattn.SMOKE.__dict__, "rows": rows, "wall_time_s": 3600}, "dev")
    hybrid = next(line for line in lines if "student hybrid-50" in line)
    assert "| [1, 2] | 0.8500 (0.8000 / 0.9000) |" in hybrid and "| 1.20 |" in hybrid
    assert "| 90.0 / 20.0 |" in hybrid


def test_diffattn_seed_noise_verdict_and_partial_section(tmp_path: Path) -> None:
    """A hybrid's difference is paired with the plain model of its seed, and called inside the seed noise
    when the seeds disagree in sign or the mean is within plain's own spread; a partial run says what is
    missing; the chart is written."""
    from benchmarks import diffattn

    def row(seed: int, variant: str, accuracy: float) -> dict:
        return {"dataset": "ag_news", "seed": seed, "role": "teacher", "variant": variant, "converted": [],
                "fp32": {"accuracy": accuracy, "agreement": 1.0, "bytes": 9e7, "ratio": 1.0},
                "int8": {"accuracy": accuracy, "bytes": 2e7, "ratio": 0.9}, "static_int8": {"agreement": 0.95},
                "peak_max": {"ffn": 10.0, "hidden": 5.0, "outlier_ratio": 3.0}}
    # plain 0.80 / 0.81 (spread 1 point); 25%: +2 and +3 points (better); 50%: +0.5 / -0.5 (noise);
    # norm: -0.5 / -0.7 (same sign, but within plain's 1-point spread: noise)
    rows = [row(42, "plain", 0.80), row(43, "plain", 0.81), row(42, "hybrid-25", 0.82), row(43, "hybrid-25", 0.84),
            row(42, "hybrid-50", 0.805), row(43, "hybrid-50", 0.805), row(42, "hybrid-50-norm", 0.795),
            row(43, "hybrid-50-norm", 0.803)]
    got = {c["variant"]: c for c in diffattn.versus_plain(rows)}
    assert got["hybrid-25"]["diffs"] == pytest.approx([0.02, 0.03]) and not got["hybrid-25"]["inside_noise"]
    assert got["hybrid-50"]["inside_noise"] and got["hybrid-50-norm"]["inside_noise"]
    assert got["hybrid-25"]["plain_spread"] == pytest.approx(0.01)
    result = {"scale": diffattn.FULL.__dict__, "rows": rows, "wall_time_s": 60, "partial": True,
              "missing": ["arabic_news_ant seed 42: teacher-plain"],
              "commands": [{"dataset": "ag_news", "seed": 42, "step": "teacher-plain", "command": "edgekd train x",
                            "wall_time_s": 12.5, "commit": "0dfdf54"}]}
    lines = diffattn.markdown(result, "dev", "results/x.png")
    text = "\n".join(lines)
    assert "**Partial run**: not yet finished: arabic_news_ant seed 42: teacher-plain." in text
    # 2,000 test texts at ~0.82: 1.96 SE of a two-seed mean difference = 1.96 * sqrt((2 * .82 * .18 / 2000) / 2)
    sampling = 1.96 * np.sqrt(np.mean([(0.80 * 0.20 + 0.82 * 0.18) / 2000, (0.81 * 0.19 + 0.84 * 0.16) / 2000]) / 2)
    assert (f"| fp32 test accuracy | ag_news | teacher hybrid-25 | +2.50 (+2.00 / +3.00) | 1.00 | {sampling * 100:.2f} "
            "| better |") in lines
    assert [line for line in lines if line.startswith("| fp32 test accuracy | ag_news | teacher hybrid-50 | +0.00 "
                                                      "(+0.50 / -0.50) | 1.00 |") and line.endswith("| inside the noise |")]
    # the outlier test, paired the same way (every made-up row has static QDQ agreement 0.95: no difference)
    assert [line for line in lines if line.startswith("| static QDQ int8 agreement (the outlier test) | ag_news | "
                                                      "teacher hybrid-25 | +0.00 (+0.00 / +0.00) | 0.00 |")]
    # same sign on both seeds and plain's spread 0, but inside the test sampling of 1,000 texts: noise
    flat = [{**row(42, "plain", 0.80), "static_int8": {"agreement": 0.988, "n": 1000}},
            {**row(43, "plain", 0.80), "static_int8": {"agreement": 0.988, "n": 1000}},
            {**row(42, "hybrid-50", 0.80), "static_int8": {"agreement": 0.991, "n": 1000}},
            {**row(43, "hybrid-50", 0.80), "static_int8": {"agreement": 0.989, "n": 1000}}]
    (static,) = diffattn.versus_plain(flat, ("static_int8", "agreement"))
    assert static["plain_spread"] == 0 and static["mean"] == pytest.approx(0.002) and static["inside_noise"]
    assert 0.003 < static["sampling"] < 0.01
    assert "| ag_news | 42 | teacher-plain | `edgekd train x` | 12.5 s | 0dfdf54 |" in lines and "![diffattn](results/x.png)" in text
    assert diffattn.chart(result, tmp_path / "c.png").stat().st_size > 10_000


def test_diffattn_runs_the_extra_variants_last_and_publishes_what_finished(monkeypatch: pytest.MonkeyPatch) -> None:
    """A dataset's main grid runs for every seed before its EXTRA variants; publishing measures a seed
    whose main steps finished without its unfinished extras, and skips a seed whose main steps did not."""
    from benchmarks import diffattn

    ran: list[str] = []
    monkeypatch.setattr(diffattn, "run_step", lambda st, log: ran.append(st.name))
    left = {("ag_news", 42): [], ("ag_news", 43): ["teacher-hybrid-50-norm", "bundle-teacher-hybrid-50-norm"],
            ("arabic_news_ant", 42): ["student-plain"], ("arabic_news_ant", 43): []}
    monkeypatch.setattr(diffattn, "unfinished", lambda steps: left[next(
        (d, s) for (d, s) in left if f"/{d}/seed-{s}/" in diffattn.out_dir(next(iter(steps.values()))).as_posix())])
    measured: list[tuple] = []
    monkeypatch.setattr(diffattn, "run_seed", lambda d, s, scale, log, steps, skip: measured.append(
        (d, s, frozenset(skip), len(steps))) or [])
    monkeypatch.setattr(diffattn, "stamp", lambda st: {"seconds": 1.0})
    scale = diffattn.Scale("t", ("ag_news", "arabic_news_ant"), (42, 43), 100, 10, "1", "1", 32, 5, 4)
    result = diffattn.study(lambda m: None, scale)
    first_extra = min(i for i, n in enumerate(ran) if n.endswith("-norm"))
    last_extra = max(i for i, n in enumerate(ran) if n.endswith("-norm"))
    assert {n.split("/")[2] for n in ran[:first_extra]} == {"seed-42", "seed-43"}  # both seeds' grid first
    assert all("/ag_news/" in n for n in ran[:last_extra + 1]) and "/arabic_news_ant/" in ran[last_extra + 1]
    assert ("ag_news", 43, frozenset({"hybrid-50-norm"}), 12) in measured and ("ag_news", 42, frozenset(), 14) in measured
    assert not any(d == "arabic_news_ant" and s == 42 for d, s, *_ in measured)
    assert result["partial"] and "arabic_news_ant seed 42: student-plain" in result["missing"]
    assert "ag_news seed 43: teacher-hybrid-50-norm" in result["missing"]


def test_a_seed_whose_plain_teacher_collapsed_is_reported_and_not_compared(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`collapsed` reads the teacher's test confusion matrix (predicted classes in columns); in a run, a
    collapsed plain teacher stops its seed's other steps; publishing lists it instead of comparing it."""
    import json

    from benchmarks import diffattn

    labels = ["a", "b", "c"]
    teacher = tmp_path / "teacher"
    teacher.mkdir()
    one_class = {"labels": labels, "accuracy": 0.4, "f1_macro": 0.19, "confusion_matrix": [[0, 40, 0], [0, 35, 0], [0, 25, 0]]}
    (teacher / "metrics.json").write_text(json.dumps(one_class))
    assert diffattn.collapsed(teacher) == {"class": "b", "share": 1.0, "accuracy": 0.4, "f1_macro": 0.19}
    (teacher / "metrics.json").write_text(json.dumps(one_class | {"confusion_matrix": [[30, 10, 0], [5, 30, 0], [0, 10, 15]]}))
    assert diffattn.collapsed(teacher) is None
    assert diffattn.seeds("arabic_news_ant", diffattn.FULL) == (42, 43, 44)
    assert diffattn.seeds("ag_news", diffattn.FULL) == (42, 43)
    assert diffattn.seeds("arabic_news_ant", diffattn.SMOKE) == diffattn.SMOKE.seeds  # only the full scale's differ

    scale = diffattn.Scale("t", ("ag_news", "arabic_news_ant"), (42, 43), 100, 10, "1", "1", 32, 5, 4)
    bad = "/arabic_news_ant/seed-43/"
    ran: list[str] = []
    monkeypatch.setattr(diffattn, "run_step", lambda st, log: ran.append(st.name))
    monkeypatch.setattr(diffattn, "finished", lambda st: {"seconds": 1.0})  # every plain teacher has finished
    monkeypatch.setattr(diffattn, "collapsed", lambda path: {"class": "x", "share": 0.99, "accuracy": 0.3, "f1_macro": 0.1}
                        if bad in path.as_posix() + "/" else None)
    monkeypatch.setattr(diffattn, "unfinished", lambda steps: [])
    measured: list[tuple] = []
    monkeypatch.setattr(diffattn, "run_seed", lambda d, s, sc, log, steps, skip: measured.append((d, s)) or [])
    monkeypatch.setattr(diffattn, "stamp", lambda st: {"seconds": 1.0})
    result = diffattn.study(lambda m: None, scale)
    assert not [n for n in ran if bad in n + "/"]  # its teacher had finished and collapsed: nothing else ran
    assert [n for n in ran if "/arabic_news_ant/seed-42/" in n]
    assert ("arabic_news_ant", 43) not in measured and ("arabic_news_ant", 42) in measured
    assert result["collapsed"] == [{"dataset": "arabic_news_ant", "seed": 43, "class": "x", "share": 0.99,
                                    "accuracy": 0.3, "f1_macro": 0.1}]
    text = "\n".join(diffattn.markdown(result | {"rows": []}, "dev"))
    assert "**Collapsed, not compared**: arabic_news_ant seed 43: the plain teacher predicts x for 99.0%" in text
    rows = [{"dataset": "arabic_news_ant", "seed": seed, "role": "teacher", "variant": "plain", "fp32": {}}
            for seed in (42, 44)]
    rows.append({"dataset": "ag_news", "seed": 42, "role": "teacher", "variant": "plain", "fp32": {}, "int8": {}})
    (line, _), = [diffattn.no_int8(rows)]
    assert line.startswith("**No int8 artifact**: arabic_news_ant: teacher plain (seed 42, 44): export's accuracy")
