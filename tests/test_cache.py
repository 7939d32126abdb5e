"""Teacher-logit cache: values equal the reference inference, a second run hits, and a change of
data, teacher weights or tokenizer settings misses."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
from conftest import read_texts

from edgekd.train.cache import LogitCache, teacher_hash


def test_cache_hit_and_invalidation(tiny_bert: Path, tmp_path: Path) -> None:
    import torch
    from transformers import AutoModelForSequenceClassification

    from edgekd.train.infer import load_checkpoint, torch_logits

    texts, _ = read_texts("ag_news", "test", 24)
    cache = LogitCache(tiny_bert, tmp_path / "cache")
    first, hit = cache.logits(texts, "fp-a", "train", max_length=32)
    assert hit is False and first.shape == (24, 4) and isinstance(first, np.memmap)
    model, tokenizer = load_checkpoint(tiny_bert)
    np.testing.assert_array_equal(first, torch_logits(model, tokenizer, texts, 32))

    again, hit = LogitCache(tiny_bert, tmp_path / "cache").logits(texts, "fp-a", "train", max_length=32)
    assert hit is True
    np.testing.assert_array_equal(again, first)

    assert cache.logits(texts, "fp-b", "train", max_length=32)[1] is False  # other data
    assert cache.logits(texts, "fp-a", "test", max_length=32)[1] is False  # other split
    assert cache.logits(texts, "fp-a", "train", max_length=16)[1] is False  # other tokenizer settings

    changed = tmp_path / "teacher2"
    shutil.copytree(tiny_bert, changed)
    teacher = AutoModelForSequenceClassification.from_pretrained(changed)
    with torch.no_grad():
        teacher.classifier.bias.add_(1.0)
    teacher.save_pretrained(changed)
    assert teacher_hash(changed) != teacher_hash(tiny_bert)
    other, hit = LogitCache(changed, tmp_path / "cache").logits(texts, "fp-a", "train", max_length=32)
    assert hit is False
    np.testing.assert_allclose(other, np.asarray(first) + 1.0, atol=1e-5)
    # Every entry is complete: no temporary files left behind.
    assert not list((tmp_path / "cache").rglob("*.tmp*"))
