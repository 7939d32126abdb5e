"""Exporters on the tiny BERT (every target, fp32 parity, contracts, atomicity, errors) and one
test on the real MiniLM (ONNX + OpenVINO fp32 parity on real texts)."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import AG_LABELS, read_texts

import edgekd
from edgekd import bundle as bundle_mod
from edgekd.cli import main as cli_main
from edgekd.errors import BundleError, ExportError, MissingDependency, RecipeError
from edgekd.exporters import TARGETS, parse_targets
from edgekd.exporters.bundle_writer import ExportData, ExportOptions, export_bundle, validate

RT_INFO = ["edgekd", "contract"]


def _data(n_test: int = 60) -> ExportData:
    texts, _ = read_texts("ag_news", "test", n_test)
    return ExportData(test_texts=texts, source="ag_news/test")


def _ids(names: list[str]) -> list[int]:
    return [AG_LABELS.index(n) for n in names]


@pytest.fixture(scope="module")
def exported(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One bundle with every target (fp32/fp16), exported once for the module."""
    out = tmp_path_factory.mktemp("exp") / "bundle"
    export_bundle(tiny_bert, out, _data(), ExportOptions(targets=["all"], check_per_class=16), log=lambda m: None)
    return out


def test_every_target_exports_checks_and_loads(exported: Path) -> None:
    manifest = bundle_mod.read_manifest(exported)
    assert {a.name for a in manifest.artifacts} == {"onnx-fp32", "openvino-fp32", "openvino-fp16", "coreml-fp16"}
    assert manifest.labels == AG_LABELS
    assert manifest.tokenizer.inputs == ["input_ids", "attention_mask", "token_type_ids"]
    for artifact in manifest.artifacts:
        assert bundle_mod.check_artifact(exported, artifact).exists()
        assert artifact.bytes > 10_000
        parity = manifest.parity[artifact.name]
        # Core ML is checked by the MIL reference evaluator off macOS; never recorded as passed unchecked.
        assert parity["status"] == "passed", parity
        assert set(parity["by_length"]) == {"short", "medium", "truncated_long"}
    assert manifest.parity["onnx-fp32"]["max_abs_logit"] <= 1e-3
    assert manifest.parity["openvino-fp32"]["max_abs_logit"] <= 1e-3
    coreml = manifest.artifact("coreml", "fp16")
    assert coreml.extra["sequence_buckets"][-1] == 128 and coreml.extra["compute_units"] == "ALL"
    assert manifest.provenance["versions"]["onnxruntime"] and manifest.provenance["created"]


def test_fp32_logits_match_pytorch_on_real_texts(exported: Path, tiny_bert: Path) -> None:
    from edgekd.exporters.check import run_session
    from edgekd.runtimes.classifier import open_session
    from edgekd.runtimes.tokenizer import BundleTokenizer
    from edgekd.train.infer import load_checkpoint, torch_logits

    texts = read_texts("ag_news", "train", 248)[0][200:]
    texts = texts + [" ".join(texts[:6])]  # one text longer than max_length: truncation path
    model, tok = load_checkpoint(tiny_bert)
    ref = torch_logits(model, tok, texts, 128, batch_size=16)  # the Hugging Face tokenizer's ids
    manifest = bundle_mod.read_manifest(exported)
    shipped = BundleTokenizer(exported / bundle_mod.TOKENIZER, manifest.tokenizer)  # the shipped tokenizer's
    for backend in ("onnx", "openvino"):
        art = manifest.artifact(backend, "fp32")
        session = open_session(backend, exported / art.path, art, manifest, {"threads": 1})
        got = run_session(session, shipped, texts)
        assert np.abs(got - ref).max() <= 1e-3, backend
        assert (got.argmax(1) == ref.argmax(1)).all()


def test_contract_embedded_in_every_artifact(exported: Path) -> None:
    import coremltools as ct
    import onnx
    import openvino as ov

    manifest = bundle_mod.read_manifest(exported)
    props = {p.key: p.value for p in onnx.load(str(exported / "onnx/model.onnx")).metadata_props}
    assert props[bundle_mod.CONTRACT_KEY] == manifest.contract
    for xml in ("model.xml", "model.fp16.xml"):
        model = ov.Core().read_model(str(exported / "openvino" / xml))
        assert model.get_rt_info(RT_INFO).astype(str) == manifest.contract
    spec = ct.utils.load_spec(str(exported / "coreml/model.mlpackage"))
    assert spec.description.metadata.userDefined[bundle_mod.CONTRACT_KEY] == manifest.contract
    assert json.loads(spec.description.metadata.userDefined["edgekd.labels"]) == AG_LABELS


def test_corrupted_artifact_detected_by_hash(exported: Path, tmp_path: Path) -> None:
    copy = tmp_path / "bundle"
    shutil.copytree(exported, copy)
    manifest = bundle_mod.read_manifest(copy)
    weights = copy / "openvino" / "model.bin"  # the sidecar of model.xml is covered by its hash
    data = bytearray(weights.read_bytes())
    data[len(data) // 2] ^= 0xFF
    weights.write_bytes(bytes(data))
    with pytest.raises(BundleError, match="modified after export"):
        bundle_mod.check_artifact(copy, manifest.artifact("openvino", "fp32"))
    (copy / "onnx" / "model.onnx").write_bytes(b"not a model")
    with pytest.raises(BundleError, match="onnx-fp32"):
        bundle_mod.check_artifact(copy, manifest.artifact("onnx", "fp32"))


def test_reexport_without_force_refused_before_loading(exported: Path, tiny_bert: Path) -> None:
    before = (exported / bundle_mod.MANIFEST).read_bytes()
    with pytest.raises(BundleError, match="--force"):
        export_bundle(tiny_bert, exported, _data(), ExportOptions(targets=["onnx"]))
    assert cli_main(["export", str(tiny_bert), "--target", "onnx", "--out", str(exported)]) == 2
    assert (exported / bundle_mod.MANIFEST).read_bytes() == before


def test_interrupted_export_leaves_no_bundle(tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.exporters.openvino import OpenVinoExporter

    def boom(self: object, job: object) -> list:
        raise RuntimeError("simulated crash midway through the export")

    monkeypatch.setattr(OpenVinoExporter, "_export", boom)
    out = tmp_path / "bundle"
    with pytest.raises(ExportError, match="simulated crash"):
        export_bundle(tiny_bert, out, _data(20), ExportOptions(targets=["onnx", "openvino"], check_per_class=8),
                      log=lambda m: None)
    assert not out.exists()
    assert list(tmp_path.iterdir()) == []  # no staging (.partial) directory left behind


def test_failed_check_fails_export(tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.verify import parity

    # A gate no real conversion can meet: the check must fail the export, not warn.
    monkeypatch.setitem(parity.DEFAULT_GATES, "fp32", (parity.Gate("max_abs_logit", "<=", 0.0),))
    out = tmp_path / "bundle"
    with pytest.raises(ExportError, match=r"post-export check failed for onnx-fp32.*max \|dlogit\|"):
        export_bundle(tiny_bert, out, _data(20), ExportOptions(targets=["onnx"], check_per_class=8),
                      log=lambda m: None)
    assert not out.exists() and list(tmp_path.iterdir()) == []


def test_cli_export_with_data_then_info(tiny_bert: Path, shared_data: Path, tmp_path: Path,
                                       capsys: pytest.CaptureFixture) -> None:
    out = tmp_path / "bundle"
    ag_news = str(shared_data / "ag_news")
    code = cli_main(["export", str(tiny_bert), "--target", "onnx", "--data", ag_news,
                     "--max-train-samples", "200", "--out", str(out)])
    assert code == 0
    manifest = bundle_mod.read_manifest(out)
    assert manifest.provenance["data_source"] == ag_news
    assert len(manifest.provenance["dataset_fingerprint"]) == 64
    assert manifest.parity["onnx-fp32"]["n"] == 3 * 64 and manifest.parity["onnx-fp32"]["status"] == "passed"
    assert "onnx-fp32" in capsys.readouterr().out


def test_unsupported_target_names_the_choices(tiny_bert: Path, tmp_path: Path) -> None:
    with pytest.raises(RecipeError, match=r"unsupported export target tflite.*onnx, openvino, coreml"):
        parse_targets("onnx,tflite")
    assert parse_targets("all") == list(TARGETS)
    assert parse_targets("coreml, ONNX") == ["onnx", "coreml"]
    assert cli_main(["export", str(tiny_bert), "--target", "tflite", "--out", str(tmp_path / "b")]) == 2


@pytest.mark.parametrize(("target", "module", "extra"), [("openvino", "openvino", "openvino"),
                                                          ("coreml", "coremltools", "coreml"),
                                                          ("onnx", "onnxruntime", "train")])
def test_missing_dependency_names_the_extra(tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            target: str, module: str, extra: str) -> None:
    monkeypatch.setitem(sys.modules, module, None)  # `import module` now raises ImportError
    with pytest.raises(MissingDependency, match=rf"pip install 'edgekd\[{extra}\]'"):
        validate(tiny_bert, tmp_path / "b", ExportOptions(targets=[target]))


def test_int8_kept_by_accuracy_control_for_every_backend(trained_tiny_bert: Path, tmp_path: Path) -> None:
    """On a trained model every backend's int8 passes the int8 gates, and the kept artifact is the
    setting accuracy control chose, with the numbers of that decision (ONNX, NNCF, Core ML)."""
    from conftest import TRAINED_ROWS

    texts, names = read_texts("ag_news", "train", TRAINED_ROWS)
    half = TRAINED_ROWS // 2  # rows it was trained on: large margins, so int8 keeps every prediction
    data = ExportData(test_texts=texts[half:], train=(texts[:half], _ids(names[:half])),
                      validation=(texts[half:], _ids(names[half:])))
    manifest = export_bundle(trained_tiny_bert, tmp_path / "bundle", data,
                             ExportOptions(targets=["all"], int8=True, calibration_size=64, check_per_class=8),
                             log=lambda m: None)
    cal = manifest.calibration
    assert cal["size"] == 64 and cal["seed"] == 0 and sum(cal["label_counts"].values()) == 64
    assert manifest.dropped == []
    for backend, first in (("onnx", "static-qdq"), ("openvino", "nncf-transformer"),
                           ("coreml", "weights-linear-symmetric")):
        record = cal["accuracy_control"][backend]
        assert record["tried"][0]["name"] == first and record["n_validation"] == TRAINED_ROWS - half
        chosen = next(t for t in record["tried"] if t["accepted"])
        assert chosen["agreement"] >= 0.99 and chosen["accuracy_drop"] <= 0.005 and chosen["failed"] == ""
        art = manifest.artifact(backend, "int8")
        assert art.quantization["variant"] == record["chosen"] == chosen["name"]
        assert bundle_mod.check_artifact(tmp_path / "bundle", art).exists()
        assert art.float_ops or backend == "openvino"  # NNCF may quantize every MatMul: nothing left float
        assert manifest.parity[art.name]["decided_by"] == "accuracy control"
        assert manifest.parity[art.name]["decision"]["n"] == record["n_agreement"]
        # Recomputed another way: the shipped artifact through edgekd.load (its own tokenizer.json,
        # batching and padding) on the validation rows gives the accuracy the decision recorded.
        runner = "coreml-reference" if backend == "coreml" else backend
        clf = edgekd.load(tmp_path / "bundle", backend=runner, precision="int8")
        val_ids = np.array(_ids(names[half:]))
        assert float((clf.logits(texts[half:]).argmax(1) == val_ids).mean()) == pytest.approx(chosen["accuracy"])


def test_failed_fp16_is_dropped_with_its_numbers(tiny_bert: Path, tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.verify import parity

    # An fp16 gate no real conversion meets: the fp16 artifact goes, fp32 stays, the export succeeds.
    monkeypatch.setitem(parity.DEFAULT_GATES, "fp16", (parity.Gate("max_abs_logit", "<=", 0.0),))
    out = tmp_path / "bundle"
    manifest = export_bundle(tiny_bert, out, _data(20), ExportOptions(targets=["openvino"], check_per_class=8),
                             log=lambda m: None)
    assert [a.name for a in manifest.artifacts] == ["openvino-fp32"]
    assert not (out / "openvino" / "model.fp16.xml").exists() and not (out / "openvino" / "model.fp16.bin").exists()
    (drop,) = manifest.dropped
    assert drop["artifact"] == "openvino-fp16" and drop["stage"] == "post-export check"
    assert "max |dlogit|" in drop["reason"] and drop["numbers"]["max_abs_logit"] > 0
    assert bundle_mod.read_manifest(out).dropped == manifest.dropped  # written, and read back


@pytest.mark.slow
def test_real_minilm_onnx_openvino_fp32_parity(minilm_path: Path, tmp_path: Path) -> None:
    """The real MiniLM-L6 (with a fresh 4-way head): optimised ONNX and OpenVINO IR reproduce
    PyTorch to <= 1e-3 on real texts of every length class."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    ckpt = tmp_path / "minilm-cls"
    model = AutoModelForSequenceClassification.from_pretrained(
        str(minilm_path), num_labels=4, id2label=dict(enumerate(AG_LABELS)),
        label2id={n: i for i, n in enumerate(AG_LABELS)})
    model.save_pretrained(ckpt)
    AutoTokenizer.from_pretrained(str(minilm_path)).save_pretrained(ckpt)
    (ckpt / "edgekd-model.json").write_text('{"max_length": 64, "role": "student"}\n')
    manifest = export_bundle(ckpt, tmp_path / "bundle", _data(40), ExportOptions(targets=["onnx", "openvino"],
                             check_per_class=10), log=lambda m: None)
    for name in ("onnx-fp32", "openvino-fp32"):
        parity = manifest.parity[name]
        assert parity["status"] == "passed" and parity["max_abs_logit"] <= 1e-3 and parity["flips"] == 0
        assert all(m["n"] > 0 for m in parity["by_length"].values())
    assert manifest.artifact("onnx", "fp32").extra["fused_ops"].get("Attention") == 6


def test_every_target_exports_when_every_text_is_longer_than_max_length(tiny_bert: Path, tmp_path: Path) -> None:
    """IMDB at 128 tokens: no held-out text fits, so the short and medium check classes are empty and
    only truncated-long texts remain (the first-run matrix crashed Core ML's trace example here)."""
    short = tmp_path / "tiny-8"
    shutil.copytree(tiny_bert, short)
    (short / "edgekd-model.json").write_text('{"max_length": 8, "role": "test"}\n')
    manifest = export_bundle(short, tmp_path / "bundle", _data(24), ExportOptions(targets=["all"], check_per_class=8),
                             log=lambda m: None)
    assert {a.name for a in manifest.artifacts} == {"onnx-fp32", "openvino-fp32", "openvino-fp16", "coreml-fp16"}
    for parity in manifest.parity.values():
        assert parity["status"] == "passed" and set(parity["by_length"]) == {"truncated_long"}
    # the quantiles collapse onto max_length: a second bucket keeps EnumeratedShapes valid
    assert manifest.artifact("coreml", "fp16").extra["sequence_buckets"] == [4, 8]
    from edgekd.exporters.coreml import sequence_buckets

    assert sequence_buckets([128] * 50, 128) == [64, 128] and sequence_buckets([10, 40, 90], 128) == [16, 48, 80, 96, 128]


def test_decision_texts_reach_1000_when_every_text_is_long(tiny_bert: Path) -> None:
    """With no short or medium texts (all longer than max_length), the agreement texts are topped up
    from the unused train texts, so accuracy control still decides on >= 1,000 texts when the data has them."""
    from transformers import AutoTokenizer

    from edgekd.exporters.bundle_writer import MIN_DECISION_TEXTS, _int8_sets

    train, names = read_texts("ag_news", "train", 1600)
    val, val_names = read_texts("ag_news", "test", 50)
    data = ExportData(test_texts=val, train=(train, _ids(names)), validation=(val, _ids(val_names)))
    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    calibration, validation, agreement = _int8_sets(tokenizer, data, ExportOptions(int8=True, calibration_size=100),
                                                    AG_LABELS, max_length=8)
    assert len(validation[0]) == 50 and len(validation[0]) + len(agreement) >= MIN_DECISION_TEXTS
    assert not set(agreement) & set(calibration.texts)  # held out from calibration
