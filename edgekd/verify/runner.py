"""`edgekd verify`: run every artifact of a bundle this machine can run, plus the PyTorch student
(the checkpoint the bundle came from) and the teacher, on held-out labelled text; measure parity,
accuracy and latency; gate; write `bundle/reports/<device-id>.json` (+ .md, .html).

The PyTorch student, the reference every artifact is compared with, runs on the runtime's torch
backend fed by the bundle's own tokenizer.json, as every artifact is, so the tokenizer that ships is
the one verified. The teacher keeps its own tokenizer (its vocabulary may differ from the bundle's).

Before any model loads, verify checks that its references fit the bundle: the student's weights
are the ones the bundle was exported from (sha256 in the manifest), teacher and student carry the
bundle's label set (their logit columns are put in the bundle's label order by name), and every
artifact will be verified here (else it fails unless `allow_partial`).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.checkpoint import card_max_length, read_card
from edgekd.errors import DataError, EdgekdError
from edgekd.models import checkpoint_labels
from edgekd.verify import parity
from edgekd.verify.latency import LatencySettings, batch1_latency, cold_start, throughput

# Provenance keys an exporter may use for the student checkpoint directory, and for the teacher.
STUDENT_KEYS = ("student", "student_dir", "checkpoint", "model_dir", "source")
TEACHER_KEYS = ("teacher", "teacher_dir")


@dataclass
class VerifyConfig:
    """What to verify and how."""

    bundle: Path
    data: str
    teacher: Path | None = None  # --reference; else the student's edgekd-model.json / the bundle provenance
    student: Path | None = None  # else the bundle provenance
    baseline: Path | None = None  # a TF-IDF baseline directory, compared on the same texts
    backends: list[str] | None = None  # None: every backend this machine can run
    max_samples: int | None = 500
    text_columns: list[str] = field(default_factory=lambda: ["text"])
    label_column: str = "label"
    label_map: str | dict[str, list[str]] | None = None
    gates: parity.GateSet = field(default_factory=parity.GateSet)
    latency: LatencySettings = field(default_factory=LatencySettings)
    out_dir: Path | None = None  # default: bundle/reports
    max_flip_examples: int = 5
    allow_partial: bool = False  # pass although some artifacts are not verified here (report: `skipped`)


@dataclass
class TestSet:
    texts: list[str]
    labels: np.ndarray  # [n] int64 ids into the bundle's labels
    source: str


def load_test_set(data: str, labels: list[str], text_columns: list[str], label_column: str,
                  max_samples: int | None, seed: int = 0, label_map: Any = None) -> TestSet:
    """The test split of `data` (a file is the test set itself; a directory or hf: uses its test
    split), labels mapped to the bundle's label ids, sub-sampled to `max_samples` (fixed seed; None
    or 0: every test text). With a `label_map`, the data module's full loading (label grouping) is used."""
    from edgekd import data as d

    if max_samples is not None and max_samples < 0:
        raise DataError(f"--max-samples must be 0 (the whole test split) or a positive count (recipe: "
                        f"verify.max_samples), got {max_samples}")

    direct = d.read_test_file(data, text_columns, label_column) if label_map is None else None
    if direct is not None:
        texts, names, source = direct
    else:
        spec = d.DataSpec(path=data, text_columns=text_columns, label_column=label_column, label_map=label_map)
        split = d.load_splits(spec, labels)
        texts, names, source = split.test.texts, [split.labels[i] for i in split.test.labels], f"{data} [test]"
    index = {n: i for i, n in enumerate(labels)}
    unknown = sorted({n for n in names if n not in index})
    if unknown:
        raise DataError(f"labels {unknown[:5]} in {source} are not among the bundle's labels {labels}; "
                        "verify with the dataset the bundle was trained on")
    if not texts:
        raise DataError(f"{source} has no labelled rows; pass a test file with text and label columns")
    order = np.arange(len(texts))
    if max_samples and len(texts) > max_samples:
        order = np.sort(np.random.default_rng(seed).permutation(len(texts))[:max_samples])
    return TestSet([texts[i] for i in order], np.array([index[names[i]] for i in order], dtype=np.int64), source)


def _from_provenance(provenance: dict[str, Any], keys: tuple[str, ...]) -> Path | None:
    for key in keys:
        value = provenance.get(key)
        if isinstance(value, dict):
            value = value.get("path") or value.get("dir")
        if isinstance(value, str) and value and Path(value).is_dir():
            return Path(value)
    return None


def resolve_checkpoints(config: VerifyConfig, provenance: dict[str, Any]) -> tuple[Path, Path | None]:
    """(student checkpoint dir, teacher checkpoint dir or None)."""
    student = config.student or _from_provenance(provenance, STUDENT_KEYS)
    if student is None or not Path(student).is_dir():
        raise EdgekdError(f"the PyTorch student of {config.bundle} was not found (provenance: "
                          f"{ {k: provenance.get(k) for k in STUDENT_KEYS if k in provenance} }); pass --student DIR")
    teacher = config.teacher or _from_provenance(provenance, TEACHER_KEYS)
    if teacher is None:
        ref = read_card(student).get("teacher")
        teacher = Path(ref) if isinstance(ref, str) and Path(ref).is_dir() else None
    if teacher is not None and not Path(teacher).is_dir():
        raise EdgekdError(f"teacher checkpoint {teacher} does not exist; pass --reference TEACHER_DIR")
    return Path(student), (Path(teacher) if teacher else None)


def check_student_weights(bundle: Path, provenance: dict[str, Any], student: Path) -> list[str]:
    """EdgekdError when `student` is not the checkpoint the bundle was exported from (its weights'
    sha256 differs from the manifest's `student_weights_sha256`); a note when the manifest records
    none (a bundle from an older export)."""
    from edgekd.bundle import checkpoint_weights_sha256

    recorded = provenance.get("student_weights_sha256")
    if not recorded:
        return [f"the manifest records no student_weights_sha256 (an older export): the PyTorch student {student} "
                "was not checked to be the checkpoint the bundle was exported from"]
    actual = checkpoint_weights_sha256(student)
    if actual != recorded:
        raise EdgekdError(f"the student {student} is not the one bundle {bundle} was exported from (weights sha256 "
                          f"{(actual or 'none: no weight files')[:12]}... vs {recorded[:12]}... in the manifest); "
                          "pass --student with the checkpoint the bundle came from")
    return []




def label_columns(labels: list[str], bundle_labels: list[str], who: str, ckpt: Path, flag: str) -> list[int]:
    """Column indices that put a checkpoint's logits in the bundle's label order, matched by name:
    `logits[:, cols]` is [n, len(bundle_labels)] in bundle order. EdgekdError when the label sets differ."""
    missing = [n for n in bundle_labels if n not in labels]
    extra = [n for n in labels if n not in bundle_labels]
    if missing or extra or len(labels) != len(bundle_labels):
        raise EdgekdError(f"the {who} {ckpt} has other labels than the bundle (missing {missing}, extra {extra}; "
                          f"{who}: {labels}, bundle: {bundle_labels}); pass {flag} with a checkpoint trained on "
                          "the bundle's labels")
    return [labels.index(n) for n in bundle_labels]


@dataclass
class Run:
    """One artifact on one runtime backend (and, for Core ML on macOS, one compute-unit setting)."""

    backend: str
    artifact: Any
    options: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        # The artifact's name even when the reference evaluator runs it: the engine field says which ran.
        units = self.options.get("compute_units")
        return f"{self.artifact.name}@{units}" if units else self.artifact.name


def plan_runs(manifest: Any, wanted: list[str] | None) -> tuple[list[Run], list[str], list[dict[str, str]]]:
    """The runs to do here; notes on what is substituted or skipped and why; and the artifacts not
    verified here as {artifact, backend, reason} (the report's `skipped`). Core ML off macOS runs
    on the MIL reference evaluator (`coreml-reference`) and counts as verified."""
    from edgekd.backends import REGISTRY
    from edgekd.runtimes.classifier import available_backends

    here = set(available_backends(manifest))
    runs, notes, skipped = [], [], []
    for art in manifest.artifacts:
        backend = art.backend
        spec = REGISTRY.get(backend)
        if spec is not None and spec.stand_in and not (spec.runs_on(sys.platform) and backend in here):
            backend = spec.stand_in  # Core ML off macOS: the MIL reference evaluator
        if wanted is not None and backend not in wanted and art.backend not in wanted:
            reason = f"filtered out: not among the requested backends ({', '.join(wanted)})"
        elif backend not in here:
            extra = REGISTRY[backend].extra if backend in REGISTRY else backend
            reason = f"backend {backend} is not installed here (pip install 'edgekd[{extra}]')"
        else:
            if backend != art.backend:  # a stand-in ran it (so far only Core ML's)
                notes.append(f"{art.name}: Core ML needs macOS; ran the numpy MIL reference evaluator instead "
                             "(engine 'mil-reference': parity is checked, latency is not Core ML's)")
            # each compute-unit setting is a different engine (Core ML: CPU, GPU, Neural Engine)
            units = REGISTRY[backend].compute_units or (None,)
            runs += [Run(backend, art, {"compute_units": u} if u else {}) for u in units]
            continue
        skipped.append({"artifact": art.name, "backend": backend, "reason": reason})
        notes.append(f"{art.name}: not verified, {reason}")
    return runs, notes, skipped


def require_complete(bundle: Path, skipped: list[dict[str, str]], allow_partial: bool) -> None:
    """EdgekdError when an artifact of the bundle would go unverified here and `allow_partial` is off.

    Checked before any model loads, not after the run: which artifacts are skipped follows from the
    manifest, the installed backends and the requested backends alone, so nothing a run measures
    can change the outcome, and a run certain to fail should not first spend minutes loading and
    timing models (STYLE: validate early). With `allow_partial` the run goes on and its report
    lists the skipped artifacts under `skipped` (and in its notes)."""
    if not skipped or allow_partial:
        return
    what = "; ".join(f"{s['artifact']}: {s['reason']}" for s in skipped)
    raise EdgekdError(f"{len(skipped)} artifact(s) of {bundle} would not be verified here ({what}); verify the "
                      "whole bundle (install the extra, or drop/widen --backends) or pass --allow-partial "
                      "(recipe: verify.allow_partial: true) to accept a partial verification")


def _teacher_forward(ckpt: Path, max_length: int) -> tuple[Any, Callable[..., np.ndarray]]:
    """(model, logits(texts, batch_size)) of the teacher: its own Hugging Face tokenizer, since a
    teacher may have another vocabulary than the bundle's (a student with an adapted or pruned one)."""
    from edgekd.train.infer import load_checkpoint, torch_logits

    model, tok = load_checkpoint(ckpt)
    return model, lambda texts, batch_size=32: torch_logits(model, tok, texts, max_length, batch_size=batch_size)


def _student_forward(bundle: Path, ckpt: Path) -> tuple[Any, Callable[..., np.ndarray]]:
    """(model, logits(texts, batch_size)) of the PyTorch student: the runtime's torch backend
    (`edgekd.load(bundle, backend="torch", checkpoint=ckpt)`) fed by the bundle's own tokenizer.json,
    batched in text order (`exporters.check.run_session`, as the export check ran it), so every
    artifact is compared with the student on the ids of the tokenizer that ships."""
    import edgekd
    from edgekd.exporters.check import run_session

    clf = edgekd.load(str(bundle), backend="torch", checkpoint=str(ckpt))
    return clf.session.model, lambda texts, batch_size=32: run_session(clf.session, clf.tokenizer, texts, batch_size)


def _torch_model(name: str, kind: str, ckpt: Path, forward: tuple[Any, Callable[..., np.ndarray]], cols: list[int],
                 tests: TestSet, config: VerifyConfig) -> tuple[dict[str, Any], np.ndarray]:
    """A PyTorch checkpoint's row and logits [n, num_labels], run by `forward` (`_teacher_forward`,
    `_student_forward`), columns put in the bundle's label order by `cols` (see `label_columns`)."""
    import torch

    from edgekd.bundle import checkpoint_weight_files
    from edgekd.verify.embedding import capture_head_inputs, embedding_map

    model, logits_of = forward
    with capture_head_inputs(model) as embeddings:  # what the head reads, from this same pass
        logits = logits_of(tests.texts)[:, cols]
    predict = lambda batch: logits_of(batch, batch_size=len(batch))[:, cols]  # noqa: E731
    size = sum(p.stat().st_size for p in checkpoint_weight_files(ckpt)) or None
    row = {"name": name, "kind": kind, "backend": "torch", "precision": "fp32",
           "engine": f"torch {torch.__version__.split('+')[0]} CPU ({torch.get_num_threads()} threads)",
           "bytes": size, "path": str(ckpt), "accuracy": parity.accuracy_metrics(logits, tests.labels),
           "parity": None, "gap": None, "latency": _latency(predict, tests, config, None)}
    emb = embedding_map(embeddings, tests.labels, logits.argmax(axis=1)) if kind == "student" else None
    if emb is not None:
        row["embedding_map"] = emb
    return row, logits


def _baseline_model(path: Path, labels: list[str], tests: TestSet, config: VerifyConfig) -> dict[str, Any]:
    """The TF-IDF baseline on the same texts, its columns put in the bundle's label order."""
    from edgekd.train.baseline import load_baseline

    model = load_baseline(path)
    missing = [n for n in labels if n not in model.labels]
    if missing:
        raise EdgekdError(f"baseline {path} lacks labels {missing}; retrain it on the bundle's dataset")
    cols = [model.labels.index(n) for n in labels]

    def predict(batch: list[str]) -> np.ndarray:
        return model.logits(batch)[:, cols]

    logits = predict(tests.texts)
    size = sum(p.stat().st_size for p in Path(path).iterdir() if p.suffix in (".json", ".npz"))
    return {"name": "baseline-tfidf", "kind": "baseline", "backend": "sklearn", "precision": "fp64",
            "engine": "numpy + scikit-learn TF-IDF", "bytes": size, "path": str(path),
            "accuracy": parity.accuracy_metrics(logits, tests.labels), "parity": None, "gap": None,
            "latency": _latency(predict, tests, config, None)}


def _latency(predict: Callable[[list[str]], Any], tests: TestSet, config: VerifyConfig,
             cold: Run | None) -> dict[str, Any]:
    out: dict[str, Any] = {"batch1": batch1_latency(predict, tests.texts, config.latency),
                           "throughput": throughput(predict, tests.texts, config.latency), "cold_start": None}
    if cold is not None and config.latency.cold_start:
        out["cold_start"] = cold_start(str(config.bundle), cold.backend, cold.artifact.precision, tests.texts[0],
                                       options=cold.options)
    return out


def _artifact_model(run: Run, tests: TestSet, student: dict[str, Any], student_logits: np.ndarray,
                    teacher_logits: np.ndarray | None, config: VerifyConfig) -> dict[str, Any]:
    import edgekd

    art = run.artifact
    clf = edgekd.load(str(config.bundle), backend=run.backend, precision=art.precision, **run.options)
    logits = clf.logits(tests.texts)
    acc = parity.accuracy_metrics(logits, tests.labels)
    par = parity.conversion_parity(logits, student_logits, max_examples=config.max_flip_examples)
    par["accuracy_drop"] = student["accuracy"]["accuracy"] - acc["accuracy"]
    par["accuracy_drop_ci"] = list(parity.paired_drop_interval(student_logits.argmax(1) == tests.labels,
                                                               logits.argmax(1) == tests.labels))
    par["f1_macro_drop"] = student["accuracy"]["f1_macro"] - acc["f1_macro"]
    par["f1_macro_drop_ci"] = list(parity.paired_f1_drop_interval(tests.labels, student_logits.argmax(1),
                                                                  logits.argmax(1), logits.shape[1]))
    lengths = [len(ids) for ids in clf.tokenizer.encode(tests.texts)]
    par["by_length"] = parity.parity_by_length(logits, student_logits, lengths)
    src, mine = student_logits.argmax(axis=1), logits.argmax(axis=1)
    flips = [{"index": i, "text": tests.texts[i], "source": clf.labels[src[i]], "artifact": clf.labels[mine[i]]}
             for i in par["flipped"]]
    gap = parity.distillation_gap(logits, teacher_logits, tests.labels) if teacher_logits is not None else None
    return {"name": run.name, "kind": "artifact", "backend": run.backend, "precision": art.precision, "engine": clf.engine, "bytes": art.bytes,
            "path": art.path, "sha256": art.sha256, "accuracy": acc, "parity": par, "gap": gap, "flipped_examples": flips,
            "latency": _latency(lambda b: clf.logits(b, batch_size=len(b)), tests, config, run)}


@dataclass
class Preflight:
    """What verify will run, decided before any model loads."""

    student: Path
    teacher: Path | None
    student_cols: list[int]  # logit columns in the bundle's label order (see label_columns)
    teacher_cols: list[int] | None
    runs: list[Run]
    notes: list[str]
    skipped: list[dict[str, str]]


def vocabulary_notes(teacher: Path | None) -> list[str]:
    """The teacher card's vocabulary-fit warning (`train.vocab_fit`: its vocabulary reads the data
    nearly letter by letter), as a report note naming the fix; none when it fits or was not measured."""
    fit = (read_card(teacher).get("vocabulary_fit") or {}) if teacher is not None else {}
    return [f"teacher vocabulary: {fit['warning']}"] if fit.get("warning") else []


def preflight(config: VerifyConfig, manifest: Any) -> Preflight:
    """Every check that needs no model: the checkpoints exist, the student's weights are the ones the
    bundle was exported from, teacher and student carry the bundle's labels, and every artifact
    will be verified here (or `allow_partial`)."""
    student, teacher = resolve_checkpoints(config, manifest.provenance)
    runs, notes, skipped = plan_runs(manifest, config.backends)
    if not runs:
        raise EdgekdError(f"no artifact of {config.bundle} can run here ({'; '.join(notes) or 'bundle is empty'}); "
                          "install the runtime extra, e.g. pip install 'edgekd[onnx]'")
    require_complete(config.bundle, skipped, config.allow_partial)
    notes += check_student_weights(config.bundle, manifest.provenance, student)
    notes += vocabulary_notes(teacher)
    student_cols = label_columns(checkpoint_labels(student), manifest.labels, "student", student, "--student")
    teacher_cols = None if teacher is None else \
        label_columns(checkpoint_labels(teacher), manifest.labels, "teacher", teacher, "--reference")
    return Preflight(student, teacher, student_cols, teacher_cols, runs, notes, skipped)


def verify(config: VerifyConfig, progress: Callable[[str], None] = lambda _: None) -> dict[str, Any]:
    """Run the verification and return the report (not yet written; see `write`). Fails before any
    model loads when a reference does not fit the bundle or an artifact would go unverified
    (see `preflight` and `require_complete`)."""
    from edgekd.bundle import open_bundle, read_manifest
    from edgekd.verify.device import fingerprint

    source = Path(config.bundle)
    config.bundle = open_bundle(source)  # a .zip: its extraction in a private cache
    if source.is_file() and config.out_dir is None:
        from edgekd.verify.report import reports_dir

        config.out_dir = reports_dir(source)  # beside the zip, not in that cache
    manifest = read_manifest(config.bundle)
    pre = preflight(config, manifest)
    runs, notes = pre.runs, pre.notes
    config.gates.select_on(read_card(pre.student).get("select_metric"))  # selected on macro F1: gate its drop
    tests = load_test_set(config.data, manifest.labels, config.text_columns, config.label_column, config.max_samples,
                          label_map=config.label_map)
    max_length = manifest.tokenizer.max_length
    models, teacher_logits = [], None
    if config.baseline is not None:
        progress(f"baseline {config.baseline}")
        models.append(_baseline_model(config.baseline, manifest.labels, tests, config))
    if pre.teacher is not None:
        progress(f"teacher {pre.teacher}")
        forward = _teacher_forward(pre.teacher, card_max_length(read_card(pre.teacher), max_length))
        teacher, teacher_logits = _torch_model("teacher", "teacher", pre.teacher, forward, pre.teacher_cols, tests,
                                               config)
        models.append(teacher)
    else:
        notes.append("no teacher found (pass --reference TEACHER_DIR): distillation gap not measured")
    progress(f"PyTorch student {pre.student}")
    student, student_logits = _torch_model("student-torch", "student", pre.student,
                                           _student_forward(config.bundle, pre.student), pre.student_cols, tests,
                                           config)
    if teacher_logits is not None:
        student["gap"] = parity.distillation_gap(student_logits, teacher_logits, tests.labels)
    models.append(student)
    gates: list[dict[str, Any]] = []
    for run in runs:
        progress(f"{run.name} ({run.backend})")
        row = _artifact_model(run, tests, student, student_logits, teacher_logits, config)
        models.append(row)
        gates += parity.evaluate_gates(row["name"], run.artifact.precision, row["parity"], config.gates)
    notes += [f"{g['artifact']} {g['metric']} {g['value']:.4g} misses {g['op']} {g['threshold']:g} but its 95% "
              f"interval {g['interval'][0]:.4g}-{g['interval'][1]:.4g} reaches it: INCONCLUSIVE on {len(tests.texts)} "
              "texts, not a failure; verify on more texts (--max-samples 0) to decide"
              for g in gates if g["verdict"] == "INCONCLUSIVE"]
    from edgekd import __version__
    from edgekd.verify.report import SCHEMA_NAME, SCHEMA_VERSION

    return {"schema": SCHEMA_NAME, "schema_version": SCHEMA_VERSION, "edgekd_version": __version__,
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()), "device": fingerprint(),
            "bundle": {"path": str(source), "contract": manifest.contract, "labels": manifest.labels,
                       "provenance": manifest.provenance},
            "data": {"path": tests.source, "n": len(tests.texts)}, "models": models, "gates": gates,
            "gate_thresholds": config.gates.to_dict(), "passed": all(g["passed"] for g in gates),
            "skipped": pre.skipped, "notes": notes}


def write(report: dict[str, Any], config: VerifyConfig) -> dict[str, Path]:
    """Write the report next to the bundle (`bundle/reports/`) or into `config.out_dir`."""
    from edgekd.verify.report import write_report

    return write_report(report, config.out_dir or Path(config.bundle) / "reports")
