"""MIL reference evaluator: run a Core ML ML Program (`.mlpackage`) with numpy, without Core ML.

Linux CI can check a Core ML artifact before a Mac ever sees it: the program is read from the model
spec and its weights (coremltools' protobuf classes, no torch), then each MIL operation is evaluated
with the semantics of the MIL op reference (one small function per op in `ops.OPS`), in the dtype the
program declares: fp16 programs round every op's output to fp16, so an fp16 overflow (e.g. an
attention-mask fill of -1e9) shows up as inf/NaN logits or flipped labels, as on device. See
`evaluate.py` for the precision rule. It is the backend `coreml-reference` (engine "mil-reference"),
used only when asked for, never as a silent fallback for Core ML.

    program = load_program("bundle/coreml/model.mlpackage")
    outputs = evaluate(program, {"input_ids": ids, "attention_mask": mask})   # name -> array
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from edgekd.blas import blas_threads
from edgekd.bundle import CONTRACT_KEY, Artifact, Manifest
from edgekd.errors import ModelError
from edgekd.runtimes.base import check_session
from edgekd.runtimes.mil.evaluate import allowed_shapes, evaluate
from edgekd.runtimes.mil.program import Program, load_program

__all__ = ["MilSession", "Program", "evaluate", "load_program", "open_artifact", "open_session"]

ENGINE = "mil-reference"


class MilSession:
    """A loaded ML Program behind the runtime `Session` interface. `run` is thread-safe (pure numpy).

    Batches are fitted to the shapes the model allows: with fixed or enumerated shapes (sequence
    buckets) each batch is padded up to the smallest allowed sequence length (pad id, mask 0) and, if
    its batch size is not allowed, run in chunks of an allowed batch size."""

    input_dtype = np.int32

    def __init__(self, program: Program, input_names: list[str], pad_id: int = 0, threads: int | None = None) -> None:
        self.program = program
        self.input_names = input_names
        self.model_inputs = [i.name for i in program.inputs]
        self.embedded_contract = program.metadata.get(CONTRACT_KEY)
        self.pad_id = pad_id
        self.threads = threads
        self.engine = ENGINE
        names = [o.name for o in program.outputs]
        self._output = "logits" if "logits" in names else names[0]

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        """inputs: name -> [batch, seq] integer array; returns logits [batch, num_labels] float32."""
        feed = {n: np.asarray(inputs[n], dtype=np.int32) for n in self.input_names}
        batch, seq = feed[self.input_names[0]].shape
        shapes = allowed_shapes(self.program, self.input_names[0])
        if shapes is None or (batch, seq) in shapes:
            return self._run(feed)
        fits = [s for s in shapes if len(s) == 2 and s[1] >= seq]
        if not fits:
            raise ModelError(f"sequence length {seq} is longer than the Core ML model allows ({shapes}); "
                             f"lower max_length or re-export with a longer sequence bucket")
        same_batch = [s for s in fits if s[0] == batch]
        chunk = batch if same_batch else max(s[0] for s in fits)
        length = min(s[1] for s in fits if s[0] == chunk)
        rows = [self._run(self._pad(feed, i, chunk, length)) for i in range(0, batch, chunk)]
        return np.concatenate(rows)[:batch]

    def _pad(self, feed: dict[str, np.ndarray], start: int, rows: int, length: int) -> dict[str, np.ndarray]:
        out = {}
        for name, arr in feed.items():
            part = arr[start:start + rows]
            fill = self.pad_id if name == "input_ids" else 0
            padded = np.full((rows, length), fill, dtype=np.int32)
            padded[: part.shape[0], : part.shape[1]] = part
            out[name] = padded
        return out

    def _run(self, feed: dict[str, np.ndarray]) -> np.ndarray:
        with blas_threads(self.threads):
            return np.asarray(evaluate(self.program, feed)[self._output], dtype=np.float32)


def open_artifact(path: Path, artifact: Artifact, manifest: Manifest, options: dict[str, Any]) -> MilSession:
    """Open a Core ML artifact of a bundle with the MIL reference evaluator, unchecked: the opener of
    backend `coreml-reference` (`edgekd.load` checks the contract and inputs it reports). Options:
    `threads` (BLAS threads while evaluating; default: numpy's pool), `function` (ML Program function)."""
    program = load_program(Path(path), function=options.get("function"))
    takes = [i.name for i in program.inputs]
    input_names = [n for n in manifest.tokenizer.inputs if n in takes]
    return MilSession(program, input_names, pad_id=manifest.tokenizer.pad_id, threads=options.get("threads"))


def open_session(path: Path, artifact: Artifact, manifest: Manifest, options: dict[str, Any]) -> MilSession:
    """`open_artifact`, then the checks `edgekd.load` makes: the contract hash the artifact carries in
    its Core ML user-defined metadata, and its inputs (for callers that open an artifact directly)."""
    session = open_artifact(path, artifact, manifest, options or {})
    check_session(session, artifact, manifest)
    return session
