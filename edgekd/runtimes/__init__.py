"""Torch-free inference over a bundle: one tokenizer, one label map, one backend per module.

Registry: backend name -> module path. Each module defines `open_session(path, artifact, manifest,
options) -> Session` (see `base.py`). Adding a backend is one module and one line here.
"""

from __future__ import annotations

BACKENDS: dict[str, str] = {
    "onnx": "edgekd.runtimes.onnx",
    "openvino": "edgekd.runtimes.openvino",
    "coreml": "edgekd.runtimes.coreml",
    "coreml-reference": "edgekd.runtimes.mil",
    "torch": "edgekd.runtimes.torch",
}
