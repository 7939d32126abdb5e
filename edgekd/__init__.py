"""edgekd: labelled text to small, fast, verified text classifiers on edge devices.

    import edgekd
    clf = edgekd.load("bundle/")
    clf.predict("some text")   # Prediction(label='Sports', score=0.98, scores={...})

This module never imports torch or transformers.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

__version__ = "0.1.0"
__all__ = ["load", "Classifier", "Prediction", "__version__"]

if TYPE_CHECKING:
    from edgekd.runtimes.classifier import Classifier, Prediction


def load(bundle: str, backend: str = "auto", precision: str = "auto", **options: object) -> Classifier:
    """Load a bundle (directory or .zip) for prediction with one backend and precision.

    backend: "auto" (Core ML on macOS, else OpenVINO if installed, else ONNX Runtime), "onnx",
    "openvino", "coreml", "coreml-reference" (numpy evaluator of the ML Program) or "torch"
    (verification only). precision: "auto" (int8 if present), "fp32", "fp16" or "int8".
    """
    from edgekd.runtimes.classifier import load as _load

    return _load(bundle, backend=backend, precision=precision, **options)


def __getattr__(name: str) -> object:
    if name in ("Classifier", "Prediction"):
        from edgekd.runtimes import classifier

        return getattr(classifier, name)
    raise AttributeError(f"module 'edgekd' has no attribute {name!r}")
