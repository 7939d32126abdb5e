"""Teacher-logit cache: the teacher runs once per (teacher, dataset, tokenizer settings); later
epochs, students and runs read its logits from a memory-mapped `.npy`.

Layout: `<cache_dir>/<key>/<split>.npy` (float32 [n, num_labels]) + `<key>/key.json` (what the
key was made of). The key is sha256(teacher weights + config hash, dataset fingerprint, split
name, tokenizer settings), so a different teacher, different data or a different max_length is
a miss. Entries are written to a temporary file and renamed into place: an interrupted run
leaves no half entry.
"""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.checkpoint import Checkpoint

_WEIGHT_FILES = ("config.json", "model.safetensors", "pytorch_model.bin", "tokenizer.json")
_CHUNK = 1 << 20


def default_cache_dir() -> Path:
    """`$EDGEKD_CACHE/teacher-logits`, else `~/.cache/edgekd/teacher-logits`."""
    root = os.environ.get("EDGEKD_CACHE") or Path.home() / ".cache" / "edgekd"
    return Path(root) / "teacher-logits"


def teacher_hash(teacher_dir: Path) -> str:
    """sha256 over the teacher's config, weight files (incl. sharded safetensors) and tokenizer."""
    teacher_dir = Path(teacher_dir)
    files = [teacher_dir / n for n in _WEIGHT_FILES] + sorted(teacher_dir.glob("model-*.safetensors"))
    digest = hashlib.sha256()
    for path in files:
        if not path.is_file():
            continue
        digest.update(path.name.encode() + b"\0")
        with path.open("rb") as f:
            while chunk := f.read(_CHUNK):
                digest.update(chunk)
    return digest.hexdigest()


def cache_key(teacher_sha: str, data_fingerprint: str, split: str, settings: dict[str, Any]) -> str:
    """The cache key of one split's teacher logits."""
    payload = json.dumps({"teacher": teacher_sha, "data": data_fingerprint, "split": split,
                          "tokenizer": settings}, sort_keys=True)
    return hashlib.sha256(payload.encode()).hexdigest()


class LogitCache:
    """Teacher logits on disk for one teacher checkpoint. On a miss the teacher runs from its `Checkpoint`
    (the model loaded once per checkpoint: distill passes the one it trains against)."""

    def __init__(self, teacher: Checkpoint | Path, cache_dir: Path | None = None) -> None:
        self.checkpoint: Checkpoint | None = Checkpoint.open(teacher)
        self.teacher_dir = self.checkpoint.path
        self.cache_dir = Path(cache_dir) if cache_dir is not None else default_cache_dir()
        self.teacher_sha = teacher_hash(self.teacher_dir)

    def path(self, data_fingerprint: str, split: str, settings: dict[str, Any]) -> Path:
        """Where the `.npy` of this split lives (whether or not it exists yet)."""
        key = cache_key(self.teacher_sha, data_fingerprint, split, settings)
        return self.cache_dir / key[:2] / f"{key}.npy"

    def logits(self, texts: list[str], data_fingerprint: str, split: str,
               max_length: int, batch_size: int = 64) -> tuple[np.ndarray, bool]:
        """(teacher logits [len(texts), num_labels], read-only memory map; True on a cache hit)."""
        settings = {"max_length": int(max_length), "truncation": "right", "n": len(texts)}
        path = self.path(data_fingerprint, split, settings)
        hit = path.is_file()
        if not hit:
            values = self._compute(texts, max_length, batch_size)
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_suffix(f".tmp{os.getpid()}.npy")
            np.save(tmp, values)
            tmp.replace(path)
            meta = {"teacher": str(self.teacher_dir), "teacher_sha256": self.teacher_sha,
                    "dataset_fingerprint": data_fingerprint, "split": split, **settings}
            path.with_suffix(".json").write_text(json.dumps(meta, indent=2) + "\n")
        return np.load(path, mmap_mode="r"), hit

    def _compute(self, texts: list[str], max_length: int, batch_size: int) -> np.ndarray:
        import torch

        from edgekd.train.infer import torch_logits

        if self.checkpoint is None:
            self.checkpoint = Checkpoint.open(self.teacher_dir)
        model = self.checkpoint.model()
        if torch.cuda.is_available():
            model.to("cuda")
        return torch_logits(model, self.checkpoint.tokenizer(), texts, max_length, batch_size)

    def release(self) -> None:
        """Drop this cache's hold on the teacher (the logits stay on disk; the model is freed unless
        its Checkpoint is still used elsewhere, as in distill)."""
        self.checkpoint = None
