"""`edgekd.load(bundle)` -> `Classifier`: one tokenizer, one label map, one backend session. Torch-free.

    clf = edgekd.load("bundle/")                 # auto backend and precision
    clf.choice.reason                            # why that artifact (this device's verify report, or the rule)
    clf.predict("text")                          # Prediction(label, score, scores)
    clf.predict(["a", "b"])                      # [Prediction, Prediction]
    clf.logits(texts, batch_size=32)             # np.ndarray [n, num_labels] float32

On load the manifest's contract hash is checked against tokenizer.json and the labels, the used
artifact against its sha256, and then, once for every backend (`open_session`), the contract hash
embedded in the artifact and the inputs its model declares. Which backends exist, what each runs and
needs, and the fixed rule of backend="auto" all come from the registry in `edgekd.backends`.
"""

from __future__ import annotations

import importlib
import importlib.util
import math
import os
import sys
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.backends import REGISTRY, BackendSpec
from edgekd.bundle import TOKENIZER, Artifact, Manifest, check_artifact, open_bundle, read_manifest
from edgekd.errors import BundleError, MissingDependency
from edgekd.runtimes.base import Session, check_session
from edgekd.runtimes.choice import (
    AUTO_PRECISION_ORDER,
    Candidate,
    Choice,
    check_prefer,
    fixed_rule,
    measured,
    this_device_report,
)
from edgekd.runtimes.tokenizer import BundleTokenizer, check_texts

PRECISIONS = ("fp32", "fp16", "int8")


@dataclass(frozen=True)
class Prediction:
    """One text's result: the top label, its probability, and every label's probability."""

    label: str
    score: float
    scores: dict[str, float]


class Classifier:
    """A loaded bundle. Thread-safe: the tokenizer and session are shared read-only."""

    def __init__(self, session: Session, tokenizer: BundleTokenizer, manifest: Manifest, backend: str,
                 precision: str, bundle: Path, choice: Choice | None = None) -> None:
        self.session = session
        self.tokenizer = tokenizer
        self.manifest = manifest
        self.backend = backend
        self.precision = precision
        self.bundle = bundle
        # Which artifact auto picked and why (`choice.reason`); see edgekd/runtimes/choice.py.
        self.choice = choice or Choice(f"{backend}-{precision}", backend, "requested", "given to Classifier()")
        self.labels: list[str] = list(manifest.labels)
        self._names = list(session.input_names)
        self._dtype = session.input_dtype

    @property
    def engine(self) -> str:
        """Which engine actually runs, e.g. "onnxruntime 1.23 CPUExecutionProvider"."""
        return self.session.engine

    def __repr__(self) -> str:
        return (f"Classifier(bundle={str(self.bundle)!r}, backend={self.backend!r}, precision={self.precision!r}, "
                f"labels={self.labels!r})")

    def predict(self, texts: str | Sequence[str], batch_size: int = 32) -> Prediction | list[Prediction]:
        """A `Prediction` for a str, a list of them for a list of str (same order)."""
        if isinstance(texts, str):
            ids = self.tokenizer.encode_one(texts)
            return self._prediction(self._run(self.tokenizer.to_arrays([ids], self._names, self._dtype), 1)[0])
        if isinstance(texts, (bytes, bytearray)) or not isinstance(texts, Iterable):
            check_texts([texts])  # raises: ValueError naming the type
        return [self._prediction(row) for row in self.logits(texts, batch_size=batch_size)]

    def predict_proba(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """Probabilities [n, num_labels] float64, columns in `labels` order."""
        return softmax(self.logits(texts, batch_size=batch_size))

    def logits(self, texts: Sequence[str], batch_size: int = 32) -> np.ndarray:
        """logits: [len(texts), num_labels] float32, rows in the order of `texts`.

        Texts are sorted by token length into batches of `batch_size` (each padded to its own
        longest sequence) and the rows are put back in the input order.
        """
        if isinstance(texts, (str, bytes, bytearray)) or not isinstance(texts, Iterable):
            raise ValueError(f"logits() takes a list of str, got a single {type(texts).__name__}; wrap it in a list")
        if not isinstance(batch_size, int) or batch_size < 1:
            raise ValueError(f"batch_size must be a positive int, got {batch_size!r}")
        texts = list(texts)
        check_texts(texts)
        out = np.zeros((len(texts), len(self.labels)), dtype=np.float32)
        if not texts:
            return out
        ids = self.tokenizer.encode(texts)
        order = sorted(range(len(ids)), key=lambda i: len(ids[i]))
        for start in range(0, len(order), batch_size):
            idx = order[start:start + batch_size]
            arrays = self.tokenizer.to_arrays([ids[i] for i in idx], self._names, self._dtype)
            out[idx] = self._run(arrays, len(idx))
        if not np.isfinite(out).all():
            raise self._non_finite()
        return out

    def _run(self, arrays: dict[str, np.ndarray], n: int) -> np.ndarray:
        logits = np.asarray(self.session.run(arrays), dtype=np.float32)
        if logits.shape != (n, len(self.labels)):
            raise BundleError(f"the {self.backend}-{self.precision} artifact returned logits of shape "
                              f"{logits.shape}, expected ({n}, {len(self.labels)}) for the bundle's labels; "
                              "re-export the bundle")
        return logits

    def _non_finite(self) -> BundleError:
        # e.g. an fp16 overflow: a wrong answer must not pass as a prediction.
        return BundleError(f"the {self.backend}-{self.precision} artifact returned non-finite logits; "
                           "use precision='fp32' or re-export the bundle")

    def _prediction(self, row: np.ndarray) -> Prediction:
        # Softmax of one row in Python floats (float64): for a handful of labels this is several
        # times faster than numpy's per-call overhead, and it is the batch-1 hot path.
        values = row.tolist()
        if not all(map(math.isfinite, values)):
            raise self._non_finite()
        top = max(values)
        exps = [math.exp(v - top) for v in values]
        total = math.fsum(exps)
        scores = {label: e / total for label, e in zip(self.labels, exps, strict=True)}
        best = values.index(top)
        return Prediction(self.labels[best], scores[self.labels[best]], scores)


def softmax(logits: np.ndarray) -> np.ndarray:
    """Row-wise softmax in float64 (stable for large logits)."""
    x = np.asarray(logits, dtype=np.float64)
    x = x - x.max(axis=-1, keepdims=True)
    e = np.exp(x)
    return e / e.sum(axis=-1, keepdims=True)


def load(bundle: str | os.PathLike[str], backend: str = "auto", precision: str = "auto",
         threads: int | None = None, prefer: str = "latency", **options: Any) -> Classifier:
    """Load a bundle (directory or .zip) for prediction.

    backend, precision: "auto" picks from this device's `edgekd verify` report in the bundle when it
    has a fresh one: the artifact this machine can run that measured fastest here and passed its gates
    (`prefer`: "latency", the batch-1 p50, or "throughput", texts/s at batch). Without one, the fixed
    rule: backend Core ML on macOS when coremltools and a coreml artifact are there, else OpenVINO when
    installed and in the bundle, else ONNX Runtime; precision int8 if present, else fp32, else fp16.
    Otherwise backend is one of `edgekd.runtimes.BACKENDS` (the registry in `edgekd.backends`),
    precision "fp32" | "fp16" | "int8".
    The returned classifier's `choice` says which artifact was picked and why.
    threads: intra-op threads for the backend (None: the backend's default). Other options go to the
    backend's session opener (e.g. `spin=False` for ONNX Runtime threads that sleep between calls instead
    of busy-waiting, `checkpoint=` for the torch reference backend).
    """
    if threads is not None:
        if not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be a positive int or None, got {threads!r}")
        options["threads"] = threads
    root = open_bundle(bundle)
    manifest = read_manifest(root)  # checks the contract hash against tokenizer.json and labels
    backend, artifact, choice = choose(root, manifest, backend, precision, prefer, source=bundle)
    opener = _opener(backend)  # MissingDependency naming the extra, before any hashing
    path = root if REGISTRY[backend].artifact is None else check_artifact(root, artifact)
    session = open_session(backend, path, artifact, manifest, {**choice.options, **options}, opener)
    tokenizer = BundleTokenizer(root / TOKENIZER, manifest.tokenizer)
    return Classifier(session, tokenizer, manifest, backend, artifact.precision, root, choice)


def open_session(backend: str, path: Path, artifact: Artifact, manifest: Manifest,
                 options: dict[str, Any] | None = None, opener: Any = None) -> Session:
    """Open `artifact` (at `path`) with a registered backend's opener and check it against the
    manifest (`base.check_session`: embedded contract, model inputs). The one way edgekd opens a
    session: `load` and the post-export check both come here, so no backend can skip the checks."""
    opener = opener or _opener(backend)
    session = opener(Path(path), artifact, manifest, dict(options or {}))
    return check_session(session, artifact, manifest, contract=REGISTRY[backend].artifact is not None)


def choose(root: Path, manifest: Manifest, backend: str = "auto", precision: str = "auto",
           prefer: str = "latency", source: str | os.PathLike[str] | None = None) -> tuple[str, Artifact, Choice]:
    """(backend, artifact, why) that `load` uses, without opening or hashing anything but the report.
    `source`: the bundle path as given (a .zip's reports sit beside it)."""
    check_prefer(prefer)
    if precision != "auto" and precision not in PRECISIONS:
        raise BundleError(f"unknown precision {precision!r}; choose one of: auto, {', '.join(PRECISIONS)}")
    first = _pick_backend(manifest, backend)
    if REGISTRY[first].artifact is None:
        return first, _pick_artifact(manifest, first, precision), Choice(
            "checkpoint", first, "requested", f"the {first} reference backend runs the checkpoint, in fp32")
    if backend != "auto" and precision != "auto":
        artifact = _pick_artifact(manifest, first, precision)
        return first, artifact, Choice(artifact.name, first, "requested", "backend and precision given")
    backends = [first] if backend != "auto" else _auto_backends(manifest)
    candidates = [Candidate(b, a) for b in backends for a in manifest.artifacts
                  if a.backend == REGISTRY[b].artifact and precision in ("auto", a.precision)]
    why = "the only artifact this machine can run that matches" if len(candidates) == 1 else ""
    if len(candidates) > 1:
        picked, why = measured(this_device_report(root, source), manifest, candidates, prefer)
        if picked is not None:
            artifact = next(c.artifact for c in candidates if (c.backend, c.artifact.name) ==
                            (picked.backend, picked.artifact))
            return picked.backend, artifact, picked
    # The rule's first backend that has the precision asked for (precision="int8" runs ONNX Runtime when
    # the OpenVINO artifacts are fp32/fp16 only).
    backend = candidates[0].backend if candidates else first
    artifact = _pick_artifact(manifest, backend, precision)
    return backend, artifact, Choice(artifact.name, backend, "fixed", f"{why}; fixed rule: {fixed_rule()}")


def available_backends(manifest: Manifest) -> list[str]:
    """Backends whose artifact is in the bundle and whose engine is importable here."""
    have = {a.backend for a in manifest.artifacts}
    return [b for b, spec in REGISTRY.items() if spec.artifact in have and _importable(spec.needs)]


def _auto_backends(manifest: Manifest) -> list[str]:
    """The backends auto may pick, in the fixed rule's order: the bundle has their artifact and this
    machine can run them."""
    have = {a.backend for a in manifest.artifacts}
    return [b for b in _auto_order() if REGISTRY[b].artifact in have]


def _auto_order() -> list[str]:
    """The fixed rule's backends this machine can run, preferred first (`BackendSpec.auto_rank`): an
    OS it runs on and its engine installed (a `fallback` backend stays even without its engine, so
    loading it names the extra to install)."""
    ranked = sorted((s for s in REGISTRY.values() if s.auto_rank is not None), key=_rank)
    return [s.name for s in ranked if s.runs_on(sys.platform) and (s.fallback or _importable(s.needs))]


def _rank(spec: BackendSpec) -> int:
    return spec.auto_rank or 0


def _pick_backend(manifest: Manifest, backend: str) -> str:
    have = {a.backend for a in manifest.artifacts}
    if backend != "auto":
        if backend not in REGISTRY:
            raise BundleError(f"unknown backend {backend!r}; choose one of: auto, {', '.join(REGISTRY)}")
        needed = REGISTRY[backend].artifact
        if needed is not None and needed not in have:
            raise BundleError(f"the bundle has no {needed} artifact for backend {backend!r} (it has: "
                              f"{', '.join(sorted(have)) or 'none'}); export it with: edgekd export MODEL "
                              f"--target {needed}")
        return backend
    runnable = _auto_backends(manifest)
    if runnable:
        return runnable[0]
    if have:
        raise BundleError(f"no backend here can run this bundle (it has {', '.join(sorted(have))} artifacts; "
                          f"this machine can run: {', '.join(_auto_order())}); pass backend= explicitly")
    raise BundleError("the bundle has no artifacts; export one with: edgekd export MODEL --target onnx")


def _pick_artifact(manifest: Manifest, backend: str, precision: str) -> Artifact:
    """The artifact for (backend, precision) by the fixed rule; torch gets a stand-in for the checkpoint."""
    kind = REGISTRY[backend].artifact
    if kind is None:  # the torch reference runs the checkpoint itself, in fp32
        if precision not in ("auto", "fp32"):
            raise BundleError(f"the {backend} reference backend runs fp32 only, not {precision!r}")
        return Artifact(backend=backend, precision="fp32", path="")
    if precision == "auto":
        have = {a.precision for a in manifest.artifacts if a.backend == kind}
        precision = next(p for p in AUTO_PRECISION_ORDER if p in have)
    return manifest.artifact(kind, precision)  # BundleError listing what the bundle has


def _opener(backend: str) -> Any:
    """The backend's session opener (`BackendSpec.session`), imported; MissingDependency naming the
    extra when its engine is not installed."""
    spec = REGISTRY[backend]
    if not _importable(spec.needs):
        raise MissingDependency(spec.needs, spec.extra, f"the {backend} backend")
    module_name, attr = spec.session.split(":")
    try:
        return getattr(importlib.import_module(module_name), attr)
    except ModuleNotFoundError as exc:
        if exc.name == module_name:
            raise BundleError(f"backend {backend!r} is not available in this edgekd build "
                              f"({module_name} is missing); use backend='onnx'") from exc
        raise


def _importable(module: str) -> bool:
    return module in sys.modules or importlib.util.find_spec(module) is not None


__all__ = ["Choice", "Classifier", "Prediction", "load", "softmax", "available_backends", "choose"]
