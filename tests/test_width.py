"""Width pruning (edgekd/train/width.py): importance scores against hand computations, a pruned
model against the unpruned one with the removed units zeroed, save/load, export to every target,
and `edgekd distill --student layers=K,ffn=N,heads=H` end to end."""

from __future__ import annotations

import copy
import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import AG_LABELS, read_texts, write_dataset

from edgekd.cli import main
from edgekd.train.students import parse_student_spec
from edgekd.train.width import importance, prune, prune_width, top_units


def _real(n: int, split: str = "train") -> tuple[list[str], np.ndarray]:
    texts, names = read_texts("ag_news", split, n)
    return texts, np.array([AG_LABELS.index(x) for x in names])


def _model64(model_dir: Path) -> tuple[object, object]:
    """The checkpoint in float64 with eager attention (Hugging Face's head_mask needs it)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    model = AutoModelForSequenceClassification.from_pretrained(model_dir, attn_implementation="eager")
    return model.double().eval(), AutoTokenizer.from_pretrained(model_dir)


def _logits(model: object, tokenizer: object, texts: list[str], **kwargs: object) -> object:
    enc = tokenizer(texts, truncation=True, max_length=32, padding=True, return_tensors="pt")
    return model(**enc, **kwargs).logits


def test_importance_matches_hand_computation(tiny_bert: Path) -> None:
    import torch
    import torch.nn.functional as F

    model, tok = _model64(tiny_bert)
    texts, y = _real(6)
    heads, ffn = importance(model, tok, texts, y, 32, batch_size=3)
    # By hand, batch by batch: heads through Hugging Face's own head_mask (it scales each head's
    # attention probabilities, so its output), FFN neurons as |sum over tokens of activation x gradient|.
    want_heads, want_ffn = np.zeros((2, 2)), np.zeros((2, 64))
    layers = model.bert.encoder.layer
    for start in (0, 3):
        batch, labels = texts[start : start + 3], torch.tensor(y[start : start + 3])
        head_mask = torch.ones(2, 2, dtype=torch.float64, requires_grad=True)
        acts: list = []

        def keep(module: object, args: object, out: object, acts: list = acts) -> None:
            out.retain_grad()
            acts.append(out)

        hooks = [layer.intermediate.register_forward_hook(keep) for layer in layers]
        loss = F.cross_entropy(_logits(model, tok, batch, head_mask=head_mask), labels, reduction="sum")
        loss.backward()
        for h in hooks:
            h.remove()
        want_heads += head_mask.grad.abs().numpy()
        for i, a in enumerate(acts):  # a: [batch, seq, ffn]
            want_ffn[i] += (a * a.grad).sum(dim=(0, 1)).abs().detach().numpy()
    np.testing.assert_allclose(np.stack(heads), want_heads, rtol=1e-9, atol=1e-15)
    np.testing.assert_allclose(np.stack(ffn), want_ffn, rtol=1e-9, atol=1e-15)
    assert want_heads.min() > 0 and want_ffn.max() > 0
    # And the gradient is the loss's slope: a central difference on layer 1, head 0, first batch.
    def loss_at(value: float) -> float:
        mask = torch.ones(2, 2, dtype=torch.float64)
        mask[1, 0] = value
        with torch.no_grad():
            out = _logits(model, tok, texts[:3], head_mask=mask)
            return float(F.cross_entropy(out, torch.tensor(y[:3]), reduction="sum"))
    slope = (loss_at(1 + 1e-6) - loss_at(1 - 1e-6)) / 2e-6
    first, _ = importance(model, tok, texts[:3], y[:3], 32, batch_size=3)
    assert abs(slope) == pytest.approx(first[1][0], rel=1e-5)


def test_pruned_logits_equal_masked_unpruned(tiny_bert: Path) -> None:
    import torch

    model, tok = _model64(tiny_bert)
    keep_heads = [[1], [0]]
    rng = np.random.default_rng(0)
    keep_ffn = [sorted(rng.choice(64, 40, replace=False).tolist()) for _ in range(2)]
    # Masked: the removed heads' value rows and the removed neurons' input rows zeroed, so those
    # heads output 0 (probs @ 0) and those neurons output GELU(0) = 0.
    masked = copy.deepcopy(model)
    with torch.no_grad():
        for layer, kh, kf in zip(masked.bert.encoder.layer, keep_heads, keep_ffn, strict=True):
            for h in set(range(2)) - set(kh):
                layer.attention.self.value.weight[h * 16 : (h + 1) * 16] = 0
                layer.attention.self.value.bias[h * 16 : (h + 1) * 16] = 0
            gone = sorted(set(range(64)) - set(kf))
            layer.intermediate.dense.weight[gone] = 0
            layer.intermediate.dense.bias[gone] = 0
    pruned = prune(copy.deepcopy(model), keep_heads, keep_ffn)
    assert pruned.config.pruned_heads == {0: [0], 1: [1]} and pruned.config.intermediate_size == 40
    layer = pruned.bert.encoder.layer[0]
    assert tuple(layer.attention.self.query.weight.shape) == (16, 32)
    assert tuple(layer.attention.output.dense.weight.shape) == (32, 16)
    assert tuple(layer.output.dense.weight.shape) == (32, 40)
    texts, _ = _real(8, "test")
    with torch.no_grad():
        want, got = _logits(masked, tok, texts), _logits(pruned, tok, texts)
        unpruned = _logits(model, tok, texts)
    np.testing.assert_allclose(got.numpy(), want.numpy(), rtol=0, atol=1e-12)
    assert float((unpruned - got).abs().max()) > 1e-3  # the pruning did change the model


@pytest.fixture(scope="module")
def pruned_tiny(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict]:
    """tiny_bert width-pruned to 1 head and 24 FFN neurons per layer, saved as a checkpoint."""
    from edgekd.train.infer import load_checkpoint

    model, tok = load_checkpoint(tiny_bert)
    texts, y = _real(48)
    record = prune_width(parse_student_spec("layers=2,ffn=24,heads=1"), model, tok,
                         SimpleNamespace(texts=texts, labels=y), max_length=32)
    out = tmp_path_factory.mktemp("pruned") / "student"
    model.save_pretrained(out)
    tok.save_pretrained(out)
    (out / "edgekd-model.json").write_text(json.dumps({"max_length": 64, "width_pruning": record}))
    return out, record


def test_pruned_checkpoint_round_trips(pruned_tiny: tuple[Path, dict], tiny_bert: Path) -> None:
    from edgekd.train.infer import load_checkpoint, torch_logits

    out, record = pruned_tiny
    # The kept units are each layer's top scores, recorded with the data they were measured on.
    assert record["kept_heads"] == top_units([np.array(s) for s in record["head_scores"]], 1)
    assert [len(k) for k in record["kept_ffn"]] == [24, 24] and record["data"]["texts"] == 48
    assert record["before"] == {"heads": [2, 2], "ffn": [64, 64]}
    config = json.loads((out / "config.json").read_text())
    assert config["intermediate_size"] == 24
    assert {int(k): v for k, v in config["pruned_heads"].items()} == {
        i: [1 - k[0]] for i, k in enumerate(record["kept_heads"])}
    loaded, tok = load_checkpoint(out)
    texts, _ = _real(12, "test")
    assert loaded.bert.encoder.layer[1].attention.self.num_attention_heads == 1
    # Reloaded = the model that was pruned: the same weights as the original where kept.
    original, _ = load_checkpoint(tiny_bert)
    kf = record["kept_ffn"][0]
    np.testing.assert_array_equal(loaded.bert.encoder.layer[0].output.dense.weight.detach().numpy(),
                                  original.bert.encoder.layer[0].output.dense.weight.detach().numpy()[:, kf])
    logits = torch_logits(loaded, tok, texts, 64)
    assert logits.shape == (12, 4) and np.isfinite(logits).all()


def test_pruned_checkpoint_exports_to_every_target(pruned_tiny: tuple[Path, dict]) -> None:
    import edgekd
    from edgekd import bundle as bundle_mod
    from edgekd.exporters.bundle_writer import ExportData, ExportOptions, export_bundle
    from edgekd.train.infer import load_checkpoint, torch_logits

    out, _ = pruned_tiny
    texts, _ = _real(60, "test")
    bundle = out.parent / "bundle"
    export_bundle(out, bundle, ExportData(test_texts=texts, source="ag_news/test"),
                  ExportOptions(targets=["all"], check_per_class=16), log=lambda m: None)
    manifest = bundle_mod.read_manifest(bundle)
    assert {a.name for a in manifest.artifacts} == {"onnx-fp32", "openvino-fp32", "openvino-fp16", "coreml-fp16"}
    for artifact in manifest.artifacts:  # Core ML through the MIL reference evaluator off macOS
        assert manifest.parity[artifact.name]["status"] == "passed", manifest.parity[artifact.name]
    model, tok = load_checkpoint(out)
    want = torch_logits(model, tok, texts[:20], 64)
    for backend in ("onnx", "openvino"):
        got = edgekd.load(bundle, backend=backend, precision="fp32").logits(texts[:20])
        assert np.abs(got - want).max() <= 1e-3, backend


def test_distill_cli_width_pruned_student(tiny_bert: Path, tmp_path: Path) -> None:
    data = write_dataset(tmp_path / "data", {"train": 64, "test": 24})
    out = tmp_path / "student"
    argv = ["distill", "--teacher", str(tiny_bert), "--data", str(data), "--student", "layers=2,ffn=32,heads=1",
            "--out", str(out), "--epochs", "1", "--max-length", "32", "--cache-dir", str(tmp_path / "cache"),
            "--no-progress"]
    assert main(argv) == 0
    card = json.loads((out / "edgekd-model.json").read_text())["width_pruning"]
    assert card["heads"] == 1 and card["ffn"] == 32 and len(card["kept_heads"]) == 2
    assert card["data"]["split"] == "train" and 0 < card["data"]["texts"] <= 64
    config = json.loads((out / "config.json").read_text())
    assert config["intermediate_size"] == 32 and sorted(config["pruned_heads"]) == ["0", "1"]
    rows = json.loads((out / "comparison.json").read_text())["rows"]
    assert rows[1]["model"] == "layers-2-ffn32-heads1" and rows[1]["params"] < rows[0]["params"]


@pytest.mark.parametrize("spec, extra, message", [
    ("layers=2,heads=3", [], "teacher has 2 heads per layer"),
    ("layers=1,ffn=65", [], "64 neurons per layer"),
    ("layers=1,heads=1", ["--attention-weight", "0.5"], "--attention-weight 0"),
    ("layers=2", [], "layers=2 with ffn=/heads="),
])
def test_bad_width_specs_fail_before_data_loads(tiny_bert: Path, tmp_path: Path, capsys: pytest.CaptureFixture,
                                                spec: str, extra: list[str], message: str) -> None:
    argv = ["distill", "--teacher", str(tiny_bert), "--data", str(tmp_path / "no-data"), "--student", spec,
            "--out", str(tmp_path / "out"), *extra]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("edgekd distill: error:") and message in err and "\n" not in err
