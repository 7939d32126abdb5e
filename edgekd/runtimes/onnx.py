"""ONNX Runtime session for an `onnx/*.onnx` artifact. Torch-free.

`OnnxSession` is the opener `edgekd.backends` registers for backend "onnx"; `edgekd.load` checks the
contract hash it reads from the model's metadata_props and the model's inputs."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekd.bundle import CONTRACT_KEY, Artifact, Manifest
from edgekd.errors import require


def set_spinning(so: Any, spin: bool) -> Any:
    """Whether the pool threads of an `onnxruntime.SessionOptions` busy-wait after each run
    (allow_spinning, ORT's default): lowest latency for back-to-back calls, but it burns the cores
    other work (and a phone's battery) needs. Returns `so`."""
    if not isinstance(spin, bool):
        raise ValueError(f"spin must be True or False, got {spin!r}")
    so.add_session_config_entry("session.intra_op.allow_spinning", "1" if spin else "0")
    so.add_session_config_entry("session.inter_op.allow_spinning", "1" if spin else "0")
    return so


class OnnxSession:
    """One InferenceSession, created once; `InferenceSession.run` is thread-safe."""

    input_dtype = np.int64

    def __init__(self, path: Path, artifact: Artifact, manifest: Manifest, options: dict[str, Any]) -> None:
        ort = require("onnxruntime", "onnx", "running an ONNX artifact")
        so = ort.SessionOptions()
        # threads: 0 lets ORT use one thread per physical core; callers pin it for latency runs.
        so.intra_op_num_threads = int(options.get("threads", 0))
        so.inter_op_num_threads = 1
        if options.get("spin") is not None:
            set_spinning(so, options["spin"])
        so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        so.log_severity_level = 3
        providers = options.get("providers") or ["CPUExecutionProvider"]
        self._session = ort.InferenceSession(str(path), sess_options=so, providers=providers)
        self.embedded_contract = self._session.get_modelmeta().custom_metadata_map.get(CONTRACT_KEY)
        self.model_inputs = [i.name for i in self._session.get_inputs()]
        self.input_names = [n for n in manifest.tokenizer.inputs if n in self.model_inputs]
        self._output = self._session.get_outputs()[0].name
        self.engine = f"onnxruntime {ort.__version__} {self._session.get_providers()[0]}"

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """inputs: name -> [batch, seq] int64; returns logits [batch, num_labels] float32."""
        feed = {n: np.asarray(inputs[n], dtype=np.int64) for n in self.input_names}
        return np.asarray(self._session.run([self._output], feed)[0], dtype=np.float32)

