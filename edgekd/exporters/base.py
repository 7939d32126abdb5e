"""The thin base every exporter derives from: `export()` validates, calls the backend's
`_export()` (float artifacts) and, with --int8, `_export_int8()`, records hashes, then ALWAYS runs
the post-export check. A backend cannot skip it, nor the drop rule:

- an fp32 artifact that fails its check fails the export (a converter bug);
- an fp16 artifact that fails its check is dropped, with its numbers and the reason recorded;
- int8 is decided once, by accuracy control on the validation split (`decide_int8`); a rejected
  setting, or an int8 conversion that raises, drops int8 for that backend with the reason recorded.
Dropping never throws away the artifacts that passed."""

from __future__ import annotations

import contextlib
import shutil
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.backends import spec_of
from edgekd.bundle import Artifact, Manifest, TokenizerSettings, artifact_files, finalize_artifact
from edgekd.calibration import CalibrationSet
from edgekd.calibration.accuracy import Int8Candidate, Int8Decision, rejection_reason, select_int8
from edgekd.errors import EdgekdError, ExportError, require
from edgekd.exporters import check
from edgekd.verify.parity import GateSet, wilson_interval


@dataclass
class ExportResults:
    """What the exporters found, for the manifest: the post-export check of every artifact and the
    int8 accuracy-control decision of every target that tried int8."""

    parity: dict[str, dict[str, Any]] = field(default_factory=dict)  # artifact name -> check result
    accuracy_control: dict[str, dict[str, Any]] = field(default_factory=dict)  # target -> decision record


@dataclass
class ExportJob:
    """Everything a backend needs, loaded once by the bundle writer and shared by all targets."""

    model_dir: Path
    model: Any  # torch sequence-classification model, eval mode, CPU
    tokenizer: Any  # the checkpoint's fast HF tokenizer: choosing texts by length only, never model inputs
    # the staged bundle's tokenizer.json (runtimes.tokenizer.BundleTokenizer): every id any model is fed here
    bundle_tokenizer: Any
    labels: list[str]
    settings: TokenizerSettings
    contract: str
    bundle: Path  # staging directory; artifacts go under it
    workdir: Path  # scratch directory outside the bundle
    check_sets: dict[str, list[str]]  # length class -> held-out texts
    # length class -> PyTorch logits [n, num_labels]: the torch backend's session fed by bundle_tokenizer
    reference: dict[str, np.ndarray]
    int8: bool = False
    gates: GateSet = field(default_factory=GateSet)  # THE gate table in force (check and accuracy control)
    calibration: CalibrationSet | None = None
    validation: tuple[list[str], list[int]] | None = None  # texts, label ids (accuracy control)
    agreement_texts: list[str] = field(default_factory=list)  # extra unlabelled texts (int8 agreement)
    # PyTorch logits on int8_eval_texts() [n, num_labels]: the reference every int8 decision uses
    int8_reference: np.ndarray | None = None
    dropped: list[dict[str, Any]] = field(default_factory=list)  # artifacts left out, with why
    options: dict[str, Any] = field(default_factory=dict)  # coreml_precision, compute_units, ...
    shared: dict[str, Any] = field(default_factory=dict)  # cross-target cache (e.g. the raw ONNX file)
    results: ExportResults = field(default_factory=ExportResults)  # checks and decisions, for the manifest
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

    def decide_int8(self, backend: str, candidates: list[Int8Candidate], stage: str | None = None) -> Int8Decision:
        """Accuracy control for one backend against the PyTorch reference, gated by the int8 rows
        of the gate table; the decision (with every candidate's numbers) goes into the manifest. A later
        `stage` of the same backend's int8 (ONNX's 4-bit embedding rows) is recorded inside its record."""
        _, labels = self.int8_eval_texts()
        decision = select_int8(self.int8_reference, labels, candidates, self.gates, log=self.log)
        if stage is None:
            self.results.accuracy_control[backend] = decision.record()
        else:
            self.results.accuracy_control[backend][stage] = decision.record()
        return decision

    def drop(self, name: str, stage: str, reason: str, numbers: Any = None) -> None:
        """Record an artifact left out of the bundle (the manifest's `dropped`) and say so in one line."""
        backend, _, precision = name.partition("-")
        self.dropped.append({"artifact": name, "backend": backend, "precision": precision, "stage": stage,
                             "reason": reason, "numbers": numbers})
        self.log(f"dropped {name} ({stage}): {reason}")

    def encode(self, texts: list[str], dtype: type = np.int64) -> dict[str, np.ndarray]:
        """Model inputs for texts (calibration, int8 candidates, tracing) from the bundle's
        tokenizer.json, as the runtime builds them (`BundleTokenizer.to_arrays`: padded to the batch's
        own longest sequence): name -> [batch, seq], writable arrays of `dtype`."""
        tok = self.bundle_tokenizer
        arrays = tok.to_arrays(tok.encode(list(texts)), self.settings.inputs, dtype)
        # to_arrays may return read-only views (its batch-of-one path); quantizers and torch want their own
        return {name: np.array(a, dtype=dtype) for name, a in arrays.items()}

    def token_lengths(self, texts: list[str]) -> list[int]:
        """Token count of each text as the runtime sees it (tokenizer.json, truncated to max_length)."""
        return [len(ids) for ids in self.bundle_tokenizer.encode(list(texts))]


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
        """Write this target's artifacts into `job.bundle`, hash and check each one; returns the
        artifacts kept. Raises ExportError when the float conversion fails or an fp32 artifact fails
        its gate; a failed fp16 or int8 artifact is dropped and recorded in `job.dropped`."""
        self.check_dependencies()
        t0 = time.perf_counter()
        with _as_export_error(f"--target {self.name} failed"):
            artifacts = self._export(job)
        if job.int8:
            artifacts += self._int8_or_drop(job)
        kept = []
        for artifact in artifacts:
            finalize_artifact(job.bundle, artifact)
            artifact.extra.setdefault("export_seconds", round(time.perf_counter() - t0, 2))
            with _as_export_error(f"the post-export check of {artifact.name} could not run"):
                result = self.check(job, artifact)
            job.results.parity[artifact.name] = result
            if result["status"] != "failed":
                kept.append(artifact)
                continue
            reason = f"failed on {result['n']} held-out texts: {'; '.join(result['failed'])}"
            if artifact.precision == "fp32":
                raise ExportError(f"post-export check failed for {artifact.name} ({artifact.path}) {reason}; the bundle "
                                  f"was not written (an fp32 conversion must reproduce PyTorch: report it, or drop "
                                  f"--target {self.name})")
            job.drop(artifact.name, "post-export check", reason, {k: result[k] for k in _DROP_KEYS if k in result})
            _remove(job.bundle, artifact)
        return kept

    def _int8_or_drop(self, job: ExportJob) -> list[Artifact]:
        """The backend's int8 artifact when accuracy control kept one; else [] with the drop recorded.
        An int8 conversion that raises drops int8 for this backend: the float artifacts stay."""
        name = f"{self.name}-int8"
        try:
            artifact = self._export_int8(job)
        except EdgekdError:
            raise
        except Exception as exc:  # third-party quantizers raise anything; int8 is optional
            first = (str(exc).strip().splitlines() or [""])[0]
            job.drop(name, "int8 conversion", f"{type(exc).__name__}: {first} (rerun with --debug for details)")
            return []
        if artifact is not None:
            return [artifact]
        record = job.results.accuracy_control.get(self.name)
        if record is None:
            raise ExportError(f"--target {self.name} returned no int8 artifact and no accuracy-control record")
        job.drop(name, "accuracy control", rejection_reason(record), record["tried"])
        return []

    def _export(self, job: ExportJob) -> list[Artifact]:
        """Write the float artifacts (fp32 and/or fp16) into job.bundle."""
        raise NotImplementedError

    def _export_int8(self, job: ExportJob) -> Artifact | None:
        """Build int8 candidates, decide with `job.decide_int8`, write the chosen one; None when
        none passed. Called after `_export` only with --int8."""
        raise NotImplementedError

    def check_backend(self) -> str | None:
        """Runtime backend that runs this target's artifacts here, or None when none can: the
        target's own backend where its OS allows, else its registered stand-in (Core ML off macOS:
        the MIL reference evaluator)."""
        spec = spec_of(self.name)
        return self.name if spec.runs_on(sys.platform) else spec.stand_in

    def skip_reason(self) -> str:
        return f"no runtime for {self.name} on this machine"

    def _session(self, job: ExportJob, artifact: Artifact) -> Any:
        """A runtime session over an artifact written under job.bundle, by the backend that
        `check_backend()` names, opened and checked (embedded contract, inputs) as `edgekd.load` does."""
        from edgekd.runtimes.classifier import open_session

        backend = self.check_backend()
        if backend is None:
            raise ExportError(f"{artifact.name} cannot be run here: {self.skip_reason()}")
        return open_session(backend, job.bundle / artifact.path, artifact, job.manifest(), {})

    def session_logits(self, job: ExportJob, artifact: Artifact, texts: list[str]) -> np.ndarray:
        """logits [len(texts), num_labels] of an artifact written under job.bundle (see `_session`)."""
        return check.run_session(self._session(job, artifact), job.bundle_tokenizer, texts)

    def check(self, job: ExportJob, artifact: Artifact) -> dict[str, Any]:
        """Run the artifact on every check set and compare with PyTorch (both fed by the bundle's
        tokenizer.json, `check.run_session`). fp32/fp16 are gated here;
        int8 was decided by accuracy control on the validation split, so its numbers are recorded
        but not decided again on this smaller sample."""
        if self.check_backend() is None:
            return {"status": "skipped", "reason": self.skip_reason()}
        session = self._session(job, artifact)
        by_length = {}
        for length_class, texts in job.check_sets.items():
            if not texts:  # e.g. no short texts when max_length is tiny; the other classes still count
                continue
            logits = check.run_session(session, job.bundle_tokenizer, texts)
            by_length[length_class] = check.compare(job.reference[length_class], logits)
        total = _pool(by_length)
        result = {"engine": session.engine, **total, "by_length": by_length}
        if artifact.precision == "int8":
            decision = job.results.accuracy_control.get(self.name, {})
            chosen = kept_try(decision)
            return {"status": "passed", "decided_by": "accuracy control", "gate": decision.get("gates"),
                    "decision": {k: chosen.get(k) for k in ("name", "n", "agreement", "agreement_ci", "flips",
                                                            "accuracy_drop", "n_accuracy")}, **result}
        failed = check.gate_failures(artifact.precision, total, job.gates)
        return {"status": "failed" if failed else "passed", "gate": check.gates(artifact.precision, job.gates),
                "failed": failed, **result}


def kept_try(record: dict[str, Any]) -> dict[str, Any]:
    """The accepted try of an accuracy-control record that made the shipped int8 artifact: a later stage's
    (a record nested in it, as ONNX's 4-bit embedding rows) when that stage kept one, else the first
    decision's; {} when none was accepted."""
    stages = [record, *(v for v in record.values() if isinstance(v, dict) and "tried" in v)]
    accepted = [t for r in stages for t in r.get("tried", []) if t.get("accepted")]
    return accepted[-1] if accepted else {}


# What a drop record keeps of a failed check (the per-length detail stays in the parity record).
_DROP_KEYS = ("n", "agreement", "agreement_ci", "flips", "max_abs_logit", "max_abs_prob", "engine")


def _remove(bundle: Path, artifact: Artifact) -> None:
    """Delete an artifact's files (and sidecars) from the staging bundle."""
    for path in artifact_files(Path(bundle) / artifact.path):
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()


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


def _pool(by_length: dict[str, dict[str, Any]]) -> dict[str, Any]:
    n = sum(m["n"] for m in by_length.values())
    flips = sum(m["flips"] for m in by_length.values())
    return {
        "n": n,
        "max_abs_logit": max(m["max_abs_logit"] for m in by_length.values()),
        "max_abs_prob": max(m["max_abs_prob"] for m in by_length.values()),
        "agreement": (n - flips) / n if n else 1.0,
        "agreement_ci": list(wilson_interval(n - flips, n)),
        "flips": flips,
    }
