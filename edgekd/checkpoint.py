"""`Checkpoint`: the one home of a trained model directory (what train, distill, adapt-vocab and
prune-vocab write; what distill, export, evaluate and verify read).

A checkpoint is a Hugging Face sequence-classification directory (`config.json` with `id2label`,
tokenizer files, safetensors) plus the model card `edgekd-model.json` (`CARD`): what training
decided and recorded (role, max_length, data, teacher, decisions, diff_attention, vocab records).
Every reader goes through `Checkpoint` (or `read_card` where a missing directory is not an error);
every writer through `write_card` / `update_card`. This module imports no torch or transformers:
`model()`, `tokenizer()` and `logits()` import them when called.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from edgekd.errors import ModelError

CARD = "edgekd-model.json"
DEFAULT_MAX_LENGTH = 128  # a checkpoint whose card records no max_length (e.g. a hub model)
# What a bundle manifest records about the checkpoint it was exported from (`Checkpoint.provenance`):
# `model_dir` is the exported checkpoint, `student` / `teacher` the PyTorch references verify and the
# torch runtime look for (a teacher is its own reference teacher), `student_weights_sha256` what verify
# checks the student against.
PROVENANCE_KEYS = ("model_dir", "role", "student", "teacher", "model_card", "student_weights_sha256",
                   "dataset_fingerprint")


def read_card(model_dir: str | Path) -> dict[str, Any]:
    """The card of `model_dir` ({} when the directory or the card is absent)."""
    path = Path(model_dir) / CARD
    if not path.is_file():
        return {}
    try:
        card = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON ({exc}); re-run the training that wrote it") from exc
    if not isinstance(card, dict):
        raise ModelError(f"{path} holds {type(card).__name__}, not a JSON object; re-run the training that wrote it")
    return card


def card_max_length(card: dict[str, Any], default: int | None = DEFAULT_MAX_LENGTH) -> int | None:
    """The max_length a card records (a positive int), else `default`: how long the texts the model
    was trained on were truncated, which export, evaluate, distill and verify keep."""
    value = card.get("max_length")
    return value if isinstance(value, int) and not isinstance(value, bool) and value > 0 else default


def write_card(out: str | Path, record: dict[str, Any]) -> Path:
    """Write `record` as the card of `out` (replacing any), atomically; NumPy values and paths become
    JSON numbers, lists and strings. Returns the card's path."""
    path = Path(out) / CARD
    tmp = path.with_name(f".{CARD}.tmp{os.getpid()}")
    tmp.write_text(json.dumps(record, indent=2, ensure_ascii=False, default=_jsonable) + "\n", encoding="utf-8")
    tmp.replace(path)
    return path


def update_card(out: str | Path, **keys: Any) -> dict[str, Any]:
    """Set `keys` in the card of `out` (created when absent); returns the card written."""
    card = read_card(out)
    card.update(keys)
    write_card(out, card)
    return card


def _jsonable(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "tolist"):  # NumPy scalars and arrays
        return value.tolist()
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


class Checkpoint:
    """A checkpoint directory: its card, labels, provenance, and (loaded once, on first use) its
    PyTorch model and tokenizer."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        if not self.path.is_dir():
            raise ModelError(f"checkpoint directory {self.path} does not exist; pass the output directory of "
                             "'edgekd train' or 'edgekd distill'")
        if not (self.path / "config.json").is_file():
            raise ModelError(f"{self.path} is not a Hugging Face checkpoint (no config.json); pass the output "
                             "directory of 'edgekd train' or 'edgekd distill'")
        self._card: dict[str, Any] | None = None
        self._labels: list[str] | None = None
        self._config: Any = None
        self._model: Any = None
        self._tokenizer: Any = None

    @classmethod
    def open(cls, path: str | Path | Checkpoint) -> Checkpoint:
        """`path` opened as a checkpoint; a `Checkpoint` is returned as is (its loaded model kept)."""
        return path if isinstance(path, Checkpoint) else cls(path)

    def __repr__(self) -> str:
        return f"Checkpoint({str(self.path)!r})"

    # --- the card -------------------------------------------------------------------------------

    @property
    def card(self) -> dict[str, Any]:
        """The card as written ({} for a checkpoint without one); read once."""
        if self._card is None:
            self._card = read_card(self.path)
        return self._card

    @property
    def role(self) -> str | None:
        """"teacher", "student", "base" (adapt-vocab), or None for a checkpoint without a card."""
        return self.card.get("role")

    @property
    def max_length(self) -> int | None:
        """The max_length the checkpoint was trained with (None when the card records none)."""
        return card_max_length(self.card, None)

    @property
    def base_model(self) -> str | None:
        """The model reference training started from (a student: its spec)."""
        return self.card.get("base_model")

    @property
    def teacher(self) -> Path | None:
        """The teacher checkpoint a student was distilled from, as recorded (it may not exist here)."""
        value = self.card.get("teacher")
        return Path(value) if isinstance(value, str) and value else None

    @property
    def select_metric(self) -> str | None:
        """The validation metric the kept epoch was selected on."""
        return self.card.get("select_metric")

    @property
    def decisions(self) -> dict[str, Any] | None:
        """What training decided (`train.imbalance`: class weights, selection metric, schedule)."""
        return self.card.get("decisions")

    @property
    def diff_attention(self) -> dict[str, Any] | None:
        """The differential-attention conversion (`train.diff_attention.card_entry`), None for a plain model."""
        return self.card.get("diff_attention")

    @property
    def vocab_adaptation(self) -> dict[str, Any] | None:
        """What `edgekd adapt-vocab` did to the vocabulary this checkpoint descends from."""
        return self.card.get("vocab_adaptation")

    @property
    def vocab_pruning(self) -> dict[str, Any] | None:
        """What `edgekd prune-vocab` kept and what it cost."""
        return self.card.get("vocab_pruning")

    @property
    def dataset_fingerprint(self) -> str:
        """The fingerprint of the data the checkpoint was trained on ("" when unrecorded)."""
        return str(self.card.get("dataset_fingerprint") or "")

    # --- config and labels ------------------------------------------------------------------------

    @property
    def labels(self) -> list[str]:
        """Label names in logit column order: config.json `id2label` (ids as int or str, 0..n-1)."""
        if self._labels is None:
            from edgekd.models import checkpoint_labels

            self._labels = checkpoint_labels(self.path)
        return list(self._labels)

    @property
    def config(self) -> Any:
        """The transformers config (`AutoConfig`), loaded once."""
        if self._config is None:
            from transformers import AutoConfig

            self._config = AutoConfig.from_pretrained(str(self.path))
        return self._config

    @property
    def num_hidden_layers(self) -> int | None:
        """Encoder depth from the config (None for an architecture that does not name it)."""
        return getattr(self.config, "num_hidden_layers", None)

    # --- the PyTorch model ----------------------------------------------------------------------

    def model(self) -> Any:
        """The sequence classifier in eval mode, loaded once onto the CPU (`train.infer.load_model`:
        differential-attention layers the card records are rebuilt). Callers share this object and may
        move it (the logit cache runs it on CUDA when there is one; the latency probe moves it back)."""
        if self._model is None:
            from edgekd.train.infer import load_model

            self._model = load_model(self.path)
        return self._model

    def tokenizer(self) -> Any:
        """The checkpoint's transformers tokenizer, loaded once."""
        if self._tokenizer is None:
            from transformers import AutoTokenizer

            from edgekd.train.infer import MODEL_BUILD_LOCK

            with MODEL_BUILD_LOCK:
                self._tokenizer = AutoTokenizer.from_pretrained(str(self.path))
        return self._tokenizer

    def logits(self, texts: list[str], max_length: int | None = None, batch_size: int = 32) -> Any:
        """logits: [len(texts), num_labels] float32 (`train.infer.torch_logits`), truncated to
        `max_length` (default: the card's, else DEFAULT_MAX_LENGTH)."""
        from edgekd.train.infer import torch_logits

        length = max_length or self.max_length or DEFAULT_MAX_LENGTH
        return torch_logits(self.model(), self.tokenizer(), texts, length, batch_size)

    # --- provenance -----------------------------------------------------------------------------

    def provenance(self) -> dict[str, Any]:
        """What a bundle manifest records about this checkpoint: exactly `PROVENANCE_KEYS`."""
        from edgekd.bundle import checkpoint_weights_sha256

        here = str(self.path.resolve())
        role = self.role or "model"
        teacher = here if role == "teacher" else (str(self.teacher) if self.teacher else None)
        return {"model_dir": here, "role": role, "student": here if role == "student" else None,
                "teacher": teacher, "model_card": self.card,
                "student_weights_sha256": checkpoint_weights_sha256(self.path),
                "dataset_fingerprint": self.dataset_fingerprint}
