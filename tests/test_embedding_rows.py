"""ONNX int8 with 4-bit word-embedding rows (`export --embedding-bits 4`): the table ORT's weight-only
quantizer writes is decoded here by hand (packed int4 nibbles x per-block fp16 scales) and checked against the
float rows and against what ONNX Runtime computes with it; the export keeps the 4-bit artifact only
through accuracy control, and keeps the 8-bit rows with the reason when every block size fails."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import AG_LABELS, read_texts

from edgekd.errors import RecipeError
from edgekd.exporters import onnx as onnx_mod
from edgekd.exporters.bundle_writer import ExportData, ExportOptions, export_bundle, validate


def _data() -> ExportData:
    train, train_labels = read_texts("ag_news", "train", 64)
    val, val_labels = read_texts("ag_news", "test", 90)
    return ExportData(test_texts=val[60:], train=(train, [AG_LABELS.index(n) for n in train_labels]),
                      validation=(val[:60], [AG_LABELS.index(n) for n in val_labels[:60]]))


def _decode_int4(model: object, node: object) -> np.ndarray:
    """The float table a GatherBlockQuantized node stands for: signed 4-bit values packed two per byte
    (low nibble first), times one scale per block of `block_size` along the hidden axis."""
    import onnx

    inits = {i.name: i for i in model.graph.initializer}
    q, scales = inits[node.input[0]], onnx.numpy_helper.to_array(inits[node.input[2]])
    rows, width = q.dims
    packed = np.frombuffer(q.raw_data, dtype=np.uint8)
    nibbles = np.stack([packed & 0x0F, packed >> 4], axis=1).reshape(-1)[: rows * width].astype(np.int8)
    values = np.where(nibbles > 7, nibbles - 16, nibbles).reshape(rows, width).astype(np.float32)
    block = next(a.i for a in node.attribute if a.name == "block_size")
    # the product in the scales' dtype (fp16: rounded to fp16, as ONNX Runtime's fp16 output), then fp32
    return (values.astype(scales.dtype) * np.repeat(scales, block, axis=1)[:, :width]).astype(np.float32)


@pytest.mark.parametrize("block", [16, 32])
def test_word_embedding_rows_are_the_blockwise_int4_table(tiny_bert: Path, tmp_path: Path, block: int) -> None:
    from types import SimpleNamespace

    import onnx
    import onnxruntime as ort

    src = onnx_mod.raw_onnx(SimpleNamespace(model_dir=tiny_bert, workdir=tmp_path, shared={}, options={}))
    out = tmp_path / "emb4.onnx"
    onnx_mod._word_embedding_int4(src, out, block)
    float_model, model = onnx.load(str(src)), onnx.load(str(out))
    word = onnx_mod.word_embedding_gather(float_model.graph)
    table = onnx.numpy_helper.to_array(next(i for i in float_model.graph.initializer if i.name == word.input[0]))
    quantized = [n for n in model.graph.node if n.op_type == "GatherBlockQuantized"]
    assert [n.name for n in quantized] == [f"{word.name}_Q4"]  # the word table only
    assert sum(n.op_type == "Gather" for n in model.graph.node) == sum(
        n.op_type == "Gather" for n in float_model.graph.node) - 1  # position/type lookups untouched
    decoded = _decode_int4(model, quantized[0])
    assert decoded.shape == table.shape
    # fp16 block scales; the rows are cast back to fp32 under the Gather's old output name
    inits = {i.name: i for i in model.graph.initializer}
    assert inits[quantized[0].input[2]].data_type == onnx.TensorProto.FLOAT16
    cast = next(n for n in model.graph.node if n.input == quantized[0].output)
    assert cast.op_type == "Cast" and cast.output == word.output
    # symmetric int4 over 16 levels: the block's extreme value maps to -8 exactly (step = absmax / 8), so
    # every entry is within half a step of its float value except an opposite-sign extreme clipped at +7
    step = np.repeat(np.abs(table).reshape(table.shape[0], -1, block).max(-1) / 8, block, axis=1)
    error = np.abs(decoded - table)  # fp16 scales and products add at most ~8 x 2^-11 of the step
    assert np.all(error <= 1.01 * step + 1e-6) and np.mean(error <= 0.51 * step + 1e-6) > 0.99
    assert 0 < error.max()
    # ONNX Runtime reads the table the same way: the float model with the decoded rows gives its logits
    word_init = next(i for i in float_model.graph.initializer if i.name == word.input[0])
    word_init.CopyFrom(onnx.numpy_helper.from_array(decoded, word_init.name))
    rng = np.random.default_rng(0)
    feed = {"input_ids": rng.integers(0, table.shape[0], (3, 12)), "attention_mask": np.ones((3, 12), np.int64),
            "token_type_ids": np.zeros((3, 12), np.int64)}
    runs = [ort.InferenceSession(m.SerializeToString(), providers=["CPUExecutionProvider"]) for m in (model, float_model)]
    four_bit, reference = (s.run(None, {i.name: feed[i.name] for i in s.get_inputs()})[0] for s in runs)
    np.testing.assert_allclose(four_bit, reference, rtol=1e-5, atol=1e-5)


def _graph_ops(path: Path) -> list[str]:
    import onnx

    return [n.op_type for n in onnx.load(str(path)).graph.node]


def test_4bit_rows_pass_or_fall_back_to_8bit_with_the_reason(tiny_bert: Path, tmp_path: Path) -> None:
    """The random 32-wide model's logits differ by hundredths between classes, so 4-bit rows flip it and
    every block size fails the default int8 gates: the 8-bit rows stay, with why. With the int8 gates opened
    the first (largest) block passes and ships, smaller, and runs through edgekd.load as accuracy control
    measured it."""
    import edgekd
    from edgekd.verify.parity import GateSet

    data, options = _data(), dict(targets=["onnx"], int8=True, calibration_size=16, check_per_class=8, embedding_bits=4)
    kept8 = export_bundle(tiny_bert, tmp_path / "strict", data, ExportOptions(**options), log=lambda m: None)
    rows = kept8.artifact("onnx", "int8").quantization["embedding_rows"]
    tried = kept8.calibration["accuracy_control"]["onnx"]["embedding_rows"]["tried"]
    assert rows["bits"] == 8 and rows["requested_bits"] == 4
    assert rows["reason"].startswith("accuracy control on 60 validation + ") and "no 4-bit embedding setting" in rows["reason"]
    assert [t["name"].split("+")[1] for t in tried] == [f"embedding-int4-b{b}" for b in onnx_mod.EMBEDDING_BLOCK_SIZES]
    assert not any(t["accepted"] for t in tried)
    assert "GatherBlockQuantized" not in _graph_ops(tmp_path / "strict" / "onnx" / "model.int8.onnx")

    gates = GateSet()
    gates.override("int8", "agreement", 0.0)
    gates.override("int8", "accuracy_drop", 1.0)
    kept4 = export_bundle(tiny_bert, tmp_path / "open", data, ExportOptions(**options, gates=gates), log=lambda m: None)
    int8 = kept4.artifact("onnx", "int8")
    rows = int8.quantization["embedding_rows"]
    assert rows == {"bits": 4, "symmetric": True, "op": "com.microsoft GatherBlockQuantized", "axis": "hidden",
                    "block_size": onnx_mod.EMBEDDING_BLOCK_SIZES[0], "scales": "fp16"}
    assert int8.extra["opset"] == onnx_mod.INT4_OPSET
    # the post-export record and the summary show the decision that made the shipped file, not the 8-bit one
    assert kept4.parity["onnx-int8"]["decision"]["name"] == f"static-qdq+embedding-int4-b{rows['block_size']}"
    assert kept8.parity["onnx-int8"]["decision"]["name"] == "static-qdq"
    path4, path8 = (tmp_path / d / "onnx" / "model.int8.onnx" for d in ("open", "strict"))
    assert _graph_ops(path4).count("GatherBlockQuantized") == 1
    # the 30,522 x 32 table: 1 byte per value at 8 bits, half a byte plus a 2-byte scale per row at 4
    assert path8.stat().st_size - path4.stat().st_size > 30522 * (32 - 16 - 2) * 0.95
    # edgekd.load runs the shipped file on the validation texts: the accuracy accuracy control recorded
    texts, labels = data.validation
    predicted = edgekd.load(tmp_path / "open", backend="onnx", precision="int8").logits(texts).argmax(1)
    assert float(np.mean(predicted == np.asarray(labels))) == pytest.approx(int8.quantization["validation_accuracy"])


def test_embedding_bits_is_checked_before_any_model_loads(tiny_bert: Path, tmp_path: Path) -> None:
    out = tmp_path / "b"
    with pytest.raises(RecipeError, match="--embedding-bits must be 4 or 8, got 3"):
        validate(tiny_bert, out, ExportOptions(int8=True, embedding_bits=3))
    with pytest.raises(RecipeError, match="pass --int8 and --target onnx"):
        validate(tiny_bert, out, ExportOptions(embedding_bits=4))
    with pytest.raises(RecipeError, match="pass --int8 and --target onnx"):
        validate(tiny_bert, out, ExportOptions(targets=["openvino"], int8=True, embedding_bits=4))
    assert validate(tiny_bert, out, ExportOptions(int8=True, embedding_bits=4)) == ["onnx"]


def test_the_recipe_key_reaches_the_export_command() -> None:
    from edgekd.recipe import parse_recipe

    recipe = parse_recipe({"data": {"path": "d"}, "export": {"embedding_bits": 4}})
    assert recipe.export.embedding_bits == 4
    with pytest.raises(RecipeError, match=r"'export.embedding_bits' is 2; use 8, or 4"):
        parse_recipe({"data": {"path": "d"}, "export": {"embedding_bits": 2}})
    with pytest.raises(RecipeError, match="set export.int8: true and list onnx in export.targets"):
        parse_recipe({"data": {"path": "d"}, "export": {"embedding_bits": 4, "targets": ["coreml"]}})


def test_importing_the_4bit_quantizer_leaves_the_root_logger_alone(monkeypatch: pytest.MonkeyPatch) -> None:
    """onnxruntime's matmul_nbits_quantizer calls logging.basicConfig(level=INFO) when imported; the
    exporter's import undoes it (a library must not configure its host's logging)."""
    import logging
    import sys

    import onnxruntime.quantization as ortq

    name = "onnxruntime.quantization.matmul_nbits_quantizer"
    monkeypatch.delitem(sys.modules, name, raising=False)  # a fresh import runs the module body again
    monkeypatch.delattr(ortq, "matmul_nbits_quantizer", raising=False)
    root = logging.getLogger()
    monkeypatch.setattr(root, "handlers", [])  # basicConfig only acts on a root logger without handlers
    monkeypatch.setattr(root, "level", logging.WARNING)
    calls, real = [], logging.basicConfig
    monkeypatch.setattr(logging, "basicConfig", lambda **kw: (calls.append(kw), real(**kw)))

    module = onnx_mod._nbits_quantizer()
    assert calls and calls[0]["level"] == logging.INFO  # the side effect happened ...
    assert root.handlers == [] and root.level == logging.WARNING  # ... and was undone
    assert module is sys.modules[name]


def test_block_scales_that_fp16_cannot_hold_stay_fp32() -> None:
    """A table whose scales overflow fp16 (or lose more than 1/1000 in it) keeps fp32 scales and no Cast."""
    from onnx import TensorProto, helper, numpy_helper

    def graph(scale: float) -> object:
        node = helper.make_node("GatherBlockQuantized", ["q", "input_ids", "s"], ["rows"], name="g", domain="com.microsoft")
        scales = numpy_helper.from_array(np.full((4, 2), scale, np.float32), "s")
        return helper.make_graph([node], "t", [helper.make_tensor_value_info("input_ids", TensorProto.INT64, [1])],
                                 [helper.make_tensor_value_info("rows", TensorProto.FLOAT, [1])], [scales])

    for scale, half in ((1e6, False), (1e-7, False), (0.02, True)):
        g = graph(scale)
        assert onnx_mod._fp16_scales(g, g.node[0]) is half
        assert g.initializer[0].data_type == (TensorProto.FLOAT16 if half else TensorProto.FLOAT)
        assert [n.op_type for n in g.node] == ["GatherBlockQuantized"] + (["Cast"] if half else [])
        assert g.node[-1].output == ["rows"]
