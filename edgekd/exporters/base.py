"""The thin base every exporter derives from: `export()` validates, calls the backend's
`_export()`, records hashes, then ALWAYS runs the post-export check. A backend cannot skip it."""

from __future__ import annotations

import contextlib
import importlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.bundle import Artifact, Manifest, TokenizerSettings, finalize_artifact
from edgekd.calibration import CalibrationSet
from edgekd.errors import EdgekdError, ExportError, require
from edgekd.exporters import check


@dataclass
class ExportJob:
    """Everything a backend needs, loaded once by the bundle writer and shared by all targets."""

    model_dir: Path
    model: Any  # torch sequence-classification model, eval mode, CPU
    tokenizer: Any  # the checkpoint's fast HF tokenizer
    labels: list[str]
    settings: TokenizerSettings
    contract: str
    bundle: Path  # staging directory; artifacts go under it
    workdir: Path  # scratch directory outside the bundle
    check_sets: dict[str, list[str]]  # length class -> held-out texts
    reference: dict[str, np.ndarray]  # length class -> PyTorch logits [n, num_labels]
    int8: bool = False
    max_accuracy_drop: float = 0.005
    calibration: CalibrationSet | None = None
    validation: tuple[list[str], list[int]] | None = None  # texts, label ids (accuracy control)
    agreement_texts: list[str] = field(default_factory=list)  # extra unlabelled texts (int8 agreement)
    options: dict[str, Any] = field(default_factory=dict)  # coreml_precision, compute_units, ...
    shared: dict[str, Any] = field(default_factory=dict)  # cross-target cache (e.g. the raw ONNX file)
    records: dict[str, Any] = field(default_factory=dict)  # per-target notes for the manifest
    log: Callable[[str], None] = print  # progress lines

    @property
    def max_length(self) -> int:
        return self.settings.max_length

    def manifest(self) -> Manifest:
        """A manifest holding what the runtime sessions need (labels, tokenizer, contract)."""
        return Manifest(labels=self.labels, tokenizer=self.settings, contract=self.contract)

    def int8_eval_texts(self) -> tuple[list[str], list[int]]:
        """Texts accuracy control runs (validation first, then the extra agreement texts) and the
        validation labels (for the first rows)."""
        texts, labels = self.validation
        return list(texts) + list(self.agreement_texts), list(labels)

    def encode(self, texts: list[str], dtype: type = np.int64) -> dict[str, np.ndarray]:
        """Model inputs for texts, padded to their own longest sequence: name -> [batch, seq]."""
        enc = self.tokenizer(list(texts), truncation=True, max_length=self.max_length, padding=True,
                             return_tensors="np")
        return {name: np.asarray(enc[name]).astype(dtype) for name in self.settings.inputs}


class Exporter:
    """One export target. Subclasses set `name`, `extra`, `modules` and implement `_export`."""

    name: str = ""
    extra: str = ""  # pip extra that installs this backend
    modules: tuple[str, ...] = ()  # optional modules this target imports

    def check_dependencies(self) -> None:
        """Raise MissingDependency naming the extra when a module this target needs is absent."""
        for module in self.modules:
            require(module, self.extra, f"--target {self.name}")

    def export(self, job: ExportJob) -> list[Artifact]:
        """Write this target's artifacts into `job.bundle`, hash them and check each one.

        Raises ExportError when the backend fails or an artifact fails its gate."""
        self.check_dependencies()
        t0 = time.perf_counter()
        with _as_export_error(f"--target {self.name} failed"):
            artifacts = self._export(job)
        for artifact in artifacts:
            finalize_artifact(job.bundle, artifact)
            artifact.extra.setdefault("export_seconds", round(time.perf_counter() - t0, 2))
            with _as_export_error(f"the post-export check of {artifact.name} could not run"):
                job.records.setdefault("parity", {})[artifact.name] = self.check(job, artifact)
        return artifacts

    def _export(self, job: ExportJob) -> list[Artifact]:
        raise NotImplementedError

    def check_backend(self) -> str | None:
        """Runtime backend that runs this target's artifacts here, or None when none can."""
        return self.name

    def skip_reason(self) -> str:
        return f"no runtime for {self.name} on this machine"

    def check(self, job: ExportJob, artifact: Artifact) -> dict[str, Any]:
        """Run the artifact on every check set, compare with PyTorch and enforce the gate."""
        backend = self.check_backend()
        if backend is None:
            return {"status": "skipped", "reason": self.skip_reason()}
        runtime = importlib.import_module(_runtime_module(backend))
        session = runtime.open_session(job.bundle / artifact.path, artifact, job.manifest(), {})
        by_length = {}
        for length_class, texts in job.check_sets.items():
            if not texts:  # e.g. no short texts when max_length is tiny; the other classes still count
                continue
            logits = check.run_session(session, job.tokenizer, texts, job.max_length)
            by_length[length_class] = check.compare(job.reference[length_class], logits)
        total = _pool(by_length)
        failed = check.gate_failures(artifact.precision, total)
        result = {"status": "failed" if failed else "passed", "engine": session.engine,
                  "gate": check.gates(artifact.precision), **total, "by_length": by_length}
        if failed:
            raise ExportError(f"post-export check failed for {artifact.name} ({artifact.path}) on {total['n']} "
                              f"held-out texts: {'; '.join(failed)}; the bundle was not written "
                              f"(drop this target or precision, or re-export the model)")
        return result


@contextlib.contextmanager
def _as_export_error(what: str) -> Iterator[None]:
    """Turn a backend library's exception into one ExportError line (edgekd errors pass through)."""
    try:
        yield
    except EdgekdError:
        raise
    except Exception as exc:  # third-party exporters raise anything; the CLI needs one typed error
        lines = str(exc).strip().splitlines() or [""]
        raise ExportError(f"{what}: {type(exc).__name__}: {lines[0]}; rerun with --debug for the traceback") from exc


def _runtime_module(backend: str) -> str:
    from edgekd.runtimes import BACKENDS

    return BACKENDS[backend]


def _pool(by_length: dict[str, dict[str, Any]]) -> dict[str, Any]:
    n = sum(m["n"] for m in by_length.values())
    flips = sum(m["flips"] for m in by_length.values())
    return {
        "n": n,
        "max_abs_logit": max(m["max_abs_logit"] for m in by_length.values()),
        "max_abs_prob": max(m["max_abs_prob"] for m in by_length.values()),
        "agreement": (n - flips) / n if n else 1.0,
        "flips": flips,
    }
