"""`edgekd verify` end to end on a real (tiny) ONNX bundle, and `edgekd report` merging devices.

The teacher is tiny_bert with its label order permuted (classifier rows and id2label together), so
every run exercises the alignment of logit columns to the bundle's labels by name."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgekd.cli import main
from tests.conftest import AG_LABELS, read_texts, write_dataset

# The permuted teacher's column j is tiny_bert's column PERMUTATION[j]: no label keeps its place.
PERMUTATION = [2, 0, 3, 1]


@pytest.fixture(scope="module")
def data_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real AG News dataset directory: train 120 rows, test 40."""
    return write_dataset(tmp_path_factory.mktemp("data"), {"train": 120, "test": 40})


@pytest.fixture(scope="module")
def test_csv(data_dir: Path) -> Path:
    return data_dir / "test.csv"


@pytest.fixture(scope="module")
def fp32_bundle(tiny_bert: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An onnx-fp32 bundle of tiny_bert written by the real exporter (`edgekd export`)."""
    out = tmp_path_factory.mktemp("b") / "bundle"
    assert main(["export", str(tiny_bert), "--target", "onnx", "--data", str(data_dir), "--out", str(out)]) == 0
    return out


def _copy_checkpoint(src: Path, dst: Path) -> Path:
    shutil.copytree(src, dst)
    return dst


@pytest.fixture(scope="module")
def teacher(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_bert with its labels in another order (PERMUTATION): the same function, other columns."""
    import torch
    from transformers import AutoModelForSequenceClassification

    out = _copy_checkpoint(tiny_bert, tmp_path_factory.mktemp("teacher") / "permuted")
    model = AutoModelForSequenceClassification.from_pretrained(out)
    perm = torch.tensor(PERMUTATION)
    with torch.no_grad():
        model.classifier.weight.copy_(model.classifier.weight[perm])  # weight: [num_labels, hidden]
        model.classifier.bias.copy_(model.classifier.bias[perm])
    names = [AG_LABELS[i] for i in PERMUTATION]
    model.config.id2label, model.config.label2id = dict(enumerate(names)), {n: i for i, n in enumerate(names)}
    model.save_pretrained(out)
    return out


def _verify(bundle: Path, data: Path, teacher: Path, *extra: str) -> int:
    return main(["verify", str(bundle), "--data", str(data), "--reference", str(teacher), "--runs", "5",
                 "--batch-size", "8", "--backends", "onnx", *extra])


def test_verify_writes_valid_report(fp32_bundle: Path, test_csv: Path, teacher: Path) -> None:
    import jsonschema

    from edgekd.verify.report import load_schema

    assert json.loads((teacher / "config.json").read_text())["id2label"]["0"] != AG_LABELS[0]
    assert _verify(fp32_bundle, test_csv, teacher) == 0
    [path] = list((fp32_bundle / "reports").glob("*.json"))
    report = json.loads(path.read_text())
    jsonschema.validate(report, load_schema())
    names = [m["name"] for m in report["models"]]
    assert names == ["teacher", "student-torch", "onnx-fp32"]
    onnx_row = report["models"][2]
    assert onnx_row["parity"]["agreement"] == 1.0
    assert onnx_row["parity"]["max_abs_logit"] < 1e-3
    # the teacher is the student with its label columns permuted: aligned by name it agrees exactly
    # (unaligned, no prediction would agree: the permutation moves every label)
    assert report["models"][1]["gap"]["accuracy_gap"] == 0.0 and report["models"][1]["gap"]["flips"] == 0
    assert report["models"][0]["accuracy"] == report["models"][1]["accuracy"]
    assert report["skipped"] == []
    # the child's own peak (a tiny ONNX model: well under the torch-laden test process's ~1 GB)
    assert 10_000_000 < onnx_row["latency"]["cold_start"]["peak_rss_bytes"] < 400_000_000
    assert onnx_row["latency"]["batch1"]["runs"] >= 5
    assert report["passed"] and [g["metric"] for g in report["gates"]] == ["agreement", "max_abs_logit"]
    html = path.with_suffix(".html").read_text()
    assert html.count("data:image/png;base64,") == 6  # 5 charts (with F1 per class) + the student's embedding map
    assert 'alt="embedding map of student-torch"' in html
    # the map: every one of the 40 test texts (under the 2,000 cap), in file order, with its true label
    emb = report["models"][1]["embedding_map"]
    _, names = read_texts("ag_news", "test", 40)
    assert emb["n"] == 40 and emb["rows"] == list(range(40)) and len(emb["points"]) == 40
    assert emb["labels"] == [AG_LABELS.index(n) for n in names]
    assert not any("embedding_map" in m for m in report["models"][::2])  # teacher and artifact rows: none
    assert "| onnx-fp32 |" in path.with_suffix(".md").read_text()


def _perturb_onnx(bundle: Path) -> None:
    """Add noise to the largest initializer after export, then re-hash the manifest entry so the
    sha256 check passes and only the parity gate can catch the change."""
    import onnx
    from onnx import numpy_helper

    from edgekd.bundle import sha256_path

    path = bundle / "onnx" / "model.onnx"
    model = onnx.load(path)
    big = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    w = numpy_helper.to_array(big)
    noisy = w + np.random.default_rng(0).normal(0, 0.5 * float(np.abs(w).mean()) + 1e-3, w.shape).astype(w.dtype)
    big.CopyFrom(numpy_helper.from_array(noisy, big.name))
    onnx.save(model, path)
    manifest = json.loads((bundle / "edgekd.json").read_text())
    for art in manifest["artifacts"]:
        if art["path"] == "onnx/model.onnx":
            art["sha256"] = sha256_path(path)
    (bundle / "edgekd.json").write_text(json.dumps(manifest))


def test_perturbed_weights_fail_gate(fp32_bundle: Path, test_csv: Path, teacher: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(fp32_bundle, broken)
    _perturb_onnx(broken)
    code = _verify(broken, test_csv, teacher, "--no-cold-start")
    err = capsys.readouterr().err
    assert code == 1
    assert "gate(s) failed" in err and "onnx-fp32 max_abs_logit=" in err
    report = json.loads(next((broken / "reports").glob("*.json")).read_text())
    assert report["passed"] is False
    failed = {g["metric"] for g in report["gates"] if not g["passed"]}
    assert "max_abs_logit" in failed


def test_gate_flag_relaxes_threshold(fp32_bundle: Path, test_csv: Path, teacher: Path, tmp_path: Path) -> None:
    code = _verify(fp32_bundle, test_csv, teacher, "--no-cold-start", "--out", str(tmp_path),
                   "--gate-fp32-max-abs-logit", "0", "--max-samples", "10")
    assert code == 1  # nothing is exactly 0 apart: the stricter gate fails
    report = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert report["data"]["n"] == 10
    assert [g["threshold"] for g in report["gates"] if g["metric"] == "max_abs_logit"] == [0.0]


def test_max_samples_zero_uses_every_test_text(fp32_bundle: Path, data_dir: Path, teacher: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    assert _verify(fp32_bundle, data_dir, teacher, "--no-cold-start", "--out", str(tmp_path),
                   "--max-samples", "0") == 0
    report = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert report["data"]["n"] == 40  # the whole test split, not the default 500-text sample cap
    assert _verify(fp32_bundle, data_dir, teacher, "--max-samples", "-1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-samples must be 0" in err[0]


def test_report_merges_devices(fp32_bundle: Path, test_csv: Path, teacher: Path, tmp_path: Path) -> None:
    if not list((fp32_bundle / "reports").glob("*.json")):
        assert _verify(fp32_bundle, test_csv, teacher, "--no-cold-start") == 0
    [a] = list((fp32_bundle / "reports").glob("*.json"))
    other = json.loads(a.read_text())
    other["device"].update(device_id="macos-arm64-apple-m2-0123abcd", os="darwin", arch="arm64", cpu_model="Apple M2")
    for m in other["models"]:
        if m.get("latency"):
            m["latency"]["batch1"]["p50_ms"] = 1.25
    b = tmp_path / "mac.json"
    b.write_text(json.dumps(other))
    out = tmp_path / "merged" / "report.html"
    assert main(["report", str(a), str(b), "--out", str(out)]) == 0
    md = out.with_suffix(".md").read_text()
    device_a = json.loads(a.read_text())["device"]["device_id"]
    assert f"| model | {device_a} | macos-arm64-apple-m2-0123abcd |" in md
    assert "| onnx-fp32 |" in md and "1.25" in md
    assert out.read_text().count("data:image/png;base64,") == 1


def test_verify_rejects_a_non_bundle(tmp_path: Path, test_csv: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["verify", str(tmp_path), "--data", str(test_csv)]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgekd verify: error:") and "not an edgekd bundle" in err and "\n" not in err


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgekd verify: error:") and "\n" not in err, err
    return err


# --- references fit the bundle: label order and the student's weights ------------------------------


def test_labels_are_aligned_by_name() -> None:
    from edgekd.models import label_order
    from edgekd.verify.runner import label_columns

    assert label_order({1: "b", 0: "a"}, "x") == label_order({"1": "b", "0": "a"}, "x") == ["a", "b"]
    assert label_columns(["b", "c", "a"], ["a", "b", "c"], "teacher", Path("t"), "--reference") == [2, 0, 1]


def test_permuted_teacher_gives_the_same_metrics(fp32_bundle: Path, test_csv: Path, tiny_bert: Path, teacher: Path,
                                                 tmp_path: Path) -> None:
    rows = {}
    for name, ref in (("same-order", tiny_bert), ("permuted", teacher)):
        out = tmp_path / name
        assert _verify(fp32_bundle, test_csv, ref, "--no-cold-start", "--max-samples", "20", "--out", str(out)) == 0
        rows[name] = json.loads(next(out.glob("*.json")).read_text())["models"]
    assert rows["permuted"][0]["accuracy"] == rows["same-order"][0]["accuracy"]  # the teacher row
    assert rows["permuted"][1]["gap"] == rows["same-order"][1]["gap"]  # the student vs the teacher
    assert rows["permuted"][1]["gap"]["flips"] == 0


def test_teacher_with_other_labels_is_refused(fp32_bundle: Path, test_csv: Path, tiny_bert: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    other = _copy_checkpoint(tiny_bert, tmp_path / "other-labels")
    config = json.loads((other / "config.json").read_text())
    config["id2label"]["0"] = "Planet"
    config["label2id"] = {v: int(k) for k, v in config["id2label"].items()}
    (other / "config.json").write_text(json.dumps(config))
    assert _verify(fp32_bundle, test_csv, other, "--out", str(tmp_path / "reports")) == 2
    err = _one_line_error(capsys)
    assert "has other labels than the bundle" in err and "missing ['World']" in err and "extra ['Planet']" in err
    assert not (tmp_path / "reports").exists()  # refused before any model ran


def test_manifest_records_the_student_weights(fp32_bundle: Path, tiny_bert: Path) -> None:
    from edgekd.bundle import checkpoint_weights_sha256

    provenance = json.loads((fp32_bundle / "edgekd.json").read_text())["provenance"]
    assert provenance["student_weights_sha256"] == checkpoint_weights_sha256(tiny_bert)
    assert len(provenance["student_weights_sha256"]) == 64


def test_a_different_student_is_refused(fp32_bundle: Path, test_csv: Path, tiny_bert: Path, teacher: Path,
                                        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from safetensors.torch import load_file, save_file

    other = _copy_checkpoint(tiny_bert, tmp_path / "other-student")
    [weights] = other.glob("*.safetensors")
    tensors = load_file(weights)
    tensors["classifier.bias"][0] += 1e-3  # one weight changed
    save_file(tensors, weights, metadata={"format": "pt"})
    assert _verify(fp32_bundle, test_csv, teacher, "--student", str(other), "--out", str(tmp_path / "r")) == 2
    err = _one_line_error(capsys)
    assert f"the student {other} is not the one bundle" in err and "pass --student with the checkpoint" in err
    assert not (tmp_path / "r").exists()
    # the checkpoint the bundle came from, named explicitly, is accepted
    assert _verify(fp32_bundle, test_csv, teacher, "--student", str(tiny_bert), "--no-cold-start",
                   "--max-samples", "10", "--out", str(tmp_path / "ok")) == 0


def test_older_bundle_without_weights_hash_gets_a_note(fp32_bundle: Path, test_csv: Path, teacher: Path,
                                                       tmp_path: Path) -> None:
    old = tmp_path / "old"
    shutil.copytree(fp32_bundle, old, ignore=shutil.ignore_patterns("reports"))
    manifest = json.loads((old / "edgekd.json").read_text())
    del manifest["provenance"]["student_weights_sha256"]
    (old / "edgekd.json").write_text(json.dumps(manifest))
    assert _verify(old, test_csv, teacher, "--no-cold-start", "--max-samples", "10") == 0
    report = json.loads(next((old / "reports").glob("*.json")).read_text())
    assert any("records no student_weights_sha256" in n for n in report["notes"])


# --- never pass on less than the bundle ------------------------------------------------------------


@pytest.fixture(scope="module")
def two_backend_bundle(tiny_bert: Path, data_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An onnx-fp32 + openvino-fp32 + openvino-fp16 bundle of tiny_bert (the real exporter)."""
    out = tmp_path_factory.mktemp("b2") / "bundle"
    assert main(["export", str(tiny_bert), "--target", "onnx,openvino", "--data", str(data_dir),
                 "--out", str(out)]) == 0
    return out


def test_backends_filter_needs_allow_partial(two_backend_bundle: Path, test_csv: Path, teacher: Path, tmp_path: Path,
                                             capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "reports"
    assert _verify(two_backend_bundle, test_csv, teacher, "--no-cold-start", "--out", str(out)) == 2
    err = _one_line_error(capsys)
    assert "2 artifact(s)" in err and "--allow-partial" in err
    assert "openvino-fp32: filtered out" in err and "openvino-fp16: filtered out" in err
    assert not out.exists()  # refused before any model loaded

    assert _verify(two_backend_bundle, test_csv, teacher, "--no-cold-start", "--max-samples", "10", "--out", str(out),
                   "--allow-partial") == 0
    [path] = out.glob("*.json")
    report = json.loads(path.read_text())
    assert [m["name"] for m in report["models"]] == ["teacher", "student-torch", "onnx-fp32"]
    reason = "filtered out: not among the requested backends (onnx)"
    assert report["skipped"] == [{"artifact": f"openvino-{p}", "backend": "openvino", "reason": reason}
                                 for p in ("fp32", "fp16")]
    assert any(n.startswith("openvino-fp32: not verified") for n in report["notes"])
    md = path.with_suffix(".md").read_text()
    assert "partial: 2 artifact(s) not verified" in md
    assert "| openvino-fp32 | filtered out: not among the requested backends (onnx) |" in md
    assert "Not verified on this device" in path.with_suffix(".html").read_text()


def test_backend_not_installed_needs_allow_partial(two_backend_bundle: Path, test_csv: Path, teacher: Path,
                                                   monkeypatch: pytest.MonkeyPatch,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    from edgekd.runtimes import classifier

    real = classifier.available_backends
    monkeypatch.setattr(classifier, "available_backends", lambda m: [b for b in real(m) if b != "openvino"])
    code = main(["verify", str(two_backend_bundle), "--data", str(test_csv), "--reference", str(teacher)])
    assert code == 2
    err = _one_line_error(capsys)
    assert "openvino-fp32: backend openvino is not installed here (pip install 'edgekd[openvino]')" in err
    assert "--allow-partial" in err


def test_coreml_reference_counts_as_verified(monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.bundle import Artifact, Manifest, TokenizerSettings
    from edgekd.errors import EdgekdError
    from edgekd.runtimes import classifier
    from edgekd.verify import runner

    manifest = Manifest(labels=["a", "b"], tokenizer=TokenizerSettings(max_length=8, inputs=["input_ids"]),
                        artifacts=[Artifact("onnx", "fp32", "onnx/model.onnx"),
                                   Artifact("coreml", "fp16", "coreml/model.mlpackage"),
                                   Artifact("openvino", "fp32", "openvino/model.xml")])
    monkeypatch.setattr(runner.sys, "platform", "linux")
    monkeypatch.setattr(classifier, "available_backends", lambda m: ["onnx", "coreml-reference"])
    runs, notes, skipped = runner.plan_runs(manifest, None)
    assert [(r.backend, r.name) for r in runs] == [("onnx", "onnx-fp32"), ("coreml-reference", "coreml-fp16")]
    assert [s["artifact"] for s in skipped] == ["openvino-fp32"]
    with pytest.raises(EdgekdError, match=r"openvino-fp32: backend openvino is not installed.*--allow-partial"):
        runner.require_complete(Path("b"), skipped, allow_partial=False)
    runner.require_complete(Path("b"), skipped, allow_partial=True)
    runs, _, skipped = runner.plan_runs(manifest, ["onnx", "coreml"])  # --backends coreml selects the reference
    assert [r.backend for r in runs] == ["onnx", "coreml-reference"] and skipped[0]["artifact"] == "openvino-fp32"
