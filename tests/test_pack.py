"""`edgekd pack`: one deterministic zip per bundle, checked before it is written, that edgekd.load,
predict, info and verify take as they take the directory; a Core ML .mlpackage comes back whole."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import numpy as np
import pytest
from conftest import read_texts, write_dataset
from runtime_conformance import build_exported_bundle

import edgekd
from edgekd.bundle import check_bundle, open_bundle, sha256_path
from edgekd.cli import main
from edgekd.exporters.bundle_writer import ExportData, ExportOptions, export_bundle
from edgekd.pack import ZIP_EPOCH


@pytest.fixture(autouse=True)
def _private_cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEKD_CACHE", str(tmp_path / "cache"))  # zip extractions of this test only


@pytest.fixture(scope="module")
def bundle(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """tiny_bert by the real exporter: onnx-fp32 and OpenVINO IRs (model.xml + its model.bin sidecar),
    plus a reports/ folder as verify writes it."""
    out = tmp_path_factory.mktemp("pack") / "bundle"
    texts, _ = read_texts("ag_news", "test", 24)
    export_bundle(tiny_bert, out, ExportData(test_texts=texts),
                  ExportOptions(targets=["onnx", "openvino"], check_per_class=8), log=lambda m: None)
    (out / "reports").mkdir()
    (out / "reports" / "linux-x86_64-cpu-0123abcd.json").write_text('{"passed": true}\n')
    return out


@pytest.fixture()
def copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "copy"))


def _pack(bundle: Path, out: Path, *extra: str) -> int:
    return main(["pack", str(bundle), "--out", str(out), *extra])


def _one_line_error(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgekd pack: error:") and "\n" not in err, err
    return err


def test_same_bundle_gives_the_same_bytes(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    # The same bundle elsewhere, its files written at other times, plus a stray file that is not part of it.
    moved = Path(shutil.copytree(bundle, tmp_path / "elsewhere" / "deeper" / "b"))
    for p in moved.rglob("*"):
        os.utime(p, (1_700_000_000, 1_700_000_000))
    (moved / "notes.txt").write_text("not part of the bundle")
    assert _pack(bundle, tmp_path / "a.zip") == 0
    out = capsys.readouterr().out
    assert _pack(bundle, tmp_path / "again.zip") == 0
    assert _pack(moved, tmp_path / "moved.zip") == 0
    moved_out = capsys.readouterr().out
    first = (tmp_path / "a.zip").read_bytes()
    assert first == (tmp_path / "again.zip").read_bytes() == (tmp_path / "moved.zip").read_bytes()
    assert "not packed (not part of the bundle): notes.txt" in moved_out

    manifest = check_bundle(bundle)
    with zipfile.ZipFile(tmp_path / "a.zip") as zf:
        infos = zf.infolist()
    names = [i.filename for i in infos]
    assert names == sorted(names)
    expected = {"edgekd.json", "tokenizer.json", "reports/linux-x86_64-cpu-0123abcd.json"}
    expected |= {p for a in manifest.artifacts for p in (a.path, a.path.replace(".xml", ".bin"))}
    assert "openvino/model.bin" in expected
    assert set(names) == expected  # IR weights (the sidecar) and the reports included, no directory entries
    for info in infos:
        assert info.date_time == ZIP_EPOCH and info.external_attr >> 16 == 0o100644
        assert info.compress_type == zipfile.ZIP_DEFLATED and info.create_system == 3
    size = (tmp_path / "a.zip").stat().st_size
    assert f"a.zip: {size / 1e6:.2f} MB ({len(expected)} files" in out
    assert f"sha256 {sha256_path(tmp_path / 'a.zip')}" in out


def test_zip_predicts_and_infos_like_the_directory(bundle: Path, tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    zipped = tmp_path / "model.zip"
    assert _pack(bundle, zipped) == 0
    texts, _ = read_texts("ag_news", "test", 40)
    for backend, precision in (("onnx", "fp32"), ("openvino", "fp32")):
        from_dir = edgekd.load(bundle, backend=backend, precision=precision)
        from_zip = edgekd.load(zipped, backend=backend, precision=precision)
        assert from_zip.bundle.is_relative_to(tmp_path / "cache")
        # the reports travel with the zip, where edgekd serve's /report and /info look (clf.bundle/reports)
        assert {p.name for p in (from_zip.bundle / "reports").iterdir()} == {"linux-x86_64-cpu-0123abcd.json"}
        np.testing.assert_array_equal(from_zip.logits(texts), from_dir.logits(texts))
        assert [p.label for p in from_zip.predict(texts)] == [p.label for p in from_dir.predict(texts)]
    capsys.readouterr()
    docs = {}
    for name, path in (("dir", bundle), ("zip", zipped)):
        assert main(["predict", str(path), *texts[:5], "--json", "--backend", "onnx"]) == 0
        predictions = json.loads(capsys.readouterr().out)["predictions"]
        assert main(["info", str(path), "--json"]) == 0
        docs[name] = (predictions, json.loads(capsys.readouterr().out))
    assert docs["zip"] == docs["dir"]
    assert main(["info", str(zipped)]) == 0 and "onnx/model.onnx" in capsys.readouterr().out


def test_mlpackage_round_trips(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory, tmp_path: Path) -> None:
    texts, _ = read_texts("ag_news", "test", 24)
    exported = build_exported_bundle(tiny_bert, tmp_path_factory.getbasetemp() / "exported_bundle", texts)
    [art] = [a for a in check_bundle(exported).artifacts if a.backend == "coreml"]
    assert (exported / art.path).is_dir()
    assert _pack(exported, tmp_path / "coreml.zip") == 0
    root = open_bundle(tmp_path / "coreml.zip")
    tree = sorted(p.relative_to(exported / art.path).as_posix() for p in (exported / art.path).rglob("*"))
    assert sorted(p.relative_to(root / art.path).as_posix() for p in (root / art.path).rglob("*")) == tree
    assert sha256_path(root / art.path) == art.sha256
    sample = texts[:4]
    from_zip = edgekd.load(tmp_path / "coreml.zip", backend="coreml-reference", precision=art.precision)
    from_dir = edgekd.load(exported, backend="coreml-reference", precision=art.precision)
    np.testing.assert_array_equal(from_zip.logits(sample), from_dir.logits(sample))


def test_empty_directory_in_an_artifact_round_trips(copy: Path, tmp_path: Path) -> None:
    from edgekd.bundle import Artifact, finalize_artifact, read_manifest, write_manifest

    package = copy / "extra" / "model.mlpackage"
    (package / "Data" / "weights").mkdir(parents=True)
    (package / "Data" / "model.mlmodel").write_bytes(b"program")
    (package / "Data" / "empty").mkdir()
    manifest = read_manifest(copy)
    manifest.artifacts.append(finalize_artifact(copy, Artifact("fake", "fp32", "extra/model.mlpackage")))
    write_manifest(copy, manifest)
    assert _pack(copy, tmp_path / "m.zip") == 0
    with zipfile.ZipFile(tmp_path / "m.zip") as zf:
        dirs = {i.filename: i.external_attr >> 16 for i in zf.infolist() if i.is_dir()}
    assert dirs == {"extra/model.mlpackage/Data/empty/": 0o040755, "extra/model.mlpackage/Data/weights/": 0o040755}
    root = open_bundle(tmp_path / "m.zip")
    assert (root / "extra/model.mlpackage/Data/empty").is_dir()
    assert check_bundle(root).artifacts[-1].sha256 == manifest.artifacts[-1].sha256


@pytest.mark.parametrize("target", ["onnx/model.onnx", "openvino/model.bin", "tokenizer.json"])
def test_a_tampered_bundle_is_refused(copy: Path, tmp_path: Path, target: str,
                                      capsys: pytest.CaptureFixture[str]) -> None:
    with open(copy / target, "ab") as f:
        f.write(b" ")
    out = tmp_path / "out" / "model.zip"
    assert _pack(copy, out) == 2
    err = _one_line_error(capsys)
    if target == "tokenizer.json":
        assert "contract mismatch" in err
    else:
        assert "was modified after export" in err and target.split("/")[0] in err and "re-export" in err
    assert not out.parent.exists() or not any(out.parent.iterdir())  # nothing written, no partial file


def test_existing_out_needs_force(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "model.zip"
    out.write_bytes(b"an older zip")
    assert _pack(bundle, out) == 2
    assert "already exists; pass --force to replace it" in _one_line_error(capsys)
    assert out.read_bytes() == b"an older zip"
    assert _pack(bundle, out, "--force") == 0
    assert zipfile.is_zipfile(out) and check_bundle(open_bundle(out)).contract == check_bundle(bundle).contract
    packed = out.read_bytes()
    assert _pack(bundle, out, "--force") == 0 and out.read_bytes() == packed
    assert [p.name for p in tmp_path.iterdir() if p.name != "cache"] == ["model.zip"]  # no temp files left
    assert _pack(bundle, tmp_path) == 2 and "is a directory" in _one_line_error(capsys)
    assert _pack(bundle, bundle / "reports" / "self.zip") == 2 and "inside the bundle" in _one_line_error(capsys)
    assert not (bundle / "reports" / "self.zip").exists()


def test_no_reports(bundle: Path, tmp_path: Path) -> None:
    assert _pack(bundle, tmp_path / "lean.zip", "--no-reports") == 0
    with zipfile.ZipFile(tmp_path / "lean.zip") as zf:
        assert not [n for n in zf.namelist() if n.startswith("reports/")]
    assert edgekd.load(tmp_path / "lean.zip", backend="onnx").predict("zipped").label


def test_verify_a_zip_writes_its_reports_beside_it(bundle: Path, tmp_path: Path) -> None:
    zipped = tmp_path / "model.zip"
    assert _pack(bundle, zipped, "--no-reports") == 0
    data = write_dataset(tmp_path / "data", {"test": 12})
    assert main(["verify", str(zipped), "--data", str(data / "test.csv"), "--backends", "onnx", "--allow-partial",
                 "--runs", "3", "--no-cold-start"]) == 0
    [path] = (tmp_path / "model-reports").glob("*.json")
    report = json.loads(path.read_text())
    assert report["bundle"]["path"] == str(zipped) and report["data"]["n"] == 12
    assert [m["name"] for m in report["models"]] == ["student-torch", "onnx-fp32"]
    assert not (open_bundle(zipped) / "reports").exists()  # nothing written into the private extraction


def test_pack_imports_no_torch(bundle: Path, tmp_path: Path) -> None:
    code = ("import contextlib, io, json, sys\n"
            "from edgekd.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            f"    rc = main(['pack', {str(bundle)!r}, '--out', {str(tmp_path / 'm.zip')!r}])\n"
            "print(json.dumps([rc] + [m for m in ('torch', 'transformers', 'optimum') if m in sys.modules]))\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == [0]
