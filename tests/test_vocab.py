"""Vocabulary pruning (`edgekd/train/vocab.py`, `edgekd prune-vocab`): same tokens and logits on the
texts pruned on, unseen words split into known pieces, special-token ids consistent, the pruned
checkpoint exports and loads, bad input errors, and the recipe's prune step."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import AG_LABELS, TRAINED_MAX_LENGTH, read_texts

import edgekd
from edgekd import bundle as bundle_mod
from edgekd.cli import main as cli_main
from edgekd.data import Split
from edgekd.errors import ModelError
from edgekd.train.vocab import check_prunable, prune_vocab, slice_embeddings

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def _split(split: str, n: int, skip: int = 0) -> Split:
    texts, names = read_texts("ag_news", split, skip + n)
    return Split(texts[skip:], np.array([AG_LABELS.index(x) for x in names[skip:]], dtype=np.int64))


@pytest.fixture(scope="module")
def splits() -> SimpleNamespace:
    return SimpleNamespace(train=_split("train", 160), validation=_split("train", 20, skip=160),
                           test=_split("test", 40), labels=AG_LABELS)


@pytest.fixture(scope="module")
def pruned(trained_tiny_bert: Path, splits: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("pruned") / "ckpt"
    prune_vocab(trained_tiny_bert, splits, out, min_count=1, log=lambda m: None)
    return out


def _fit_texts(splits: SimpleNamespace) -> list[str]:
    return splits.train.texts + splits.validation.texts


def test_same_tokens_on_the_texts_pruned_on(pruned: Path, trained_tiny_bert: Path, splits: SimpleNamespace) -> None:
    from transformers import AutoTokenizer

    before, after = AutoTokenizer.from_pretrained(trained_tiny_bert), AutoTokenizer.from_pretrained(pruned)
    assert len(after) < len(before) // 2
    for text in _fit_texts(splits):
        assert after.tokenize(text) == before.tokenize(text)
    card = json.loads((pruned / "edgekd-model.json").read_text())
    record = card["vocab_pruning"]
    assert record["fit_texts_same_tokens"] == 1.0 and record["min_count"] == 1
    assert record["original_vocab_size"] == len(before) and record["vocab_size"] == len(after)
    assert record["weights_bytes_after"] < record["weights_bytes_before"]
    assert record["params_before"] - record["params_after"] == (len(before) - len(after)) * 32
    assert card["max_length"] == TRAINED_MAX_LENGTH and card["pruned_from"] == str(trained_tiny_bert)


def test_unseen_word_splits_into_known_pieces(pruned: Path, trained_tiny_bert: Path, splits: SimpleNamespace) -> None:
    from transformers import AutoTokenizer

    before, after = AutoTokenizer.from_pretrained(trained_tiny_bert), AutoTokenizer.from_pretrained(pruned)
    seen = " ".join(_fit_texts(splits)).lower()
    word = next(w for w in ("volcano", "orchestra", "butterfly", "cathedral") if w in before.vocab and w not in seen)
    pieces = after.tokenize(word)
    assert before.tokenize(word) == [word] and len(pieces) > 1 and "[UNK]" not in pieces
    assert "".join(p.removeprefix("##") for p in pieces) == word
    assert after.tokenize("qzxj wvkq") and "[UNK]" not in after.tokenize("qzxj wvkq")


def test_special_token_ids_consistent(pruned: Path, trained_tiny_bert: Path) -> None:
    from transformers import AutoConfig

    from edgekd.train.infer import load_checkpoint

    old_model, old_tok = load_checkpoint(trained_tiny_bert)
    new_model, new_tok = load_checkpoint(pruned)
    old_rows = old_model.get_input_embeddings().weight.detach().numpy()
    new_rows = new_model.get_input_embeddings().weight.detach().numpy()
    assert new_rows.shape[0] == len(new_tok) == AutoConfig.from_pretrained(pruned).vocab_size
    for token in SPECIALS:
        i, j = old_tok.convert_tokens_to_ids(token), new_tok.convert_tokens_to_ids(token)
        assert j != new_tok.unk_token_id or token == "[UNK]"
        np.testing.assert_array_equal(new_rows[j], old_rows[i])
    assert new_model.config.pad_token_id == new_tok.pad_token_id == new_tok.convert_tokens_to_ids("[PAD]")
    ids = new_tok("a b")["input_ids"]
    assert ids[0] == new_tok.cls_token_id and ids[-1] == new_tok.sep_token_id
    spec = json.loads((pruned / "tokenizer.json").read_text())
    assert {t["content"]: t["id"] for t in spec["added_tokens"]} == {t: new_tok.convert_tokens_to_ids(t) for t in SPECIALS}
    assert spec["post_processor"]["special_tokens"]["[CLS]"]["ids"] == [new_tok.cls_token_id]
    vocab_txt = (pruned / "vocab.txt").read_text(encoding="utf-8").splitlines()
    assert vocab_txt == new_tok.convert_ids_to_tokens(list(range(len(new_tok))))


def test_pruned_logits_equal_unpruned(pruned: Path, trained_tiny_bert: Path, splits: SimpleNamespace) -> None:
    from edgekd.train.infer import load_checkpoint, torch_logits

    texts = _fit_texts(splits)[:64]
    ref = torch_logits(*load_checkpoint(trained_tiny_bert), texts, TRAINED_MAX_LENGTH)
    got = torch_logits(*load_checkpoint(pruned), texts, TRAINED_MAX_LENGTH)
    np.testing.assert_allclose(got, ref, atol=1e-5)


def test_pruned_checkpoint_exports_and_loads(pruned: Path, splits: SimpleNamespace, tmp_path: Path) -> None:
    from edgekd.exporters.bundle_writer import ExportData, ExportOptions, export_bundle
    from edgekd.train.infer import load_checkpoint, torch_logits

    out = tmp_path / "bundle"
    export_bundle(pruned, out, ExportData(test_texts=_fit_texts(splits), source="ag_news/train"),
                  ExportOptions(targets=["onnx"], check_per_class=16), log=lambda m: None)
    manifest = bundle_mod.read_manifest(out)
    assert manifest.parity["onnx-fp32"]["status"] == "passed"
    texts = splits.train.texts[:32]
    got = edgekd.load(out, backend="onnx").logits(texts)
    np.testing.assert_allclose(got, torch_logits(*load_checkpoint(pruned), texts, TRAINED_MAX_LENGTH), atol=1e-3)


def test_tied_output_layer_is_sliced_and_stays_tied() -> None:
    import torch
    from transformers import BertConfig, BertForMaskedLM

    model = BertForMaskedLM(BertConfig(vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=1,
                                       intermediate_size=8, pad_token_id=3))
    old_w = model.get_input_embeddings().weight.detach().clone()
    old_b = model.cls.predictions.bias.detach().clone()
    keep = [0, 3, 7, 20, 49]
    slice_embeddings(model, keep)
    out = model.get_output_embeddings()
    assert out.weight is model.get_input_embeddings().weight and out.weight.shape == (5, 8)
    assert torch.equal(out.weight, old_w[keep]) and torch.equal(model.cls.predictions.bias, old_b[keep])
    assert out.bias is model.cls.predictions.bias
    assert model.config.vocab_size == 5 and model.config.pad_token_id == 1
    logits = model(input_ids=torch.tensor([[0, 1, 4]])).logits
    assert logits.shape == (1, 3, 5)


def test_bad_input_errors(tiny_bert: Path, tmp_path: Path, splits: SimpleNamespace) -> None:
    with pytest.raises(ModelError, match="at least 1"):
        prune_vocab(tiny_bert, splits, tmp_path / "x", min_count=0)
    other = tmp_path / "bpe"
    shutil.copytree(tiny_bert, other)
    spec = json.loads((other / "tokenizer.json").read_text())
    spec["model"]["type"] = "BPE"
    (other / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(ModelError, match="supports BERT-family checkpoints with a WordPiece"):
        check_prunable(other)
    spec["model"]["type"] = "WordPiece"
    spec["added_tokens"].append({**spec["added_tokens"][0], "content": "<extra>", "id": 30522})
    (other / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(ModelError, match="added tokens outside its WordPiece vocabulary"):
        check_prunable(other)
    spec["model"]["type"] = "BPE"
    (other / "tokenizer.json").write_text(json.dumps(spec))
    with pytest.raises(ModelError, match="no config.json"):
        check_prunable(tmp_path)
    # CLI: one-line errors, exit 2, before any data or model loads
    assert cli_main(["prune-vocab", str(tiny_bert), "--data", str(tmp_path / "nowhere"), "--out",
                     str(tmp_path / "o"), "--min-count", "0"]) == 2
    assert cli_main(["prune-vocab", str(other), "--data", str(tmp_path / "nowhere"), "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_recipe_adds_a_prune_step_before_export(tmp_path: Path) -> None:
    from edgekd import pipeline
    from edgekd.errors import RecipeError
    from edgekd.recipe import parse_recipe

    base = {"out": str(tmp_path), "data": {"path": "d"}, "teacher": {"path": "/models/t"},
            "baseline": {"enabled": False}, "students": {"specs": ["layers=2"]}}
    steps, paths = pipeline.plan(parse_recipe(base, ["export.prune_vocab_min_count=2"]))
    assert [s.name for s in steps] == ["data", "distill layers-2", "prune-vocab layers-2", "export layers-2",
                                       "verify layers-2", "report"]
    by = {s.name: s for s in steps}
    prune = by["prune-vocab layers-2"].command
    pruned = paths["exported:layers-2"]
    assert prune[:2] == ["prune-vocab", str(paths["student:layers-2"])] and prune[prune.index("--out") + 1] == str(pruned)
    assert prune[prune.index("--min-count") + 1] == "2" and by["prune-vocab layers-2"].after == ["distill layers-2"]
    assert by["export layers-2"].command[1] == str(pruned) and by["export layers-2"].after == ["prune-vocab layers-2"]
    steps, _ = pipeline.plan(parse_recipe(base))
    assert "prune-vocab layers-2" not in [s.name for s in steps]
    with pytest.raises(RecipeError, match="prune_vocab_min_count"):
        parse_recipe(base, ["export.prune_vocab_min_count=0"])
