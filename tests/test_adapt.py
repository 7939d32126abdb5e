"""Vocabulary adaptation (`edgekd/train/adapt.py`, `edgekd adapt-vocab`): FVT rows are the mean of the
base pieces' rows, unseen words split into known characters, special-token ids consistent, the adapted
model exports and loads with its gates passing, bad input errors name the fix, and the recipe's step."""

from __future__ import annotations

import json
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
from conftest import AG_LABELS, read_texts

import edgekd
from edgekd import bundle as bundle_mod
from edgekd.cli import main as cli_main
from edgekd.data import Split
from edgekd.errors import ModelError
from edgekd.train.adapt import ADAPTED_EMBEDDING_LR, adapt_vocab, old_pieces

SPECIALS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
SIZE = 600
MAX_LENGTH = 64


def _arabic(n: int, skip: int = 0) -> Split:
    texts, names = read_texts("arabic_news_ant", "train", skip + n)
    labels = sorted(set(names))
    return Split(texts[skip:], np.array([labels.index(x) for x in names[skip:]], dtype=np.int64))


@pytest.fixture(scope="module")
def splits() -> SimpleNamespace:
    return SimpleNamespace(train=_arabic(200), validation=_arabic(20, skip=200), test=_arabic(20, skip=220))


@pytest.fixture(scope="module")
def adapted(tiny_bert: Path, splits: SimpleNamespace, tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("adapted") / "base"
    adapt_vocab(str(tiny_bert), splits, out, SIZE, log=lambda m: None)
    return out


def test_card_records_the_adaptation(adapted: Path, splits: SimpleNamespace) -> None:
    from transformers import AutoConfig, AutoTokenizer

    record = json.loads((adapted / "edgekd-model.json").read_text())["vocab_adaptation"]
    assert record["requested_size"] == record["vocab_size"] == SIZE == len(AutoTokenizer.from_pretrained(adapted))
    assert record["corpus_rows"] == len(splits.train.texts) and record["original_vocab_size"] == 30522
    assert AutoConfig.from_pretrained(adapted).num_hidden_layers == record["layers_kept"] == 2
    # Arabic is split into characters by the English vocabulary; the native one needs far fewer tokens.
    assert record["after"]["tokens_per_1000_chars"] < 0.7 * record["before"]["tokens_per_1000_chars"]
    assert sum(record["init"].values()) == SIZE and record["init"]["mean_of_pieces"] > SIZE // 2


def test_fvt_row_is_the_mean_of_its_pieces(adapted: Path, tiny_bert: Path) -> None:
    from transformers import AutoTokenizer

    from edgekd.train.infer import load_checkpoint

    old_model, old_tok = load_checkpoint(tiny_bert)
    new_tok = AutoTokenizer.from_pretrained(adapted)
    from transformers import AutoModel

    new_rows = AutoModel.from_pretrained(adapted).get_input_embeddings().weight.detach().numpy()
    old_rows = old_model.get_input_embeddings().weight.detach().numpy()
    words = [t for t in new_tok.convert_ids_to_tokens(list(range(len(new_tok))))
             if not t.startswith("##") and len(old_tok.tokenize(t)) > 2 and "[UNK]" not in old_tok.tokenize(t)]
    assert len(words) > 20
    for word in words[:50]:
        pieces = old_tok.convert_tokens_to_ids(old_tok.tokenize(word))
        np.testing.assert_allclose(new_rows[new_tok.convert_tokens_to_ids(word)], old_rows[pieces].mean(0), rtol=1e-6)
    for token in SPECIALS:  # specials (and any token the base vocabulary has) are copied
        np.testing.assert_array_equal(new_rows[new_tok.convert_tokens_to_ids(token)],
                                      old_rows[old_tok.convert_tokens_to_ids(token)])
    # a continuation token decomposes as the continuation of a word: the first piece carries ## too
    vocab = old_tok.vocab
    assert old_pieces("##ing", vocab, "##", 100) == [vocab["##ing"]]
    assert "##ingzq" not in vocab and "##zq" not in vocab
    assert old_pieces("##ingzq", vocab, "##", 100) == [vocab["##ing"], vocab["##z"], vocab["##q"]]
    assert old_pieces("\u1401", vocab, "##", 100) is None


def test_unseen_word_splits_into_characters(adapted: Path, splits: SimpleNamespace) -> None:
    from transformers import AutoTokenizer

    tok = AutoTokenizer.from_pretrained(adapted)
    seen = " ".join(splits.train.texts)
    word = "".join(reversed("الاستراتيجيات")) + "قظغ"
    assert word not in seen
    pieces = tok.tokenize(word)
    assert "[UNK]" not in pieces and "".join(p.removeprefix("##") for p in pieces) == word
    # Latin letters and digits are in the alphabet even when the corpus has few of them
    assert "[UNK]" not in tok.tokenize("zqxj 90210")


def test_special_token_ids_consistent(adapted: Path) -> None:
    from transformers import AutoConfig, AutoModel, AutoTokenizer

    tok = AutoTokenizer.from_pretrained(adapted)
    config = AutoConfig.from_pretrained(adapted)
    rows = AutoModel.from_pretrained(adapted).get_input_embeddings().weight
    assert rows.shape[0] == len(tok) == config.vocab_size == SIZE
    assert tok.convert_tokens_to_ids(SPECIALS) == [0, 1, 2, 3, 4]
    assert config.pad_token_id == tok.pad_token_id == 0
    ids = tok("مرحبا بكم")["input_ids"]
    assert ids[0] == tok.cls_token_id == 2 and ids[-1] == tok.sep_token_id == 3
    spec = json.loads((adapted / "tokenizer.json").read_text())
    assert {t["content"]: t["id"] for t in spec["added_tokens"]} == dict(zip(SPECIALS, range(5), strict=True))
    assert spec["post_processor"]["special_tokens"]["[SEP]"]["ids"] == [3]
    assert (adapted / "vocab.txt").read_text(encoding="utf-8").splitlines() == tok.convert_ids_to_tokens(list(range(SIZE)))
    decoder = json.loads((adapted / "tokenizer_config.json").read_text())["added_tokens_decoder"]
    assert {v["content"]: int(k) for k, v in decoder.items()} == dict(zip(SPECIALS, range(5), strict=True))


def test_adapted_checkpoint_exports_and_loads(adapted: Path, splits: SimpleNamespace, tmp_path: Path) -> None:
    import torch
    from transformers import AutoTokenizer, BertForSequenceClassification

    from edgekd.exporters.bundle_writer import ExportData, ExportOptions, export_bundle
    from edgekd.train.infer import load_checkpoint, torch_logits

    ckpt = tmp_path / "classifier"
    torch.manual_seed(0)
    model = BertForSequenceClassification.from_pretrained(
        adapted, num_labels=4, id2label=dict(enumerate(AG_LABELS)), label2id={n: i for i, n in enumerate(AG_LABELS)})
    with torch.no_grad():  # logits with spread, as conftest's tiny_bert (parity needs them)
        model.classifier.weight.mul_(20.0)
    model.save_pretrained(ckpt)
    AutoTokenizer.from_pretrained(adapted).save_pretrained(ckpt)
    (ckpt / "edgekd-model.json").write_text(json.dumps({"max_length": MAX_LENGTH, "role": "test"}))
    out = tmp_path / "bundle"
    export_bundle(ckpt, out, ExportData(test_texts=splits.train.texts, source="arabic_news_ant/train"),
                  ExportOptions(targets=["onnx"], check_per_class=16), log=lambda m: None)
    manifest = bundle_mod.read_manifest(out)
    assert manifest.parity["onnx-fp32"]["status"] == "passed"
    texts = splits.test.texts
    got = edgekd.load(out, backend="onnx").logits(texts)
    np.testing.assert_allclose(got, torch_logits(*load_checkpoint(ckpt), texts, MAX_LENGTH), atol=1e-3)


def test_bad_input_errors(tiny_bert: Path, splits: SimpleNamespace, tmp_path: Path) -> None:
    few = SimpleNamespace(train=_arabic(5), validation=_arabic(2, skip=5))
    with pytest.raises(ModelError, match=r"yields only [\d,]+ tokens .* use --size \d+ or less"):
        adapt_vocab(str(tiny_bert), few, tmp_path / "a", 5000, log=lambda m: None)
    with pytest.raises(ModelError, match="leaves no room for learned tokens.*use --size"):
        adapt_vocab(str(tiny_bert), splits, tmp_path / "b", 150, log=lambda m: None)
    unseen = SimpleNamespace(train=Split(["ᐁᐃᐅ ᐊᐋ"] * 20, np.zeros(20, dtype=np.int64)), validation=Split([], np.zeros(0)))
    with pytest.raises(ModelError, match="none of the training texts' characters.*covers this script"):
        adapt_vocab(str(tiny_bert), unseen, tmp_path / "c", 200, log=lambda m: None)
    mostly = SimpleNamespace(train=Split([t + " ᐁᐃᐅᐊᐋ" * 20 for t in splits.train.texts], splits.train.labels),
                             validation=splits.validation)
    logged: list[str] = []
    adapt_vocab(str(tiny_bert), mostly, tmp_path / "d", SIZE, log=logged.append)
    assert any(m.startswith("warning:") and "unknown to" in m and "--model DIR" in m for m in logged)
    assert not any(p.name.startswith(".") for p in tmp_path.iterdir())  # no staging left behind
    # CLI: one-line errors, exit 2, before data or model loads
    assert cli_main(["adapt-vocab", str(tiny_bert), "--data", str(tmp_path / "nowhere"), "--size", "50",
                     "--out", str(tmp_path / "o")]) == 2
    assert cli_main(["adapt-vocab", str(tmp_path), "--data", str(tmp_path / "nowhere"), "--size", "800",
                     "--out", str(tmp_path / "o")]) == 2
    assert not (tmp_path / "o").exists()


def test_recipe_adds_an_adapt_step_before_the_teacher(tmp_path: Path) -> None:
    from edgekd import pipeline
    from edgekd.errors import RecipeError
    from edgekd.recipe import parse_recipe

    base = {"out": str(tmp_path), "data": {"path": "d"}, "baseline": {"enabled": False},
            "students": {"specs": ["layers=2"]}}
    steps, paths = pipeline.plan(parse_recipe(base, ["teacher.vocab_size=16000"]))
    assert [s.name for s in steps][:3] == ["data", "adapt-vocab", "teacher"]
    by = {s.name: s for s in steps}
    adapt, train = by["adapt-vocab"].command, by["teacher"].command
    assert adapt[:2] == ["adapt-vocab", "sentence-transformers/all-MiniLM-L6-v2"]
    assert adapt[adapt.index("--size") + 1] == "16000" and adapt[adapt.index("--out") + 1] == str(paths["base"])
    assert train[train.index("--model") + 1] == str(paths["base"]) and by["teacher"].after == ["adapt-vocab"]
    steps, _ = pipeline.plan(parse_recipe(base))
    assert "adapt-vocab" not in [s.name for s in steps]
    with pytest.raises(RecipeError, match="teacher.vocab_size.*use 100 or more"):
        parse_recipe(base, ["teacher.vocab_size=10"])
    with pytest.raises(RecipeError, match="teacher.vocab_size.*teacher.path set"):
        parse_recipe(base, ["teacher.vocab_size=8000", "teacher.path=/models/t"])
    # masked-LM pre-training rides on the adapt step, at the teacher's window and batch size
    steps, _ = pipeline.plan(parse_recipe(base, ["teacher.vocab_size=16000", "teacher.mlm_epochs=2",
                                                 "teacher.max_length=96"]))
    adapt = next(s for s in steps if s.name == "adapt-vocab")
    assert adapt.stage.mlm.epochs == 2 and adapt.stage.mlm.max_length == 96
    assert adapt.command[adapt.command.index("--mlm-epochs") + 1] == "2"
    with pytest.raises(RecipeError, match="teacher.mlm_epochs.*set teacher.vocab_size too"):
        parse_recipe(base, ["teacher.mlm_epochs=1"])
    assert cli_main(["adapt-vocab", "m", "--data", str(tmp_path), "--size", "800", "--out", str(tmp_path / "o"),
                     "--mlm-epochs", "-1"]) == 2


def test_teacher_and_student_cards_inherit_the_record(adapted: Path, tmp_path: Path) -> None:
    from edgekd.train.adapt import inherit

    record = json.loads((adapted / "edgekd-model.json").read_text())["vocab_adaptation"]
    teacher, student = tmp_path / "teacher", tmp_path / "student"
    for d in (teacher, student):
        d.mkdir()
        (d / "edgekd-model.json").write_text(json.dumps({"role": d.name, "max_length": 64}))
    inherit(teacher, adapted)
    inherit(student, teacher)
    card = json.loads((student / "edgekd-model.json").read_text())
    assert card["vocab_adaptation"] == record and card["role"] == "student"
    inherit(teacher, tmp_path / "plain")  # no card there: nothing changes
    assert json.loads((teacher / "edgekd-model.json").read_text())["vocab_adaptation"] == record


def test_masked_lm_pretraining_teaches_the_encoder_and_keeps_a_normal_base(
        tiny_bert: Path, adapted: Path, splits: SimpleNamespace, tmp_path: Path) -> None:
    """--mlm-epochs: the encoder and embeddings train on the training texts (held-out masked-LM loss
    drops), the pooler masked-LM does not train is kept, and the result loads as a classifier base."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    from edgekd.train.mlm import MlmConfig

    out = tmp_path / "mlm"
    logged: list[str] = []
    record = adapt_vocab(str(tiny_bert), splits, out, SIZE, log=logged.append,
                         mlm=MlmConfig(epochs=3, lr=2e-3, max_length=32, batch_size=16))
    mlm = record["mlm"]
    assert mlm["texts"] == len(splits.train.texts) and mlm["steps"] == 3 * -(-len(splits.train.texts) // 16)
    assert len(mlm["train_loss_per_epoch"]) == 3 and mlm["held_out"]["texts"] == len(splits.validation.texts)
    assert mlm["held_out"]["after"]["loss"] < mlm["held_out"]["before"]["loss"] - 0.5
    assert mlm["embedding_lr"] == ADAPTED_EMBEDDING_LR and mlm["lr"] == 2e-3  # the FVT rows' own rate
    assert json.loads((out / "edgekd-model.json").read_text())["vocab_adaptation"]["mlm"] == mlm
    trained, fvt = load_file(str(out / "model.safetensors")), load_file(str(adapted / "model.safetensors"))
    assert trained.keys() == fvt.keys()  # the same base model layout, no masked-LM head
    assert not torch.equal(trained["embeddings.word_embeddings.weight"], fvt["embeddings.word_embeddings.weight"])
    assert not torch.equal(trained["encoder.layer.1.output.dense.weight"], fvt["encoder.layer.1.output.dense.weight"])
    assert torch.equal(trained["pooler.dense.weight"], fvt["pooler.dense.weight"])  # untouched by masked LM
    assert not any(p.name.startswith(".") for p in out.iterdir())  # no trainer scratch left
    model, info = AutoModelForSequenceClassification.from_pretrained(out, num_labels=6, output_loading_info=True)
    assert info["missing_keys"] and all(k.startswith("classifier.") for k in info["missing_keys"])


def test_held_out_masked_lm_scores_match_the_model_loss(tiny_bert: Path, splits: SimpleNamespace) -> None:
    """The held-out loss is the mean cross-entropy over masked tokens: the same as the model's own loss on
    the same masked batch, and the same masks on every call with one seed."""
    import torch
    from transformers import AutoModelForMaskedLM, AutoTokenizer, DataCollatorForLanguageModeling

    from edgekd.train.mlm import MASK_PROBABILITY, _dataset, held_out_scores

    tokenizer = AutoTokenizer.from_pretrained(tiny_bert)
    model = AutoModelForMaskedLM.from_pretrained(tiny_bert).eval()
    texts = list(splits.validation.texts[:12])
    first = held_out_scores(model, tokenizer, texts, 32, seed=7, batch_size=32)
    assert held_out_scores(model, tokenizer, texts, 32, seed=7, batch_size=32) == first
    torch.manual_seed(7)
    batch = DataCollatorForLanguageModeling(tokenizer, mlm_probability=MASK_PROBABILITY)(_dataset(tokenizer, texts, 32))
    with torch.no_grad():
        out = model(**batch)
    assert first["masked_tokens"] == int((batch["labels"] != -100).sum())
    assert first["loss"] == pytest.approx(float(out.loss), abs=1e-3)


def test_a_failed_masked_lm_run_leaves_nothing_behind(tiny_bert: Path, splits: SimpleNamespace, tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.train import mlm as mlm_module
    from edgekd.train.mlm import MlmConfig

    def diverge(*args: object, **kwargs: object) -> dict:
        raise ModelError("masked-LM pre-training diverged (held-out loss not finite); lower --mlm-lr")

    monkeypatch.setattr(mlm_module, "continue_pretraining", diverge)
    with pytest.raises(ModelError, match="lower --mlm-lr"):
        adapt_vocab(str(tiny_bert), splits, tmp_path / "out", SIZE, log=lambda m: None, mlm=MlmConfig(epochs=1))
    assert list(tmp_path.iterdir()) == []  # neither the output nor its staging folder


def test_adapted_base_trains_its_embeddings_at_their_own_rate(adapted: Path, splits: SimpleNamespace,
                                                              tiny_bert: Path, tmp_path: Path) -> None:
    """A fresh adapt-vocab base gets ADAPTED_EMBEDDING_LR for its word embeddings, anything else the body's
    rate; one Adam step (no warm-up) moves each touched parameter by about its group's rate, so the
    update sizes show the rates the optimizer really used."""
    import torch

    from edgekd.train.adapt import embedding_lr_for
    from edgekd.train.common import TrainConfig
    from edgekd.train.teacher import build_trainer, load_base_model

    assert embedding_lr_for(1e-4, None, adapted)[0] == ADAPTED_EMBEDDING_LR
    assert embedding_lr_for(1e-4, None, tiny_bert) == (1e-4, embedding_lr_for(1e-4, None, tiny_bert)[1])
    assert embedding_lr_for(1e-4, 2e-4, adapted)[0] == 2e-4  # the user's rate wins
    teacher = tmp_path / "teacher"  # a fine-tuned checkpoint from that base: its rows are trained
    teacher.mkdir()
    (teacher / "edgekd-model.json").write_text(json.dumps({"role": "teacher", "vocab_adaptation": {}}))
    assert embedding_lr_for(1e-4, None, teacher)[0] == 1e-4

    labels = [str(i) for i in range(int(splits.train.labels.max()) + 1)]
    data = SimpleNamespace(train=splits.train, validation=splits.validation, labels=labels)
    body_lr, rate = 1e-5, 1e-3
    config = TrainConfig(epochs=1.0, lr=body_lr, embedding_lr=rate, batch_size=len(splits.train), max_length=32,
                         warmup_ratio=0.0, weight_decay=0.0, class_weight="none", select_metric="accuracy",
                         patience=0, progress=False)
    model, tokenizer, _ = load_base_model(str(adapted), labels)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = build_trainer(model, tokenizer, data, tmp_path / "run", config)
    trainer.train()
    groups = trainer.optimizer.param_groups
    weight = trainer.model.get_input_embeddings().weight
    assert sum(any(p is weight for p in g["params"]) for g in groups) == 1
    moved = {n: float((p.detach() - before[n]).abs().max()) for n, p in trainer.model.named_parameters()}
    assert moved["bert.embeddings.word_embeddings.weight"] == pytest.approx(rate, rel=0.05)
    assert moved["bert.encoder.layer.0.attention.self.query.weight"] == pytest.approx(body_lr, rel=0.05)
    assert torch.equal(before["bert.embeddings.word_embeddings.weight"][0],  # [PAD] never in a batch row's grad
                       trainer.model.get_input_embeddings().weight[0].detach())
