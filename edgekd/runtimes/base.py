"""The one small interface every runtime backend implements."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class Session(Protocol):
    """A loaded artifact, ready to run. Created once; `run` must be safe to call from several threads."""

    #: input names the artifact takes, in the manifest's order (subset of the tokenizer's inputs)
    input_names: list[str]
    #: numpy integer dtype the artifact's inputs want (np.int64 for ONNX/OpenVINO, np.int32 for Core ML)
    input_dtype: type
    #: a short string: which engine actually runs ("onnxruntime 1.23 CPUExecutionProvider", "mil-reference", ...)
    engine: str

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """inputs: name -> [batch, seq] integer array of `input_dtype`; returns logits [batch, num_labels] float32."""
        ...
