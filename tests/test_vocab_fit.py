"""The vocabulary-fit check (`edgekd.train.vocab_fit`): the real MiniLM tokenizer on real English and
Arabic training texts, a hand count of word pieces, and the warning's wording."""

from __future__ import annotations

import csv
import gzip
from pathlib import Path

import pytest

from edgekd.train.vocab_fit import PIECES_PER_WORD_WARN, fit_warning, vocabulary_fit
from tests.conftest import SHARED_DATA


@pytest.fixture(scope="module")
def minilm() -> object:
    from transformers import AutoTokenizer

    from edgekd.models import resolve_model

    return AutoTokenizer.from_pretrained(resolve_model("sentence-transformers/all-MiniLM-L6-v2"))


def _texts(dataset: str, columns: list[str], n: int = 300) -> list[str]:
    with gzip.open(SHARED_DATA / dataset / "train.csv.gz", "rt", encoding="utf-8", newline="") as f:
        rows = [row for _, row in zip(range(n), csv.DictReader(f), strict=False)]
    return [" ".join(row[c] for c in columns) for row in rows]


def test_pieces_per_word_is_a_hand_count(minilm: object) -> None:
    texts = ["the cat sat", "unbelievably slow tokenization"]
    words = [w for t in texts for w in t.split()]
    pieces = sum(len(minilm.tokenize(w)) for w in words)  # word by word, independently of the batch call
    fit = vocabulary_fit(minilm, texts, max_length=8)
    assert fit["pieces_per_word"] == round(pieces / len(words), 3) and fit["texts"] == 2
    assert fit["tokens_per_1000_chars"] == round(1000 * pieces / sum(map(len, texts)), 1)
    long = len(minilm.tokenize(texts[1])) > 6
    assert fit["truncated_share"] == (0.5 if long else 0.0)


def test_english_fits_and_arabic_gets_a_warning_that_names_the_fix(minilm: object) -> None:
    english = vocabulary_fit(minilm, _texts("ag_news", ["text"]), max_length=128)
    arabic = vocabulary_fit(minilm, _texts("arabic_news_ant", ["title", "text"]), max_length=128)
    assert english["pieces_per_word"] < 1.6 < PIECES_PER_WORD_WARN < 4.0 < arabic["pieces_per_word"]
    assert fit_warning(english) is None
    warning = fit_warning(arabic)
    assert warning is not None and "pieces per word" in warning and "edgekd adapt-vocab" in warning
    assert f"covers ~{arabic['chars_covered']} characters" in warning and arabic["chars_covered"] < 250


def test_unknown_characters_are_warned_about() -> None:
    fit = {"pieces_per_word": 1.3, "unk_share": 0.2, "max_length": 128, "chars_covered": 500}
    assert "20.0% of their tokens are [UNK]" in fit_warning(fit)
    assert fit_warning(fit | {"unk_share": 0.0}) is None


def test_the_teacher_cards_warning_becomes_a_verify_note(tmp_path: Path) -> None:
    from edgekd.checkpoint import write_card
    from edgekd.verify.runner import vocabulary_notes

    for name in ("fits", "letters", "older"):
        (tmp_path / name).mkdir()
    write_card(tmp_path / "fits", {"vocabulary_fit": {"pieces_per_word": 1.3, "warning": None}})
    write_card(tmp_path / "letters", {"vocabulary_fit": {"warning": "the tokenizer splits these texts into 4.9 pieces"}})
    write_card(tmp_path / "older", {"role": "teacher"})  # trained before the check existed
    assert vocabulary_notes(tmp_path / "letters") == ["teacher vocabulary: the tokenizer splits these texts into 4.9 pieces"]
    assert vocabulary_notes(tmp_path / "fits") == vocabulary_notes(tmp_path / "older") == vocabulary_notes(None) == []
