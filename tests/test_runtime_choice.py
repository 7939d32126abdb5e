"""precision="auto" / backend="auto" pick what this device measured: the fastest artifact that passed
its gates in the bundle's verify report for this device; the fixed rule without a report, with a
stale one (an artifact's sha256 changed), or with one of another bundle. Reports are crafted; the
bundle is the real ONNX (+ OpenVINO when installed) test bundle, copied per test."""

from __future__ import annotations

import importlib.util
import json
import shutil
from pathlib import Path

import pytest
from runtime_conformance import build_onnx_bundle

import edgekd
from edgekd.bundle import read_manifest
from edgekd.cli import main as cli_main
from edgekd.verify.device import fingerprint
from edgekd.verify.report import report_path, reports_dir


@pytest.fixture(scope="module")
def built(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_onnx_bundle(tiny_bert, tmp_path_factory.getbasetemp() / "runtime_bundle")


@pytest.fixture(scope="module")
def device_id() -> str:
    return fingerprint()["device_id"]


@pytest.fixture
def bundle(built: Path, tmp_path: Path) -> Path:
    """A private copy: the tests write reports into it."""
    return Path(shutil.copytree(built, tmp_path / "bundle", ignore=shutil.ignore_patterns("reports")))


def _report(bundle: Path, p50_ms: dict[str, float], texts_per_s: dict[str, float] | None = None,
            failed: tuple[str, ...] = ()) -> dict:
    """A verify report of every artifact of `bundle` with the given batch-1 p50 (and throughput)."""
    manifest = read_manifest(bundle)
    models, gates = [], []
    for a in manifest.artifacts:
        models.append({"name": a.name, "kind": "artifact", "backend": a.backend, "precision": a.precision,
                       "engine": a.backend, "sha256": a.sha256,
                       "latency": {"batch1": {"p50_ms": p50_ms[a.name]},
                                   "throughput": {"batch_size": 32,
                                                  "texts_per_s": (texts_per_s or {}).get(a.name, 100.0)}}})
        gates.append({"artifact": a.name, "precision": a.precision, "metric": "agreement", "op": ">=",
                      "threshold": 0.99, "value": 0.9 if a.name in failed else 1.0,
                      "verdict": "FAIL" if a.name in failed else "PASS", "passed": a.name not in failed})
    return {"schema": "edgekd.verify.report", "schema_version": 1, "bundle": {"contract": manifest.contract},
            "models": models, "gates": gates, "passed": not failed}


def _write(report: dict, folder: Path, device_id: str) -> Path:
    path = report_path(folder, device_id)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(report))
    return path


def _names(bundle: Path) -> list[str]:
    return [a.name for a in read_manifest(bundle).artifacts]


def test_auto_loads_the_artifact_this_device_measured_fastest(bundle: Path, device_id: str) -> None:
    names = _names(bundle)
    p50 = {n: 5.0 + i for i, n in enumerate(names)} | {"onnx-fp32": 1.5}  # not the fixed rule's pick
    path = _write(_report(bundle, p50), bundle / "reports", device_id)
    clf = edgekd.load(bundle)
    assert (clf.backend, clf.precision) == ("onnx", "fp32")
    assert clf.choice.rule == "measured" and clf.choice.report == str(path)
    assert clf.choice.measured == p50
    assert "onnx-fp32 1.5 ms" in clf.choice.reason and "batch-1 p50" in clf.choice.reason
    # prefer="throughput" ranks the same report by texts/s instead.
    tput = {n: 100.0 for n in names} | {"onnx-int8": 900.0}
    _write(_report(bundle, p50, tput), bundle / "reports", device_id)
    fast = edgekd.load(bundle, prefer="throughput")
    assert (fast.backend, fast.precision) == ("onnx", "int8") and "900 texts/s" in fast.choice.reason
    # An explicit backend narrows the candidates; auto precision still follows the report.
    assert edgekd.load(bundle, backend="onnx").precision == "fp32"
    assert edgekd.load(bundle, precision="int8", prefer="throughput").choice.artifact == "onnx-int8"


def test_an_artifact_that_failed_a_gate_here_is_not_picked(bundle: Path, device_id: str) -> None:
    names = _names(bundle)
    p50 = {n: 9.0 for n in names} | {"onnx-fp32": 1.0, "onnx-int8": 2.0}
    _write(_report(bundle, p50, failed=("onnx-fp32",)), bundle / "reports", device_id)
    clf = edgekd.load(bundle)
    assert clf.precision == "int8" and clf.choice.rule == "measured"
    assert "failed a gate: onnx-fp32" in clf.choice.reason and "onnx-fp32" not in clf.choice.measured


def _fixed(bundle: Path) -> tuple[str, str]:
    """What the fixed rule loads (the report-free choice)."""
    clf = edgekd.load(bundle)
    assert clf.choice.rule == "fixed" and "fixed rule" in clf.choice.reason
    return clf.backend, clf.precision


def test_without_a_report_auto_keeps_the_fixed_rule(bundle: Path) -> None:
    clf = edgekd.load(bundle)
    # OpenVINO when installed (its artifacts here are fp32 and fp16), else ONNX Runtime's int8.
    rule = ("openvino", "fp32") if importlib.util.find_spec("openvino") else ("onnx", "int8")
    assert (clf.backend, clf.precision) == rule and clf.choice.rule == "fixed"
    assert clf.choice.reason.startswith("no verify report for this device")
    assert (clf.choice.backend, clf.choice.artifact) == (rule[0], "-".join(rule))
    # A precision asked for runs on the rule's first backend that has it.
    assert edgekd.load(bundle, precision="int8").backend == "onnx"


def test_a_stale_report_falls_back_to_the_fixed_rule(bundle: Path, device_id: str) -> None:
    rule = _fixed(bundle)
    names = _names(bundle)
    report = _report(bundle, {n: 9.0 for n in names} | {"onnx-fp32": 1.0})
    report["models"][0]["sha256"] = "0" * 64  # that artifact was re-exported since it was measured
    _write(report, bundle / "reports", device_id)
    clf = edgekd.load(bundle)
    assert (clf.backend, clf.precision) == rule and clf.choice.rule == "fixed"
    assert "is stale" in clf.choice.reason and report["models"][0]["name"] in clf.choice.reason
    # A report written before rows carried their sha256 cannot be checked: the fixed rule too.
    for m in report["models"]:
        m.pop("sha256")
    _write(report, bundle / "reports", device_id)
    assert "is stale" in edgekd.load(bundle).choice.reason


def test_another_bundles_or_devices_report_is_not_used(bundle: Path, device_id: str) -> None:
    names = _names(bundle)
    report = _report(bundle, {n: 9.0 for n in names} | {"onnx-fp32": 1.0})
    _write(report, bundle / "reports", "linux-x86_64-other-cpu-0123abcd")  # another device's numbers
    assert edgekd.load(bundle).choice.reason.startswith("no verify report for this device")
    report["bundle"]["contract"] = "f" * 64
    _write(report, bundle / "reports", device_id)
    assert "of another bundle" in edgekd.load(bundle).choice.reason


def test_a_report_that_did_not_measure_every_candidate_does_not_decide(bundle: Path, device_id: str) -> None:
    names = _names(bundle)
    report = _report(bundle, {n: 9.0 for n in names} | {"onnx-fp32": 1.0})
    dropped = report["models"].pop(next(i for i, m in enumerate(report["models"]) if m["name"] == "onnx-int8"))
    _write(report, bundle / "reports", device_id)
    clf = edgekd.load(bundle)
    assert clf.choice.rule == "fixed" and f"no batch-1 p50 latency of {dropped['name']}" in clf.choice.reason


def test_a_zip_uses_the_reports_beside_it(bundle: Path, device_id: str, tmp_path: Path,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.pack import pack_bundle

    monkeypatch.setenv("EDGEKD_CACHE", str(tmp_path / "cache"))
    zipped = pack_bundle(bundle, tmp_path / "model.zip").out
    _write(_report(bundle, {n: 9.0 for n in _names(bundle)} | {"onnx-fp32": 1.0}), reports_dir(zipped), device_id)
    clf = edgekd.load(zipped)
    assert clf.choice.rule == "measured" and clf.precision == "fp32"


def test_explicit_choices_and_bad_prefer(bundle: Path, device_id: str) -> None:
    _write(_report(bundle, {n: 9.0 for n in _names(bundle)} | {"onnx-fp32": 1.0}), bundle / "reports", device_id)
    clf = edgekd.load(bundle, backend="onnx", precision="int8")
    assert clf.precision == "int8" and clf.choice.rule == "requested"
    with pytest.raises(ValueError, match="prefer must be one of latency, throughput, got 'speed'"):
        edgekd.load(bundle, prefer="speed")


def test_info_and_predict_verbose_say_which_artifact_and_why(bundle: Path, device_id: str,
                                                             capsys: pytest.CaptureFixture,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "250")
    _write(_report(bundle, {n: 9.0 for n in _names(bundle)} | {"onnx-fp32": 1.0}), bundle / "reports", device_id)
    assert cli_main(["info", str(bundle)]) == 0
    out = capsys.readouterr().out
    assert "edgekd.load(bundle) on this device" in out and "measured" in out and "onnx-fp32 1 ms" in out
    assert cli_main(["--verbose", "predict", str(bundle), "some text", "--json"]) == 0
    captured = capsys.readouterr()
    assert "edgekd predict: onnx-fp32 (measured: fastest batch-1 p50" in captured.err
    assert json.loads(captured.out)["choice"]["artifact"] == "onnx-fp32"


def test_choosing_from_a_report_imports_no_torch(bundle: Path, device_id: str) -> None:
    import subprocess
    import sys

    _write(_report(bundle, {n: 9.0 for n in _names(bundle)} | {"onnx-fp32": 1.0}), bundle / "reports", device_id)
    code = ("import json, sys, edgekd\n"
            f"clf = edgekd.load({str(bundle)!r}); clf.predict('x')\n"
            "print(json.dumps({'rule': clf.choice.rule, 'heavy': [m for m in ('torch', 'transformers', 'optimum') "
            "if m in sys.modules]}))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"rule": "measured", "heavy": []}
