"""A backend added from this file alone: one `register(BackendSpec(...))`, an `Exporter` and a session
opener. It goes through the same registry lookups as the shipped backends (recipe validation,
parse_targets, export_bundle, edgekd.load) and gets the same checks: the contract hash embedded in
its artifact and the inputs its model declares, checked once by the loader, not by the opener."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import AG_LABELS, read_texts

import edgekd
from edgekd import bundle as bundle_mod
from edgekd.backends import REGISTRY, BackendSpec, register, unregister
from edgekd.bundle import Artifact, Manifest
from edgekd.errors import BundleError, RecipeError
from edgekd.exporters import TARGETS, parse_targets
from edgekd.exporters.base import Exporter, ExportJob
from edgekd.exporters.bundle_writer import ExportData, ExportOptions, export_bundle
from edgekd.recipe import parse_recipe
from edgekd.runtimes import BACKENDS
from edgekd.runtimes.classifier import available_backends

TOY = "toy"
VOCAB = 31  # token ids index a fixed table of VOCAB rows: id % VOCAB
INPUTS = ["input_ids", "attention_mask"]


def _weights(num_labels: int) -> np.ndarray:
    """The toy model: a fixed [VOCAB, num_labels] table of per-token logits."""
    return np.random.default_rng(0).normal(size=(VOCAB, num_labels)).astype(np.float32)


def _toy_logits(weights: np.ndarray, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    """logits: [batch, num_labels], the mean of the table rows of the unmasked tokens."""
    rows = weights[ids % VOCAB] * mask[..., None]  # [batch, seq, num_labels]
    return (rows.sum(axis=1) / np.maximum(mask.sum(axis=1, keepdims=True), 1)).astype(np.float32)


class ToyExporter(Exporter):
    """Writes toy/model.npz: the table, the inputs the model takes and the contract hash."""

    name = TOY
    extra = "toy"

    def _export(self, job: ExportJob) -> list[Artifact]:
        (job.bundle / TOY).mkdir(exist_ok=True)
        np.savez(job.bundle / TOY / "model.npz", weights=_weights(len(job.labels)), inputs=np.array(INPUTS),
                 contract=np.array(job.contract))
        return [Artifact(TOY, "fp32", f"{TOY}/model.npz", extra={"vocab": VOCAB})]

    def check_backend(self) -> str | None:
        return None  # fixed weights, not the checkpoint's: a parity check against PyTorch means nothing

    def skip_reason(self) -> str:
        return "the toy model's weights are fixed, not the checkpoint's"


class ToySession:
    """The toy backend's opener: reads the .npz and reports what it declares, checking nothing."""

    input_dtype = np.int64
    engine = "toy numpy"

    def __init__(self, path: Path, artifact: Artifact, manifest: Manifest, options: dict[str, Any]) -> None:
        with np.load(path, allow_pickle=False) as npz:
            self.embedded_contract = str(npz["contract"])
            self.model_inputs = [str(n) for n in npz["inputs"]]
            self.weights = npz["weights"]
        self.input_names = [n for n in manifest.tokenizer.inputs if n in self.model_inputs]

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        return _toy_logits(self.weights, inputs["input_ids"], inputs["attention_mask"])


@pytest.fixture(scope="module")
def toy() -> Iterator[BackendSpec]:
    """The toy backend, registered for this module's tests and removed after them."""
    spec = register(BackendSpec(TOY, TOY, f"{__name__}:ToySession", "numpy", "toy",
                                exporter=f"{__name__}:ToyExporter"))
    yield spec
    unregister(TOY)


@pytest.fixture(scope="module")
def toy_bundle(toy: BackendSpec, tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("toy") / "bundle"
    texts, _ = read_texts("ag_news", "test", 24)
    export_bundle(tiny_bert, out, ExportData(test_texts=texts), ExportOptions(targets=[TOY], check_per_class=4),
                  log=lambda m: None)
    return out


def _rewrite(bundle: Path, tmp_path: Path, **arrays: np.ndarray) -> Path:
    """A copy of the bundle whose toy artifact has `arrays` replaced, with the manifest's hash
    updated (so only the embedded contract or inputs differ, not the file's integrity)."""
    copy = tmp_path / "bundle"
    shutil.copytree(bundle, copy)
    manifest = bundle_mod.read_manifest(copy)
    art = manifest.artifact(TOY, "fp32")
    with np.load(copy / art.path, allow_pickle=False) as npz:
        content = dict(npz)
    np.savez(copy / art.path, **{**content, **arrays})
    bundle_mod.finalize_artifact(copy, art)
    bundle_mod.write_manifest(copy, manifest)
    return copy


def test_a_registered_backend_is_a_target_and_a_backend_everywhere(toy: BackendSpec) -> None:
    assert list(BACKENDS)[-1] == TOY and BACKENDS[TOY] == toy.session
    assert TARGETS[TOY] == toy.exporter
    assert parse_targets("toy, onnx") == ["onnx", TOY]
    assert parse_targets("all")[-1] == TOY
    recipe = parse_recipe({"data": {"path": "x"}, "export": {"targets": ["onnx", TOY]}})
    assert recipe.export.targets == ["onnx", TOY]


def test_the_toy_backend_exports_and_loads_with_its_contract_checked(toy_bundle: Path) -> None:
    manifest = bundle_mod.read_manifest(toy_bundle)
    assert [a.name for a in manifest.artifacts] == ["toy-fp32"]
    assert manifest.parity["toy-fp32"] == {"status": "skipped", "reason": "the toy model's weights are fixed, "
                                                                          "not the checkpoint's"}
    assert TOY in available_backends(manifest)
    clf = edgekd.load(toy_bundle, backend=TOY)
    assert (clf.backend, clf.precision, clf.engine) == (TOY, "fp32", "toy numpy")
    assert clf.labels == AG_LABELS and clf.session.input_names == INPUTS
    texts = read_texts("ag_news", "test", 5)[0]
    ids = clf.tokenizer.encode(texts)
    want = np.stack([_toy_logits(_weights(4), np.array([row]), np.ones((1, len(row)), np.int64))[0] for row in ids])
    np.testing.assert_allclose(clf.logits(texts), want, rtol=1e-6, atol=1e-6)
    assert clf.predict(texts[0]).label == AG_LABELS[int(want[0].argmax())]
    with pytest.raises(BundleError, match="no backend here can run this bundle"):
        edgekd.load(toy_bundle)  # auto never picks a backend without an auto_rank


def test_an_artifact_of_another_contract_is_refused(toy_bundle: Path, tmp_path: Path) -> None:
    other = _rewrite(toy_bundle, tmp_path, contract=np.array("0" * 64))
    with pytest.raises(BundleError, match=r"artifact toy-fp32 \(toy/model.npz\) was exported for another tokenizer"):
        edgekd.load(other, backend=TOY)


def test_a_model_input_the_tokenizer_lacks_is_refused(toy_bundle: Path, tmp_path: Path) -> None:
    other = _rewrite(toy_bundle, tmp_path, inputs=np.array(["input_ids", "attention_mask", "segment_ids"]))
    with pytest.raises(BundleError, match=r"artifact toy-fp32 takes inputs \['segment_ids'\] that the manifest's "
                                          r"tokenizer inputs \['input_ids', 'attention_mask', 'token_type_ids'\] lack"):
        edgekd.load(other, backend=TOY)


def test_register_refuses_a_taken_name_or_a_malformed_spec() -> None:
    with pytest.raises(ValueError, match="'onnx' is already registered"):
        register(BackendSpec("onnx", "onnx", "edgekd.runtimes.onnx:OnnxSession", "onnxruntime", "onnx"))
    with pytest.raises(ValueError, match="is not 'module:attribute'"):
        register(BackendSpec("toy2", "toy2", "edgekd.runtimes.onnx.OnnxSession", "numpy", "toy"))
    with pytest.raises(ValueError, match="an exporting backend's artifact kind is its own name"):
        register(BackendSpec("toy2", "onnx", f"{__name__}:ToySession", "numpy", "toy",
                             exporter=f"{__name__}:ToyExporter"))
    assert "toy2" not in REGISTRY


def test_unregister_removes_a_backend_from_every_view() -> None:
    register(BackendSpec("toy2", "toy2", f"{__name__}:ToySession", "numpy", "toy", exporter=f"{__name__}:ToyExporter"))
    assert "toy2" in BACKENDS and "toy2" in TARGETS
    unregister("toy2")
    assert "toy2" not in BACKENDS and "toy2" not in TARGETS
    with pytest.raises(RecipeError, match="unsupported export target toy2"):
        parse_targets("toy2")
    with pytest.raises(RecipeError, match=r"'export.targets' has \['toy2'\]"):
        parse_recipe({"data": {"path": "x"}, "export": {"targets": ["toy2"]}})
