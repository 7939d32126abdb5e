"""`edgekd verify` end to end on a real (tiny) ONNX bundle, and `edgekd report` merging devices."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest

from edgekd.cli import main
from tests.conftest import write_dataset


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


def _verify(bundle: Path, data: Path, teacher: Path, *extra: str) -> int:
    return main(["verify", str(bundle), "--data", str(data), "--reference", str(teacher), "--runs", "5",
                 "--batch-size", "8", "--backends", "onnx", *extra])


def test_verify_writes_valid_report(fp32_bundle: Path, test_csv: Path, tiny_bert: Path) -> None:
    import jsonschema

    from edgekd.verify.report import load_schema

    assert _verify(fp32_bundle, test_csv, tiny_bert) == 0
    [path] = list((fp32_bundle / "reports").glob("*.json"))
    report = json.loads(path.read_text())
    jsonschema.validate(report, load_schema())
    names = [m["name"] for m in report["models"]]
    assert names == ["teacher", "student-torch", "onnx-fp32"]
    onnx_row = report["models"][2]
    assert onnx_row["parity"]["agreement"] == 1.0
    assert onnx_row["parity"]["max_abs_logit"] < 1e-3
    # the teacher is the student here, so the student's distillation gap is exactly zero
    assert report["models"][1]["gap"]["accuracy_gap"] == 0.0 and report["models"][1]["gap"]["flips"] == 0
    # the child's own peak (a tiny ONNX model: well under the torch-laden test process's ~1 GB)
    assert 10_000_000 < onnx_row["latency"]["cold_start"]["peak_rss_bytes"] < 400_000_000
    assert onnx_row["latency"]["batch1"]["runs"] >= 5
    assert report["passed"] and [g["metric"] for g in report["gates"]] == ["agreement", "max_abs_logit"]
    html = path.with_suffix(".html").read_text()
    assert html.count("data:image/png;base64,") == 4
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


def test_perturbed_weights_fail_gate(fp32_bundle: Path, test_csv: Path, tiny_bert: Path, tmp_path: Path,
                                     capsys: pytest.CaptureFixture[str]) -> None:
    broken = tmp_path / "broken"
    shutil.copytree(fp32_bundle, broken)
    _perturb_onnx(broken)
    code = _verify(broken, test_csv, tiny_bert, "--no-cold-start")
    err = capsys.readouterr().err
    assert code == 1
    assert "gate(s) failed" in err and "onnx-fp32 max_abs_logit=" in err
    report = json.loads(next((broken / "reports").glob("*.json")).read_text())
    assert report["passed"] is False
    failed = {g["metric"] for g in report["gates"] if not g["passed"]}
    assert "max_abs_logit" in failed


def test_gate_flag_relaxes_threshold(fp32_bundle: Path, test_csv: Path, tiny_bert: Path, tmp_path: Path) -> None:
    code = _verify(fp32_bundle, test_csv, tiny_bert, "--no-cold-start", "--out", str(tmp_path),
                   "--gate-fp32-max-abs-logit", "0", "--max-samples", "10")
    assert code == 1  # nothing is exactly 0 apart: the stricter gate fails
    report = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert report["data"]["n"] == 10
    assert [g["threshold"] for g in report["gates"] if g["metric"] == "max_abs_logit"] == [0.0]


def test_max_samples_zero_uses_every_test_text(fp32_bundle: Path, data_dir: Path, tiny_bert: Path, tmp_path: Path,
                                               capsys: pytest.CaptureFixture) -> None:
    assert _verify(fp32_bundle, data_dir, tiny_bert, "--no-cold-start", "--out", str(tmp_path),
                   "--max-samples", "0") == 0
    report = json.loads(next(tmp_path.glob("*.json")).read_text())
    assert report["data"]["n"] == 40  # the whole test split, not the default 500-text sample cap
    assert _verify(fp32_bundle, data_dir, tiny_bert, "--max-samples", "-1") == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--max-samples must be 0" in err[0]


def test_report_merges_devices(fp32_bundle: Path, test_csv: Path, tiny_bert: Path, tmp_path: Path) -> None:
    if not list((fp32_bundle / "reports").glob("*.json")):
        assert _verify(fp32_bundle, test_csv, tiny_bert, "--no-cold-start") == 0
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
