"""`edgekd.checkpoint`: the card, the labels rule, provenance, and the model loaded once."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from conftest import AG_LABELS, read_texts

from edgekd.checkpoint import CARD, PROVENANCE_KEYS, Checkpoint, read_card, update_card, write_card
from edgekd.errors import ModelError


def _config_only(root: Path, id2label: dict | None) -> Path:
    """A directory holding only a config.json (enough for the card and the labels)."""
    root.mkdir(parents=True)
    config = {"model_type": "bert"} if id2label is None else {"model_type": "bert", "id2label": id2label}
    (root / "config.json").write_text(json.dumps(config))
    return root


def test_labels_follow_ids_as_str_or_int_keys(tmp_path: Path) -> None:
    from transformers import AutoConfig

    from edgekd.models import label_order

    as_str = _config_only(tmp_path / "s", {"1": "b", "0": "a", "2": "c"})
    assert Checkpoint(as_str).labels == ["a", "b", "c"]
    # transformers' config holds int keys (config.json stores str): the same rule, the same order.
    loaded = AutoConfig.from_pretrained(str(as_str)).id2label
    assert set(map(type, loaded)) == {int} and label_order(loaded, "x") == Checkpoint(as_str).labels
    assert Checkpoint(as_str).config.id2label == loaded


def test_missing_or_gapped_id2label_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="id2label must map ids 0..n-1"):
        _ = Checkpoint(_config_only(tmp_path / "none", None)).labels
    with pytest.raises(ModelError, match=r"got ids \[0, 2\]"):
        _ = Checkpoint(_config_only(tmp_path / "gap", {"0": "a", "2": "c"})).labels


def test_missing_directory_or_config_names_the_fix(tmp_path: Path) -> None:
    with pytest.raises(ModelError, match="does not exist; pass the output directory of 'edgekd train'"):
        Checkpoint(tmp_path / "nowhere")
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelError, match=r"no config.json\); pass the output directory"):
        Checkpoint.open(tmp_path / "empty")


def test_card_round_trip_and_typed_fields(tmp_path: Path) -> None:
    ckpt_dir = _config_only(tmp_path / "c", {"0": "a", "1": "b"})
    assert Checkpoint(ckpt_dir).card == {} and Checkpoint(ckpt_dir).max_length is None
    record = {"role": "student", "max_length": np.int64(64), "teacher": str(tmp_path / "t"), "labels": ["a", "b"],
              "base_model": "layers=1", "select_metric": "f1_macro", "decisions": {"class_weight": "none"},
              "note": "عربي", "score": np.float32(0.5), "where": tmp_path}
    path = write_card(ckpt_dir, record)
    assert path == ckpt_dir / CARD and "عربي" in path.read_text(encoding="utf-8")
    card = read_card(ckpt_dir)
    assert card["max_length"] == 64 and card["score"] == 0.5 and card["where"] == str(tmp_path)
    update_card(ckpt_dir, diff_attention={"layers": [1]}, vocab_adaptation={"vocab_size": 100})
    ckpt = Checkpoint(ckpt_dir)
    assert ckpt.card == {**card, "diff_attention": {"layers": [1]}, "vocab_adaptation": {"vocab_size": 100}}
    assert (ckpt.role, ckpt.max_length, ckpt.base_model, ckpt.select_metric) == ("student", 64, "layers=1", "f1_macro")
    assert ckpt.teacher == tmp_path / "t" and ckpt.decisions == {"class_weight": "none"}
    assert ckpt.diff_attention == {"layers": [1]} and ckpt.vocab_adaptation == {"vocab_size": 100}
    assert ckpt.vocab_pruning is None and ckpt.dataset_fingerprint == ""
    assert not list(ckpt_dir.glob(".*tmp*"))  # the atomic write left no temporary file
    assert read_card(tmp_path / "absent") == {}


def test_invalid_card_is_a_clear_error(tmp_path: Path) -> None:
    ckpt_dir = _config_only(tmp_path / "c", {"0": "a"})
    (ckpt_dir / CARD).write_text("{not json")
    with pytest.raises(ModelError, match="is not valid JSON .*re-run the training"):
        _ = Checkpoint(ckpt_dir).card


def test_provenance_has_the_fixed_keys(tiny_bert: Path, tmp_path: Path) -> None:
    from edgekd.bundle import checkpoint_weights_sha256

    student = tmp_path / "student"
    shutil.copytree(tiny_bert, student)
    write_card(student, {"role": "student", "teacher": str(tiny_bert), "dataset_fingerprint": "fp"})
    record = Checkpoint(student).provenance()
    assert tuple(record) == PROVENANCE_KEYS
    here = str(student.resolve())
    assert record["model_dir"] == record["student"] == here and record["teacher"] == str(tiny_bert)
    assert record["role"] == "student" and record["dataset_fingerprint"] == "fp"
    assert record["student_weights_sha256"] == checkpoint_weights_sha256(student)
    write_card(student, {"role": "teacher"})  # a teacher is its own reference teacher
    record = Checkpoint(student).provenance()
    assert tuple(record) == PROVENANCE_KEYS and record["teacher"] == here and record["student"] is None
    (student / CARD).unlink()
    record = Checkpoint(student).provenance()
    assert tuple(record) == PROVENANCE_KEYS and record["role"] == "model" and record["model_card"] == {}
    assert record["teacher"] is None and record["student"] is None


def test_model_and_tokenizer_load_once_and_logits_match_torch_logits(tiny_bert: Path) -> None:
    from edgekd.train.infer import load_checkpoint, torch_logits

    ckpt = Checkpoint(tiny_bert)
    assert ckpt.model() is ckpt.model() and ckpt.tokenizer() is ckpt.tokenizer()
    assert Checkpoint.open(ckpt) is ckpt and ckpt.labels == AG_LABELS and ckpt.num_hidden_layers == 2
    assert not ckpt.model().training
    texts, _ = read_texts("ag_news", "test", 8)
    model, tokenizer = load_checkpoint(tiny_bert)
    want = torch_logits(model, tokenizer, texts, 128)
    np.testing.assert_array_equal(ckpt.logits(texts), want)  # max_length from the card (128)
    np.testing.assert_array_equal(ckpt.logits(texts, max_length=16, batch_size=3),
                                  torch_logits(model, tokenizer, texts, 16, batch_size=3))


def test_opening_a_checkpoint_imports_no_torch(tiny_bert: Path) -> None:
    code = ("import sys; from edgekd.checkpoint import Checkpoint; c = Checkpoint(sys.argv[1]); "
            "c.card; c.labels; c.max_length; "
            "assert 'torch' not in sys.modules and 'transformers' not in sys.modules, 'torch imported'")
    subprocess.run([sys.executable, "-c", code, str(tiny_bert)], check=True)


def test_card_max_length_is_a_positive_int_or_the_default() -> None:
    from edgekd.checkpoint import DEFAULT_MAX_LENGTH, card_max_length

    assert card_max_length({"max_length": 64}) == 64
    for bad in ({}, {"max_length": None}, {"max_length": 0}, {"max_length": -5}, {"max_length": "64"},
                {"max_length": True}):
        assert card_max_length(bad) == DEFAULT_MAX_LENGTH and card_max_length(bad, None) is None
    assert card_max_length({}, 256) == 256
