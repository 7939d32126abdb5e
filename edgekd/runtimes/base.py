"""The one small interface every runtime backend implements, and the checks every session passes."""

from __future__ import annotations

from typing import Protocol

import numpy as np

from edgekd.bundle import Artifact, Manifest, check_embedded_contract
from edgekd.errors import BundleError


class Session(Protocol):
    """A loaded artifact, ready to run. Created once; `run` must be safe to call from several threads.

    A backend's opener (`BackendSpec.session`) returns it unchecked, reporting what the model itself
    declares; `check_session` compares that with the manifest, for every backend alike."""

    #: input names the artifact takes, in the manifest's order (subset of the tokenizer's inputs)
    input_names: list[str]
    #: numpy integer dtype the artifact's inputs want (np.int64 for ONNX/OpenVINO, np.int32 for Core ML)
    input_dtype: type
    #: a short string: which engine actually runs ("onnxruntime 1.23 CPUExecutionProvider", "mil-reference", ...)
    engine: str
    #: the contract hash the artifact carries in its own metadata (None when it carries none)
    embedded_contract: str | None
    #: every input name the model declares, as it declares them (the check: all come from the tokenizer)
    model_inputs: list[str]

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """inputs: name -> [batch, seq] integer array of `input_dtype`; returns logits [batch, num_labels] float32."""
        ...


def check_session(session: Session, artifact: Artifact, manifest: Manifest, contract: bool = True) -> Session:
    """The checks between an opened model and the bundle's manifest, the same for every backend:
    the contract hash embedded in the artifact (skipped with `contract=False`: the torch reference
    runs the checkpoint, which carries none) and that every input the model declares is one the
    bundle's tokenizer produces. Returns `session`; raises BundleError naming the fix."""
    if contract:
        check_embedded_contract(artifact, session.embedded_contract, manifest)
    missing = [n for n in session.model_inputs if n not in manifest.tokenizer.inputs]
    if missing:
        raise BundleError(f"artifact {artifact.name} takes inputs {missing} that the manifest's tokenizer "
                          f"inputs {manifest.tokenizer.inputs} lack; re-export the bundle")
    return session
