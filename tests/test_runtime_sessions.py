"""The artifact-running sessions (ONNX Runtime, OpenVINO, Core ML): contract check on load,
thread-safe run, options, clear errors, and no torch import."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import read_texts

from edgekd import bundle as bundle_mod
from edgekd.errors import BundleError, MissingDependency
from edgekd.exporters.bundle_writer import ExportData, ExportOptions, export_bundle
from edgekd.runtimes.classifier import open_session


@pytest.fixture(scope="module")
def bundle(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("sessions") / "bundle"
    texts, _ = read_texts("ag_news", "test", 24)
    export_bundle(tiny_bert, out, ExportData(test_texts=texts),
                  ExportOptions(targets=["onnx", "openvino"], check_per_class=8), log=lambda m: None)
    return out


@pytest.fixture(scope="module")
def batch(tiny_bert: Path) -> dict[str, np.ndarray]:
    from transformers import AutoTokenizer

    texts, _ = read_texts("ag_news", "test", 8)
    enc = AutoTokenizer.from_pretrained(str(tiny_bert))(texts, truncation=True, max_length=128, padding=True,
                                                        return_tensors="np")
    return {k: np.asarray(v, dtype=np.int64) for k, v in enc.items()}


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_session_runs_and_describes_itself(bundle: Path, batch: dict, backend: str) -> None:
    manifest = bundle_mod.read_manifest(bundle)
    art = manifest.artifact(backend, "fp32")
    session = open_session(backend, bundle / art.path, art, manifest, {"threads": 1})
    assert session.input_names == ["input_ids", "attention_mask", "token_type_ids"]
    assert session.input_dtype is np.int64
    assert session.engine.startswith({"onnx": "onnxruntime ", "openvino": "openvino "}[backend])
    logits = session.run(batch)
    assert logits.shape == (8, 4) and logits.dtype == np.float32 and np.isfinite(logits).all()


@pytest.mark.parametrize("spin", [False, True])
def test_onnx_spin_option_reaches_the_session(bundle: Path, batch: dict, spin: bool) -> None:
    manifest = bundle_mod.read_manifest(bundle)
    art = manifest.artifact("onnx", "fp32")
    session = open_session("onnx", bundle / art.path, art, manifest, {"threads": 2, "spin": spin})
    so = session._session.get_session_options()
    assert so.get_session_config_entry("session.intra_op.allow_spinning") == ("1" if spin else "0")
    reference = open_session("onnx", bundle / art.path, art, manifest, {"threads": 2}).run(batch)
    np.testing.assert_array_equal(session.run(batch), reference)  # a scheduling knob, same numbers
    with pytest.raises(ValueError, match="spin must be True or False"):
        open_session("onnx", bundle / art.path, art, manifest, {"spin": "no"})


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_session_is_thread_safe(bundle: Path, batch: dict, backend: str) -> None:
    manifest = bundle_mod.read_manifest(bundle)
    art = manifest.artifact(backend, "fp32")
    session = open_session(backend, bundle / art.path, art, manifest, {})
    expected = session.run(batch)
    rows = [{k: v[i : i + 1] for k, v in batch.items()} for i in range(8)]
    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(session.run, rows * 4))
    got = np.concatenate(results[:8])
    np.testing.assert_allclose(got, expected, atol=1e-5)
    for i, r in enumerate(results):  # each repeat identical to the first pass
        np.testing.assert_array_equal(r, results[i % 8])


@pytest.mark.parametrize("backend", ["onnx", "openvino"])
def test_session_refuses_artifact_of_another_contract(bundle: Path, backend: str) -> None:
    manifest = bundle_mod.read_manifest(bundle)
    art = manifest.artifact(backend, "fp32")
    other = dataclasses.replace(manifest, contract="0" * 64)
    with pytest.raises(BundleError, match=rf"{backend}-fp32 .*another tokenizer or label map"):
        open_session(backend, bundle / art.path, art, other, {})


def test_missing_runtime_dependency_names_the_extra(bundle: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    manifest = bundle_mod.read_manifest(bundle)
    art = manifest.artifact("onnx", "fp32")
    monkeypatch.setitem(sys.modules, "onnxruntime", None)
    with pytest.raises(MissingDependency, match=r"pip install 'edgekd\[onnx\]'"):
        open_session("onnx", bundle / art.path, art, manifest, {})


@pytest.mark.skipif(sys.platform == "darwin", reason="Core ML runs on macOS; this checks the error elsewhere")
def test_coreml_session_off_macos_points_to_reference(bundle: Path) -> None:
    manifest = bundle_mod.read_manifest(bundle)
    art = bundle_mod.Artifact("coreml", "fp16", "coreml/model.mlpackage", extra={"compute_units": "CPU_AND_NE"})
    with pytest.raises(BundleError, match=r"runs only on macOS.*backend='coreml-reference'"):
        open_session("coreml", bundle / art.path, art, manifest, {"compute_units": "CPU_AND_NE"})


def test_session_modules_do_not_import_torch() -> None:
    code = ("import sys, edgekd.runtimes.onnx, edgekd.runtimes.openvino, edgekd.runtimes.coreml; "
            "bad = [m for m in ('torch', 'transformers', 'optimum') if m in sys.modules]; "
            "print(bad); sys.exit(1 if bad else 0)")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stdout + result.stderr


def test_openvino_compiles_in_f32_with_the_latency_hint_unless_asked() -> None:
    """edgekd's OpenVINO properties (the benchmark's bare engine compiles with the same ones): f32 even
    where the CPU has bf16, which OpenVINO would otherwise pick for an fp32 model."""
    from edgekd.runtimes.openvino import compile_config

    assert compile_config({}) == {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_PRECISION_HINT": "f32"}
    assert compile_config({"threads": 2, "inference_precision": "bf16"})["INFERENCE_NUM_THREADS"] == 2
    assert compile_config({"inference_precision": "bf16"})["INFERENCE_PRECISION_HINT"] == "bf16"
