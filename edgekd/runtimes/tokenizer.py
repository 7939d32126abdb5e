"""The one tokenizer of a bundle, for every backend: `tokenizer.json` through the `tokenizers` library.

Text becomes ids exactly as the Hugging Face tokenizer does with `truncation=True,
max_length=L` (the manifest's max_length and truncation side); padding is left to `to_arrays`,
which pads each batch only to its own longest sequence. Torch-free.

Defined results for odd input (tested in tests/test_tokenizer.py):
- "" and whitespace-only text encode to just the special tokens (for BERT: [CLS] [SEP]), so they get
  a prediction like any other text;
- very long text is truncated to max_length tokens;
- anything that is not a `str` (bytes included: decode them first) raises ValueError naming the type;
- a `str` with lone surrogates (not valid Unicode, cannot be UTF-8) raises ValueError naming the
  text's index and the position; clean it with `text.encode("utf-8", "replace").decode("utf-8")`.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.bundle import TokenizerSettings
from edgekd.errors import BundleError


class BundleTokenizer:
    """Encodes texts with a bundle's `tokenizer.json` and builds per-batch padded numpy inputs.

    Safe to share between threads: `tokenizers` encoding is thread-safe and this object holds no
    mutable state after construction.
    """

    def __init__(self, path: str | Path, settings: TokenizerSettings) -> None:
        from tokenizers import Tokenizer

        if settings.truncation_side not in ("right", "left"):
            raise BundleError(f"truncation_side {settings.truncation_side!r} in the manifest is not 'right' or "
                              "'left'; re-export the bundle")
        try:
            tok = Tokenizer.from_file(str(path))
        except Exception as exc:  # tokenizers raises a bare Exception on a malformed file
            raise BundleError(f"cannot read tokenizer file {path} ({exc}); re-export the bundle") from exc
        # The file may carry fixed padding (e.g. to 128) from the training tokenizer: the runtime pads
        # per batch instead, so disable it, and truncate at the bundle's max_length.
        tok.no_padding()
        tok.enable_truncation(max_length=settings.max_length, direction=settings.truncation_side)
        self._tok = tok
        self.settings = settings
        self.max_length = settings.max_length
        self.pad_id = settings.pad_id
        self._rows: dict[Any, tuple[np.ndarray, np.ndarray]] = {}

    def encode(self, texts: Sequence[str]) -> list[list[int]]:
        """Token ids per text (special tokens added, truncated to max_length, not padded)."""
        return [e.ids for e in self._encode_batch(texts)]

    def encode_one(self, text: str) -> list[int]:
        """Token ids of one text (the batch-1 fast path)."""
        try:
            return self._tok.encode(text).ids
        except TypeError:
            _raise_bad_text([text])
            raise

    def _encode_batch(self, texts: Sequence[str]) -> list[Any]:
        try:
            return self._tok.encode_batch(list(texts))
        except TypeError:
            _raise_bad_text(texts)
            raise

    def to_arrays(self, ids: Sequence[Sequence[int]], names: Sequence[str], dtype: Any) -> dict[str, np.ndarray]:
        """Model inputs for one batch: name -> [batch, seq] array of `dtype`, seq = the batch's own
        longest sequence; input_ids padded with pad_id, attention_mask 1/0, token_type_ids zeros."""
        n, seq = len(ids), max((len(r) for r in ids), default=0)
        if n == 1 and seq <= self.max_length:
            # Batch of one (the latency path): no padding; mask and type ids are read-only views of
            # constant rows, so nothing but the ids is allocated.
            input_ids = np.array(ids, dtype=dtype)
            mask, zeros = self._constant_rows(dtype)
            arrays = {"input_ids": input_ids, "attention_mask": mask[:, :seq], "token_type_ids": zeros[:, :seq]}
        else:
            input_ids = np.full((n, seq), self.pad_id, dtype=dtype)
            mask = np.zeros((n, seq), dtype=dtype)
            for i, row in enumerate(ids):  # one C-level copy per row, no per-token Python
                input_ids[i, : len(row)] = row
                mask[i, : len(row)] = 1
            arrays = {"input_ids": input_ids, "attention_mask": mask, "token_type_ids": np.zeros_like(input_ids)}
        try:
            return {name: arrays[name] for name in names}
        except KeyError as exc:
            raise BundleError(f"the model takes an input {exc.args[0]!r} the runtime cannot build (it builds "
                              "input_ids, attention_mask, token_type_ids); re-export the bundle") from None

    def _constant_rows(self, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
        """([1, max_length] ones, [1, max_length] zeros) of `dtype`, read-only, built once per dtype."""
        rows = self._rows.get(dtype)
        if rows is None:
            ones, zeros = np.ones((1, self.max_length), dtype=dtype), np.zeros((1, self.max_length), dtype=dtype)
            ones.flags.writeable = zeros.flags.writeable = False
            rows = self._rows.setdefault(dtype, (ones, zeros))  # a benign race: both values are equal
        return rows


def check_texts(texts: Sequence[object]) -> None:
    """Raise ValueError naming the index and type of the first text that is not a `str`."""
    for i, t in enumerate(texts):
        if not isinstance(t, str):
            hint = " (decode bytes first: data.decode('utf-8'))" if isinstance(t, (bytes, bytearray)) else ""
            raise ValueError(f"text {i} is a {type(t).__name__}, not a str{hint}")


def _raise_bad_text(texts: Sequence[object]) -> None:
    """Find why `tokenizers` refused a batch and raise a ValueError that names the text."""
    check_texts(texts)
    for i, t in enumerate(texts):
        try:
            t.encode("utf-8")  # type: ignore[union-attr]
        except UnicodeEncodeError as exc:
            raise ValueError(f"text {i} is not valid Unicode (a lone surrogate {t[exc.start]!r} at position "
                             f"{exc.start}); clean it with text.encode('utf-8', 'replace').decode('utf-8')") from None
