"""ONNX static int8 "ffn-float": the FFN down-projections are found by graph pattern on optimum's
unfused opset-17 graph (GELU spelled as Div/Erf/Add/Mul/Mul), kept float in the built artifact,
and the record holds exactly the node list the quantizer got. One check on the real MiniLM."""

from __future__ import annotations

import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import pytest
from conftest import AG_LABELS, read_texts

from edgekd.exporters import onnx as onnx_mod
from edgekd.exporters.bundle_writer import ExportData, ExportOptions, export_bundle

DOWN = re.compile(r"/encoder/layer\.(\d+)/output/dense/MatMul$")


def _source(model_dir: Path, work: Path) -> Path:
    """optimum's raw ONNX of a checkpoint, shape-inferred as the static quantizer reads it."""
    job = SimpleNamespace(model_dir=model_dir, workdir=work, shared={}, options={})
    return onnx_mod._preprocess(onnx_mod.raw_onnx(job), work / "preprocessed.onnx")


def _graph(path: Path) -> Any:
    import onnx

    return onnx.load(str(path), load_external_data=False).graph


def _weight_shapes(graph: Any) -> dict[str, list[int]]:
    """node name -> dims of its weight input (MatMul/Gemm nodes with an initializer input)."""
    dims = {i.name: list(i.dims) for i in graph.initializer}
    return {n.name: dims[w] for n in graph.node for w in n.input if w in dims and n.op_type in ("MatMul", "Gemm")}


def _fed_by_dequantize(graph: Any) -> set[str]:
    producer = {o: n.op_type for n in graph.node for o in n.output}
    return {n.name for n in graph.node if any(producer.get(i) == "DequantizeLinear" for i in n.input)}


@pytest.fixture(scope="module")
def tiny_source(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return _source(tiny_bert, tmp_path_factory.mktemp("onnx-int8"))


def _calibration_job(model_dir: Path) -> Any:
    """What `_static` reads from an ExportJob: the calibration texts and the model-input encoder."""
    from transformers import AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    texts, _ = read_texts("ag_news", "train", 16)

    def encode(batch: list[str]) -> dict[str, np.ndarray]:
        enc = tokenizer(list(batch), truncation=True, max_length=64, padding=True, return_tensors="np")
        return {k: np.asarray(v).astype(np.int64) for k, v in enc.items()}

    return SimpleNamespace(calibration=SimpleNamespace(texts=texts), encode=encode)


def test_ffn_down_projections_found_by_pattern(tiny_source: Path) -> None:
    """One down-projection per layer (weight [intermediate 64, hidden 32]), then the classifier."""
    sensitive = onnx_mod._sensitive_nodes(tiny_source)
    shapes = _weight_shapes(_graph(tiny_source))
    downs = sensitive[:-1]
    assert [int(DOWN.search(n).group(1)) for n in downs] == [0, 1]
    assert all(shapes[n] == [64, 32] for n in downs)
    assert sensitive[-1] == "/classifier/Gemm"


def test_ffn_float_artifact_keeps_down_projections_float(tiny_source: Path, tiny_bert: Path,
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    import onnxruntime.quantization as ortq

    job = _calibration_job(tiny_bert)
    not_weights = onnx_mod._activation_only_ops(tiny_source)
    ffn_float = onnx_mod._sensitive_nodes(tiny_source) + not_weights
    passed: list[list[str]] = []
    real = ortq.quantize_static

    def spy(*args: Any, **kwargs: Any) -> Any:  # what the quantizer itself receives
        passed.append(kwargs["nodes_to_exclude"])
        return real(*args, **kwargs)

    monkeypatch.setattr(ortq, "quantize_static", spy)
    out = tiny_source.parent
    onnx_mod._static(job, ffn_float)(tiny_source, out / "static-qdq-ffn-float.onnx")
    onnx_mod._static(job, not_weights)(tiny_source, out / "static-qdq.onnx")
    assert passed == [ffn_float, not_weights]

    ups = [f"/bert/encoder/layer.{i}/intermediate/dense/MatMul" for i in (0, 1)]
    downs = [f"/bert/encoder/layer.{i}/output/dense/MatMul" for i in (0, 1)]
    quantized = _fed_by_dequantize(_graph(out / "static-qdq-ffn-float.onnx"))
    assert not quantized & set(downs + ["/classifier/Gemm"])  # float: no DequantizeLinear feeds them
    assert set(ups) <= quantized
    # The plain static candidate does quantize them: the two candidates really differ.
    assert set(ups + downs) <= _fed_by_dequantize(_graph(out / "static-qdq.onnx"))


def test_static_int8_quantizes_inputs_only_never_an_output(tiny_source: Path, tiny_bert: Path) -> None:
    """No QuantizeLinear reads what a MatMul or Gemm wrote: the logits and each projection before its bias Add stay
    float (ORT's default rounds them, which flips near-ties). (A lookup's rows are requantized at the table's own
    scale, which is exact.) Recomputed another way: the int8 logits are not on a grid (a quantized output's
    distinct values are whole multiples of one step apart)."""
    import onnxruntime as ort

    job = _calibration_job(tiny_bert)
    out = tiny_source.parent / "static-inputs-only.onnx"
    onnx_mod._static(job, onnx_mod._activation_only_ops(tiny_source))(tiny_source, out)
    graph = _graph(out)
    producer = {o: n.op_type for n in graph.node for o in n.output}
    fed = [producer.get(n.input[0]) for n in graph.node if n.op_type == "QuantizeLinear"]
    assert fed and not set(fed) & {"MatMul", "Gemm"}, fed
    assert producer[graph.output[0].name] == "Gemm"  # the classifier writes the logits itself
    texts, _ = read_texts("ag_news", "test", 200)
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    logits = np.concatenate([session.run(None, job.encode(texts[i:i + 20]))[0] for i in range(0, 200, 20)])
    steps = np.diff(np.unique(logits))
    multiples = steps / steps.min()
    assert len(steps) > 10 and np.abs(multiples - np.round(multiples)).max() > 0.1


def test_recorded_exclusions_are_the_lists_passed(tiny_bert: Path, tiny_source: Path, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Each static candidate's settings["nodes_excluded"] is the very list its quantizer gets."""
    passed: list[list[str]] = []
    settings: dict[str, dict[str, Any]] = {}
    real_static, real_candidate = onnx_mod._static, onnx_mod.Int8Candidate

    def static_spy(job: Any, exclude: list[str], **kwargs: Any) -> Any:
        passed.append(exclude)
        return real_static(job, exclude, **kwargs)

    def candidate_spy(name: str, candidate_settings: dict[str, Any], *args: Any, **kwargs: Any) -> Any:
        settings[name] = candidate_settings
        return real_candidate(name, candidate_settings, *args, **kwargs)

    monkeypatch.setattr(onnx_mod, "_static", static_spy)
    monkeypatch.setattr(onnx_mod, "Int8Candidate", candidate_spy)
    train, train_labels = read_texts("ag_news", "train", 64)
    val, val_labels = read_texts("ag_news", "test", 90)
    data = ExportData(test_texts=val[60:], train=(train, [AG_LABELS.index(n) for n in train_labels]),
                      validation=(val[:60], [AG_LABELS.index(n) for n in val_labels[:60]]))
    export_bundle(tiny_bert, tmp_path / "bundle", data, ExportOptions(targets=["onnx"], int8=True,
                  calibration_size=16, check_per_class=8), log=lambda m: None)

    assert len(passed) == 2
    assert settings["static-qdq"]["nodes_excluded"] is passed[0]
    assert settings["static-qdq-ffn-float"]["nodes_excluded"] is passed[1]
    not_weights = onnx_mod._activation_only_ops(tiny_source)
    assert passed == [not_weights, onnx_mod._sensitive_nodes(tiny_source) + not_weights]


@pytest.mark.slow
def test_real_minilm_ffn_down_projections(minilm_path: Path, tmp_path: Path) -> None:
    """The real MiniLM-L6 (fresh 4-way head): six down-projections [1536, 384], then the classifier."""
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    torch.manual_seed(0)
    ckpt = tmp_path / "minilm-cls"
    AutoModelForSequenceClassification.from_pretrained(str(minilm_path), num_labels=4).save_pretrained(ckpt)
    AutoTokenizer.from_pretrained(str(minilm_path)).save_pretrained(ckpt)
    source = _source(ckpt, tmp_path)
    sensitive = onnx_mod._sensitive_nodes(source)
    shapes = _weight_shapes(_graph(source))
    assert [int(DOWN.search(n).group(1)) for n in sensitive[:-1]] == list(range(6))
    assert all(shapes[n] == [1536, 384] for n in sensitive[:-1])
    assert sensitive[-1] == "/classifier/Gemm"
