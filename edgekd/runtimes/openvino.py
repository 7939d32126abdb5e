"""OpenVINO session for an `openvino/*.xml` artifact (CPU plugin by default). Torch-free."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.bundle import Artifact, Manifest, check_embedded_contract
from edgekd.errors import BundleError, require

RT_INFO_PATH = ["edgekd", "contract"]


class OpenVinoSession:
    """One compiled model; one infer request per thread (infer requests are not thread-safe)."""

    input_dtype = np.int64

    def __init__(self, path: Path, artifact: Artifact, manifest: Manifest, options: dict[str, Any]) -> None:
        ov = require("openvino", "openvino", "running an OpenVINO artifact")
        core = ov.Core()
        model = core.read_model(str(path))
        found = model.get_rt_info(RT_INFO_PATH).astype(str) if model.has_rt_info(RT_INFO_PATH) else None
        check_embedded_contract(artifact, found, manifest)
        device = options.get("device", "CPU")
        config: dict[str, Any] = {"PERFORMANCE_HINT": options.get("performance_hint", "LATENCY"),
                                  # f32 unless asked: CPUs with bf16 would otherwise silently use it
                                  "INFERENCE_PRECISION_HINT": options.get("inference_precision", "f32")}
        if options.get("threads"):
            config["INFERENCE_NUM_THREADS"] = int(options["threads"])
        try:
            self._compiled = core.compile_model(model, device, config)
        except RuntimeError as exc:
            raise BundleError(f"OpenVINO could not compile {path} for device {device!r} ({exc}); "
                              f"use device='CPU' or another backend") from exc
        takes = {name for port in self._compiled.inputs for name in port.get_names()}
        self.input_names = [n for n in manifest.tokenizer.inputs if n in takes]
        self._output = self._compiled.output(0)
        self._local = threading.local()
        self.engine = f"openvino {ov.get_version().split('-')[0]} {device}"

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """inputs: name -> [batch, seq] int64; returns logits [batch, num_labels] float32."""
        request = getattr(self._local, "request", None)
        if request is None:
            request = self._local.request = self._compiled.create_infer_request()
        feed = {n: np.asarray(inputs[n], dtype=np.int64) for n in self.input_names}
        return np.array(request.infer(feed)[self._output], dtype=np.float32)


def open_session(path: Path, artifact: Artifact, manifest: Manifest, options: dict[str, Any]) -> OpenVinoSession:
    """Compile an OpenVINO IR and check the contract hash in its rt_info."""
    return OpenVinoSession(Path(path), artifact, manifest, options or {})
