"""Core ML session for a `coreml/*.mlpackage` artifact: runs on macOS only, with the compute units
asked for. Elsewhere it fails clearly and points at the numpy reference evaluator. Torch-free.

`CoreMLSession` is the opener `edgekd.backends` registers for backend "coreml"; `edgekd.load` checks
the contract hash it reads from the model's user-defined metadata and the model's inputs."""

from __future__ import annotations

import sys
import threading
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.backends import COREML_COMPUTE_UNITS
from edgekd.bundle import CONTRACT_KEY, Artifact, Manifest
from edgekd.errors import BundleError, ModelError, require


class CoreMLSession:
    """One MLModel; each batch row is padded to the smallest enumerated sequence bucket that fits
    (pad id; the model derives its mask from input_ids) and run at batch 1, as exported."""

    input_dtype = np.int32

    def __init__(self, path: Path, artifact: Artifact, manifest: Manifest, options: dict[str, Any]) -> None:
        if sys.platform != "darwin":
            raise BundleError(f"Core ML artifact {artifact.name} runs only on macOS (this is {sys.platform}); "
                              f"use backend='coreml-reference' to evaluate it here, or backend='onnx'")
        ct = require("coremltools", "coreml", "running a Core ML artifact")
        units = options.get("compute_units") or artifact.extra.get("compute_units", "ALL")
        if units not in COREML_COMPUTE_UNITS:
            raise BundleError(f"compute_units {units!r} is not one of {', '.join(COREML_COMPUTE_UNITS)}")
        self._model = ct.models.MLModel(str(path), compute_units=ct.ComputeUnit[units])
        self.embedded_contract = self._model.user_defined_metadata.get(CONTRACT_KEY)
        self.model_inputs = [i.name for i in self._model.get_spec().description.input]
        self.input_names = [n for n in manifest.tokenizer.inputs if n in self.model_inputs]
        self._buckets = sorted(artifact.extra.get("sequence_buckets", [manifest.tokenizer.max_length]))
        self._pad_id = manifest.tokenizer.pad_id
        self._lock = threading.Lock()
        self.engine = f"coreml {ct.__version__} {units}"

    def _bucket(self, seq: int) -> int:
        for b in self._buckets:
            if b >= seq:
                return b
        raise ModelError(f"sequence length {seq} exceeds the largest Core ML bucket {self._buckets[-1]}; "
                         f"re-export with a larger max_length")

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """inputs: name -> [batch, seq] int32; returns logits [batch, num_labels] float32."""
        ids = np.asarray(inputs["input_ids"], dtype=np.int32)
        mask = np.asarray(inputs.get("attention_mask", ids != self._pad_id))
        rows = []
        for row, row_mask in zip(ids, mask, strict=True):
            n = int(row_mask.sum())
            padded = np.full((1, self._bucket(n)), self._pad_id, dtype=np.int32)
            padded[0, :n] = row[:n]
            with self._lock:
                out = self._model.predict({"input_ids": padded})
            rows.append(np.asarray(out["logits"], dtype=np.float32).reshape(-1))
        return np.stack(rows)

