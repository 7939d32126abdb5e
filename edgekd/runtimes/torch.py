"""PyTorch reference backend, for verification only (`edgekd.load(bundle, backend="torch")`).

It runs the PyTorch checkpoint the bundle was exported from, fed by the bundle's own tokenizer
(the same ids every other backend sees), so parity against it measures conversion error only.
torch and transformers are imported inside functions; no other runtime module imports this one.

The checkpoint is `options["checkpoint"]` when given, else the first of the manifest's provenance
keys `model_dir`, `student`, `checkpoint`, `source` (a path, or a dict with a `path`) that exists;
`options["model"]` is that checkpoint already loaded (the export passes the model it exports).

`threads`: torch has no per-model thread setting, only the process-wide intra-op count. A session
given `threads` sets it for the length of each of its own forward passes and puts the previous
value back (under one lock all torch sessions share), so the host process is left as it was
found; torch code running in other threads meanwhile sees that count for that long.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.bundle import Artifact, Manifest
from edgekd.errors import BundleError, ModelError, require
from edgekd.models import label_order

PROVENANCE_KEYS = ("model_dir", "student", "checkpoint", "source")
# Held while a session runs with its own intra-op thread count (a process-wide torch setting).
_THREADS_LOCK = threading.Lock()


class TorchSession:
    """A `Session` over a Hugging Face sequence-classification checkpoint on CPU, fp32."""

    input_dtype = np.int64

    def __init__(self, checkpoint: Path, manifest: Manifest, threads: int | None, model: Any = None) -> None:
        torch = require("torch", "train", "the torch reference backend")
        require("transformers", "train", "the torch reference backend")
        self._threads = int(threads) if threads else None
        if model is None:  # else: that checkpoint, already loaded by the caller (the export), not a second copy
            from edgekd.train.infer import load_model  # takes the build lock; rebuilds hybrid checkpoints

            try:
                model = load_model(checkpoint)
            except (OSError, ValueError) as exc:
                raise ModelError(f"cannot load the reference checkpoint {checkpoint} ({exc}); pass "
                                 "checkpoint=PATH to the model directory the bundle was exported from") from exc
        self._model = model.eval().float()
        self._torch = torch
        names = set(inspect.signature(self._model.forward).parameters)
        self.input_names = [n for n in manifest.tokenizer.inputs if n in names]
        # forward() takes many optional inputs; those it is fed are the tokenizer's. It runs the
        # checkpoint, not an artifact, so it carries no contract (`check_session(contract=False)`).
        self.model_inputs = list(self.input_names)
        self.embedded_contract: str | None = None
        self.engine = f"torch {torch.__version__} CPU fp32 ({checkpoint.name})"
        self._check_labels(manifest)
        # PyTorch modules are not documented as thread-safe for concurrent forward(); serialise.
        self._lock = threading.Lock()

    @property
    def model(self) -> Any:
        """The torch module this session runs (verify hooks its classification head for the embedding map)."""
        return self._model

    def _check_labels(self, manifest: Manifest) -> None:
        labels = label_order(getattr(self._model.config, "id2label", None) or {}, "the reference checkpoint's config")
        if labels != list(manifest.labels):
            raise BundleError(f"the reference checkpoint's labels {labels} differ from the bundle's "
                              f"{manifest.labels}; pass checkpoint= the model the bundle was exported from")

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """inputs: name -> [batch, seq] int64; returns logits [batch, num_labels] float32."""
        torch = self._torch
        # A copy: input arrays may be read-only views, which torch.from_numpy warns about.
        feed = {k: torch.from_numpy(np.array(v, dtype=np.int64)) for k, v in inputs.items()}
        with self._lock, _intra_op_threads(torch, self._threads), torch.inference_mode():
            return self._model(**feed).logits.float().numpy()


@contextlib.contextmanager
def _intra_op_threads(torch: Any, threads: int | None) -> Iterator[None]:
    """torch's intra-op thread count set to `threads` inside the block, restored after it."""
    if threads is None:
        yield
        return
    with _THREADS_LOCK:
        previous = torch.get_num_threads()
        torch.set_num_threads(threads)
        try:
            yield
        finally:
            torch.set_num_threads(previous)


def checkpoint_of(manifest: Manifest, options: dict[str, Any]) -> Path:
    """The reference checkpoint directory: options["checkpoint"], else one named in provenance."""
    if options.get("checkpoint"):
        path = Path(options["checkpoint"])
        if not path.is_dir():
            raise ModelError(f"reference checkpoint {path} is not a directory; pass the model directory")
        return path
    for key in PROVENANCE_KEYS:
        value = manifest.provenance.get(key)
        if isinstance(value, dict):
            value = value.get("path") or value.get("model_dir")
        if isinstance(value, str) and Path(value).is_dir():
            return Path(value)
    raise ModelError("the bundle's provenance names no reference checkpoint that exists here (looked at "
                     f"{', '.join(PROVENANCE_KEYS)}); pass checkpoint=PATH to edgekd.load(..., backend='torch')")


def open_reference(path: Path, artifact: Artifact, manifest: Manifest, options: dict[str, Any]) -> TorchSession:
    """The torch reference session, the opener of backend "torch" (`path`/`artifact` are unused: it
    runs the checkpoint; `options["model"]`: that checkpoint already loaded, used instead of loading it)."""
    return TorchSession(checkpoint_of(manifest, options), manifest, options.get("threads"), options.get("model"))
