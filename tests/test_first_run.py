"""A newcomer's first run: the README's `edgekd export` and `edgekd verify` command lines exactly as
written, with relative paths, from a working directory that is neither the repository nor the
test's, under a path with a space, on a small real AG News slice laid out where the README expects
it (`../shared/data/ag_news`). Every target with --int8; then the drop path (a strict int8 gate
gives a bundle without int8, exit 0, and a manifest entry saying why) and --require-int8 (non-zero
exit, the bundle left as it was)."""

from __future__ import annotations

import json
import os
import shlex
from pathlib import Path

import pytest
from conftest import write_dataset

from edgekd import bundle as bundle_mod
from edgekd.cli import main as cli_main

README = Path(__file__).resolve().parents[1] / "README.md"
pytestmark = pytest.mark.slow


def readme_command(verb: str) -> list[str]:
    """The README's `.venv/bin/edgekd VERB ...` line as argv (without the program)."""
    for line in README.read_text(encoding="utf-8").splitlines():
        words = shlex.split(line.split("#")[0]) if line.startswith(".venv/bin/edgekd ") else []
        if len(words) > 1 and words[1] == verb:
            return words[1:]
    raise AssertionError(f"README.md has no '.venv/bin/edgekd {verb}' line")


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """<tmp>/first run/proj with ../shared/data/ag_news (a real slice), a 1-epoch teacher in
    runs/teacher and the README's 3-layer student in runs/students/layers-3."""
    root = tmp_path_factory.mktemp("edgekd") / "first run"
    write_dataset(root / "shared" / "data" / "ag_news", {"train": 900, "test": 240})
    proj = root / "proj"
    proj.mkdir()
    before = os.getcwd()
    os.chdir(proj)  # the test moves; edgekd itself never changes the working directory
    try:
        fast = ["--epochs", "1", "--max-length", "64", "--no-progress"]
        assert cli_main(["train", "--data", "../shared/data/ag_news", "--model", "sentence-transformers/all-MiniLM-L6-v2",
                         "--out", "runs/teacher", "--lr", "1e-4", *fast]) == 0
        assert cli_main(["distill", "--teacher", "runs/teacher", "--data", "../shared/data/ag_news",
                         "--student", "layers=3", "--out", "runs/students/layers-3", "--lr", "2e-4", "--epochs", "1",
                         "--no-progress"]) == 0
    finally:
        os.chdir(before)
    return proj


@pytest.fixture
def in_project(project: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(project)
    return project


def test_readme_export_and_verify_as_written(in_project: Path, capsys: pytest.CaptureFixture) -> None:
    export = readme_command("export")
    assert "--int8" in export and "all" in export and not Path(export[export.index("--out") + 1]).is_absolute()
    assert cli_main(export) == 0
    out = capsys.readouterr().out
    bundle = in_project / export[export.index("--out") + 1]
    manifest = bundle_mod.read_manifest(bundle)
    names = {a.name for a in manifest.artifacts}
    # Every float artifact passed; int8 is kept by accuracy control for every backend on this trained
    # student (each kept artifact names the setting that passed, with the numbers behind it).
    assert {"onnx-fp32", "openvino-fp32", "openvino-fp16", "coreml-fp16"} <= names
    control = manifest.calibration["accuracy_control"]
    for backend in ("onnx", "openvino", "coreml"):
        assert f"{backend}-int8" in names, (manifest.dropped, control.get(backend))
        art = manifest.artifact(backend, "int8")
        rec = control[backend]
        chosen = next(t for t in rec["tried"] if t["accepted"])
        assert art.quantization["variant"] == rec["chosen"] == chosen["name"]
        # one decision, on the whole validation split plus held-out train texts: 1,000 when the data has
        # them; this slice has 90 validation rows and 810 - 300 (calibration) = 510 train texts left
        assert rec["n_validation"] == 90 and rec["n_agreement"] >= 600 and chosen["n"] == rec["n_agreement"]
        assert chosen["agreement"] >= 0.99 and chosen["accuracy_drop"] <= 0.005
        lo, hi = chosen["agreement_ci"]
        assert lo <= chosen["agreement"] <= hi
        assert manifest.parity[art.name]["decided_by"] == "accuracy control"
    assert manifest.dropped == []
    assert "95% CI" in out and "onnx-int8" in out

    verify = readme_command("verify")
    assert cli_main(verify) == 0, capsys.readouterr()
    reports = list((bundle / "reports").glob("*.json"))
    assert len(reports) == 1
    report = json.loads(reports[0].read_text())
    verified = {m["name"] for m in report["models"] if m["kind"] == "artifact"}
    assert names <= verified and report["passed"]


def test_a_failed_int8_is_dropped_not_fatal_and_require_int8_refuses(in_project: Path,
                                                                     capsys: pytest.CaptureFixture) -> None:
    out = "runs/bundle strict"
    # A gate no int8 artifact can meet (its logits never equal fp32's exactly): every setting fails.
    strict = ["export", "runs/students/layers-3", "--target", "onnx", "--int8", "--calibration-data",
              "../shared/data/ag_news", "--calibration-size", "64", "--out", out, "--gate-int8-max-abs-logit", "0"]
    assert cli_main(strict) == 0
    printed = capsys.readouterr().out
    manifest = bundle_mod.read_manifest(in_project / out)
    assert [a.name for a in manifest.artifacts] == ["onnx-fp32"]
    assert not (in_project / out / "onnx" / "model.int8.onnx").exists()
    (drop,) = manifest.dropped
    assert drop["artifact"] == "onnx-int8" and drop["stage"] == "accuracy control"
    assert "max_abs_logit" in drop["reason"] and [t["name"] for t in drop["numbers"]] == [
        "static-qdq", "static-qdq-ffn-float", "dynamic"]
    assert "dropped onnx-int8 (accuracy control)" in printed

    before = {p.relative_to(in_project / out): p.read_bytes() for p in (in_project / out).rglob("*") if p.is_file()}
    assert cli_main([*strict, "--require-int8", "--force"]) != 0
    assert "--require-int8: no int8 artifact for onnx" in capsys.readouterr().err
    after = {p.relative_to(in_project / out): p.read_bytes() for p in (in_project / out).rglob("*") if p.is_file()}
    assert after == before
    leftovers = [p.name for d in (in_project, in_project / "runs") for p in d.iterdir() if p.name.startswith(".")]
    assert leftovers == []  # no staging (.partial) directory left behind
