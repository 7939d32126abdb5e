"""`edgekd info`: the manifest as tables, JSON, and a clear error on a non-bundle."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from conftest import AG_LABELS

from edgekd.cli import main as cli_main


@pytest.fixture(scope="module")
def bundle(tiny_onnx_bundle: Path) -> Path:
    return tiny_onnx_bundle


def test_info_prints_artifacts_labels_contract_and_parity(bundle: Path, capsys: pytest.CaptureFixture,
                                                          monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "200")  # rich wraps to the terminal width; keep cells whole for the asserts
    manifest = json.loads((bundle / "edgekd.json").read_text())
    assert cli_main(["info", str(bundle)]) == 0
    out = capsys.readouterr().out
    for needle in ("onnx/model.onnx", "fp32", manifest["artifacts"][0]["sha256"][:12], manifest["contract"][:16],
                   "Sci/Tech", "max_length=128", "passed", "onnxruntime"):
        assert needle in out, needle


def test_info_json_is_the_manifest(bundle: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["info", str(bundle), "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["labels"] == AG_LABELS and doc["artifacts"][0]["path"] == "onnx/model.onnx"
    assert doc["parity"]["onnx-fp32"]["status"] == "passed"


def test_info_on_a_non_bundle_fails_with_the_fix(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert cli_main(["info", str(tmp_path)]) == 2
    err = capsys.readouterr().err
    assert "is not an edgekd bundle" in err and "edgekd export" in err
