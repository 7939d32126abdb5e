"""Orchestrates one export: validate everything cheap first, load the checkpoint once, build the
calibration and check sets, run each target's exporter (which checks its own artifacts) inside
an atomic staging directory, then write the manifest. Any failure leaves no bundle behind."""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from importlib import metadata
from pathlib import Path
from typing import Any

import numpy as np

from edgekd import bundle as bundle_mod
from edgekd.bundle import Artifact, Manifest, TokenizerSettings
from edgekd.calibration import DEFAULT_SEED, DEFAULT_SIZE, sample_calibration
from edgekd.checkpoint import Checkpoint, card_max_length
from edgekd.errors import BundleError, DataError, ExportError, ModelError, RecipeError
from edgekd.exporters import get_exporter, parse_targets
from edgekd.exporters.base import ExportJob
from edgekd.exporters.check import CHECK_PER_CLASS, check_texts, run_session, token_lengths
from edgekd.models import label_order
from edgekd.runtimes.classifier import open_session
from edgekd.runtimes.tokenizer import BundleTokenizer
from edgekd.verify.parity import GateSet

# Accuracy control decides int8 on the whole validation split (accuracy and agreement), plus
# AGREEMENT_EXTRA train texts outside the calibration set in the check's three length classes
# (agreement only; exercises truncated-long inputs), topped up so that the decision sees at least
# MIN_DECISION_TEXTS texts when the data has them: 1,000 texts put a 99% agreement within about
# +-0.6 points (Wilson 95%), where 192 texts would leave +-1.5.
AGREEMENT_EXTRA = 300
MIN_DECISION_TEXTS = 1000
# Input order every backend uses; filtered by what the tokenizer produces.
INPUT_ORDER = ["input_ids", "attention_mask", "token_type_ids"]
VERSIONED = ["edgekd", "torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "openvino",
             "nncf", "coremltools", "tokenizers"]


@dataclass
class ExportOptions:
    """What to export and how; the CLI flags map one to one."""

    targets: list[str] = field(default_factory=lambda: ["onnx"])
    int8: bool = False
    # A target left without int8 (accuracy control rejected it, or its conversion failed) fails the
    # export instead of being dropped; the bundle is then not written (an existing one is untouched).
    require_int8: bool = False
    calibration_size: int = DEFAULT_SIZE
    calibration_seed: int = DEFAULT_SEED
    # THE gate table (verify's): fp32/fp16 post-export gates and the int8 accuracy-control gates.
    gates: GateSet = field(default_factory=GateSet)
    # Shorthand for the int8 accuracy_drop gate (--max-accuracy-drop); None keeps the table's value.
    max_accuracy_drop: float | None = None
    coreml_precision: str = "fp16"
    compute_units: str = "ALL"
    # 4: ONNX int8 stores the word-embedding rows in 4 bits (accuracy control keeps 8 when 4 fails)
    embedding_bits: int = 8
    # Cut the learned position tables to the rows max_length reads (exporters/positions.py); lossless,
    # but the artifacts then take no longer input than the bundle's tokenizer makes
    trim_positions: bool = False
    force: bool = False
    # Held-out texts per length class (short / medium / truncated-long) in the post-export check.
    check_per_class: int = CHECK_PER_CLASS


@dataclass
class ExportData:
    """Real texts for the export: train (calibration pool), validation (accuracy control) as
    (texts, label ids in the checkpoint's label order), and held-out test texts (the check)."""

    test_texts: list[str]
    train: tuple[list[str], list[int]] | None = None
    validation: tuple[list[str], list[int]] | None = None
    fingerprint: str = ""
    source: str = ""


def validate(model_dir: Path, out: Path, options: ExportOptions) -> list[str]:
    """Check targets, dependencies, paths and options before any model is loaded."""
    targets = parse_targets(options.targets)
    if not (Path(model_dir) / "config.json").is_file():
        raise ModelError(f"{model_dir} is not a Hugging Face checkpoint directory (no config.json); "
                         f"pass the output directory of 'edgekd train' or 'edgekd distill'")
    if Path(out).exists() and not options.force:
        raise BundleError(f"{out} already exists; pass --force to replace it")
    if options.coreml_precision not in ("fp16", "fp32"):
        raise RecipeError(f"--coreml-precision must be fp16 or fp32, got {options.coreml_precision!r}")
    if options.max_accuracy_drop is not None and not 0 <= options.max_accuracy_drop < 1:
        raise RecipeError(f"--max-accuracy-drop must be in [0, 1), got {options.max_accuracy_drop}")
    if options.require_int8 and not options.int8:
        raise RecipeError("--require-int8 needs --int8 (recipe: export.int8: true)")
    if options.embedding_bits not in (4, 8):
        raise RecipeError(f"--embedding-bits must be 4 or 8, got {options.embedding_bits}")
    if options.embedding_bits == 4 and not (options.int8 and "onnx" in targets):
        raise RecipeError("--embedding-bits 4 is a setting of the ONNX int8 artifact: pass --int8 and --target onnx "
                          "(recipe: export.int8: true, onnx in export.targets)")
    for name in targets:
        get_exporter(name).check_dependencies()
    return targets


def _export_gates(options: ExportOptions, model_card: dict[str, Any]) -> GateSet:
    """The gates this export applies: the options' table (left unchanged), with --max-accuracy-drop
    and the gates of the metric the model was selected on (a model selected on macro F1: int8 must
    keep macro F1 too)."""
    gates = options.gates.copy()
    if options.max_accuracy_drop is not None:
        gates.override("int8", "accuracy_drop", options.max_accuracy_drop)
    return gates.select_on(model_card.get("select_metric"))


def export_bundle(model_dir: str | Path, out: str | Path, data: ExportData, options: ExportOptions,
                  log: Callable[[str], None] | None = None) -> Manifest:
    """Export a sequence-classification checkpoint to a checked bundle at `out`.

    Raises ExportError when a target's float conversion fails, an fp32 artifact fails its check, or
    (with `require_int8`) a target ends without int8; then no bundle is written (an existing one is
    untouched). A failed fp16 or int8 artifact is left out and listed in `manifest.dropped`."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    model_dir, out = Path(model_dir), Path(out)
    targets = validate(model_dir, out, options)
    if options.int8 and (data.train is None or data.validation is None):
        raise DataError("--int8 needs calibration data (train and validation splits); pass --calibration-data")
    if not data.test_texts:
        raise DataError("the export check needs held-out texts; pass --calibration-data with a test split")
    from edgekd.train.infer import load_checkpoint

    log(f"loading {model_dir}")
    model, tokenizer = load_checkpoint(model_dir)
    model_card = _model_card(model_dir)
    gates = _export_gates(options, model_card)
    labels = label_order(model.config.id2label, str(model_dir / "config.json"))
    settings = _tokenizer_settings(tokenizer, model_card)
    tokenizer_json = _tokenizer_json(model_dir, tokenizer)
    contract = bundle_mod.contract_hash(tokenizer_json, labels, settings)
    checks = check_texts(tokenizer, data.test_texts, settings.max_length, options.check_per_class)
    calibration, validation, agreement = _int8_sets(tokenizer, data, options, labels, settings.max_length)
    with tempfile.TemporaryDirectory(prefix="edgekd-export-") as work, \
            bundle_mod.staging(out, options.force) as tmp:
        # tokenizer.json is staged first: the reference, the check and every exporter read it from here
        (tmp / bundle_mod.TOKENIZER).write_bytes(tokenizer_json)
        bundle_tokenizer = BundleTokenizer(tmp / bundle_mod.TOKENIZER, settings)
        session_manifest = Manifest(labels=labels, tokenizer=settings, contract=contract)
        reference, int8_reference = _references(model_dir, model, tmp, session_manifest, bundle_tokenizer, checks,
                                                validation, agreement, log)
        # after the references: every artifact's check compares it with the untrimmed checkpoint
        trimmed = _trim_positions(model, settings, options, log)
        job = ExportJob(model_dir=model_dir, model=model, tokenizer=tokenizer, bundle_tokenizer=bundle_tokenizer,
                        labels=labels, settings=settings, contract=contract, bundle=tmp, workdir=Path(work),
                        check_sets=checks, reference=reference,
                        int8=options.int8, gates=gates, calibration=calibration,
                        validation=validation, agreement_texts=agreement, int8_reference=int8_reference, log=log,
                        options={"coreml_precision": options.coreml_precision,
                                 "compute_units": options.compute_units, "embedding_bits": options.embedding_bits,
                                 "positions_trimmed": bool(trimmed)})
        manifest = job.manifest()
        for name in targets:
            log(f"exporting {name}" + (" (fp32 + int8 with accuracy control)" if options.int8 else ""))
            manifest.artifacts.extend(get_exporter(name).export(job))
        _require_int8(options, targets, manifest, job.dropped)
        manifest.parity = job.results.parity
        manifest.dropped = job.dropped
        manifest.provenance = _provenance(model_dir, model_card, data, options, targets)
        if trimmed:
            manifest.provenance["position_rows"] = trimmed
        if calibration is not None:
            manifest.calibration = dict(calibration.record, validation_size=len(validation[0]),
                                        agreement_extra_size=len(agreement),
                                        accuracy_control=job.results.accuracy_control)
        bundle_mod.write_manifest(tmp, manifest)
    log(f"wrote {out} ({len(manifest.artifacts)} artifacts" + (f", {len(manifest.dropped)} dropped)" if manifest.dropped else ")"))
    return manifest


def _references(model_dir: Path, model: Any, staged: Path, manifest: Manifest, bundle_tokenizer: BundleTokenizer,
                checks: dict[str, list[str]], validation: tuple[list[str], list[int]] | None, agreement: list[str],
                log: Callable[[str], None]) -> tuple[dict[str, np.ndarray], np.ndarray | None]:
    """The PyTorch reference logits (check sets; int8 decision texts with --int8): the runtime's torch
    backend over the checkpoint, fed by the staged bundle's tokenizer.json (`check.run_session`), the
    ids every artifact is fed, so the tokenizer that ships is the one checked. The session runs `model`, the
    checkpoint already loaded for the export (computed before any exporter runs), not a second copy."""
    session = open_session("torch", staged, Artifact("torch", "fp32", ""), manifest,
                           {"checkpoint": str(model_dir), "model": model})
    reference = {k: run_session(session, bundle_tokenizer, v) for k, v in checks.items()}
    if validation is None:
        return reference, None
    log(f"int8 decision texts: {len(validation[0])} validation + {len(agreement)} agreement")
    return reference, run_session(session, bundle_tokenizer, list(validation[0]) + agreement, batch_size=32)


def _trim_positions(model: Any, settings: TokenizerSettings, options: ExportOptions,
                    log: Callable[[str], None]) -> list[dict[str, Any]]:
    """With --trim-positions, cut the loaded model's position tables to the rows max_length reads (in
    place: every target exports the trimmed model); the records, [] otherwise."""
    if not options.trim_positions:
        return []
    from edgekd.exporters.positions import trim_position_rows

    records = trim_position_rows(model, settings.max_length, settings.pad_id, settings.inputs)
    for r in records:
        log(f"position table {r['module']}: kept {r['rows']} of {r['of']} rows (max_length {settings.max_length})")
    if not records:
        log(f"--trim-positions: nothing to cut (no learned position table has rows past what max_length "
            f"{settings.max_length} reads)")
    return records


def _require_int8(options: ExportOptions, targets: list[str], manifest: Manifest, dropped: list[dict[str, Any]]) -> None:
    """With require_int8, ExportError (nothing written) when a target ended without int8."""
    if not options.require_int8:
        return
    have = {a.backend for a in manifest.artifacts if a.precision == "int8"}
    missing = [t for t in targets if t not in have]
    if missing:
        why = "; ".join(f"{d['artifact']}: {d['reason']}" for d in dropped if d["precision"] == "int8")
        raise ExportError(f"--require-int8: no int8 artifact for {', '.join(missing)} ({why or 'not produced'}); "
                          "the bundle was not written: relax the int8 gates (--max-accuracy-drop, "
                          "--gate-int8-agreement), use more calibration data, or drop --require-int8")


def _tokenizer_settings(tokenizer: Any, model_card: dict[str, Any]) -> TokenizerSettings:
    return TokenizerSettings(
        max_length=card_max_length(model_card),
        inputs=[n for n in INPUT_ORDER if n in tokenizer.model_input_names],
        pad_id=int(tokenizer.pad_token_id or 0), truncation_side=tokenizer.truncation_side)


def _int8_sets(tokenizer: Any, data: ExportData, options: ExportOptions, labels: list[str],
               max_length: int) -> tuple[Any, Any, list[str]]:
    """(calibration set, validation sample, extra agreement texts) for --int8, else (None, None, [])."""
    if not options.int8:
        return None, None, []
    texts, ids = data.train
    calibration = sample_calibration(texts, ids, token_lengths(tokenizer, texts, max_length),
                                     options.calibration_size, options.calibration_seed, labels)
    validation = (list(data.validation[0]), [int(x) for x in data.validation[1]])
    used = set(calibration.texts)
    rest = [t for t in texts if t not in used]
    extra = max(AGREEMENT_EXTRA, MIN_DECISION_TEXTS - len(validation[0]))
    rest = _subsample((rest, [0] * len(rest)), 4 * extra, options.calibration_seed)[0]
    if not rest:  # the whole train split went into calibration
        return calibration, validation, []
    # the same length classes as the check (short / medium / truncated-long), from train texts ...
    classes = check_texts(tokenizer, rest, max_length, -(-extra // 3))
    agreement = [t for group in classes.values() for t in group]
    # ... topped up from the rest when a class is empty (every Arabic article or IMDB review is longer
    # than 128 tokens, so there are no short or medium texts), so the data's texts reach `extra`
    chosen = set(agreement)
    agreement += [t for t in rest if t not in chosen][: max(0, extra - len(agreement))]
    return calibration, validation, agreement


def _model_card(model_dir: Path) -> dict[str, Any]:
    return Checkpoint(model_dir).card


def _tokenizer_json(model_dir: Path, tokenizer: Any) -> bytes:
    """The checkpoint's tokenizer.json as saved, else serialised from the fast tokenizer."""
    saved = model_dir / "tokenizer.json"
    if saved.is_file():
        return saved.read_bytes()
    if not getattr(tokenizer, "is_fast", False):
        raise ModelError(f"{model_dir} has no fast tokenizer (tokenizer.json); re-save it with a fast tokenizer")
    return tokenizer.backend_tokenizer.to_str().encode("utf-8")


def _subsample(split: tuple[list[str], list[int]], n: int, seed: int) -> tuple[list[str], list[int]]:
    texts, labels = split
    if len(texts) <= n:
        return list(texts), [int(x) for x in labels]
    idx = np.sort(np.random.default_rng(seed).choice(len(texts), size=n, replace=False))
    return [texts[i] for i in idx], [int(labels[i]) for i in idx]


def _provenance(model_dir: Path, card: dict[str, Any], data: ExportData, options: ExportOptions,
                targets: list[str]) -> dict[str, Any]:
    versions = {}
    for dist in VERSIONED:
        try:
            versions[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    # checkpoint.PROVENANCE_KEYS (verify refuses a PyTorch student whose weights differ from these)
    return {
        **Checkpoint(model_dir).provenance(),
        "dataset_fingerprint": data.fingerprint or card.get("dataset_fingerprint", ""),
        "data_source": data.source,
        "export_options": dict(asdict(options), targets=targets),
        "versions": versions,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
