"""Orchestrates one export: validate everything cheap first, load the checkpoint once, build the
calibration and check sets, run each target's exporter (which checks its own artifacts) inside
an atomic staging directory, then write the manifest. Any failure leaves no bundle behind."""

from __future__ import annotations

import json
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
from edgekd.bundle import Manifest, TokenizerSettings
from edgekd.calibration import DEFAULT_SEED, DEFAULT_SIZE, sample_calibration
from edgekd.errors import BundleError, DataError, ModelError, RecipeError
from edgekd.exporters import get_exporter, parse_targets
from edgekd.exporters.base import ExportJob
from edgekd.exporters.check import CHECK_PER_CLASS, check_texts, token_lengths

DEFAULT_MAX_LENGTH = 128
# Accuracy control compares fp32 and int8 on at most this many validation texts (seeded sample),
# plus up to AGREEMENT_EXTRA train texts outside the calibration set for top-1 agreement, so a
# small validation split still gives a stable int8 decision.
VALIDATION_SIZE = 1000
AGREEMENT_EXTRA = 500
# Input order every backend uses; filtered by what the tokenizer produces.
INPUT_ORDER = ["input_ids", "attention_mask", "token_type_ids"]
VERSIONED = ["edgekd", "torch", "transformers", "optimum", "optimum-onnx", "onnx", "onnxruntime", "openvino",
             "nncf", "coremltools", "tokenizers"]


@dataclass
class ExportOptions:
    """What to export and how; the CLI flags map one to one."""

    targets: list[str] = field(default_factory=lambda: ["onnx"])
    int8: bool = False
    calibration_size: int = DEFAULT_SIZE
    calibration_seed: int = DEFAULT_SEED
    max_accuracy_drop: float = 0.005
    coreml_precision: str = "fp16"
    compute_units: str = "ALL"
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
    if not 0 <= options.max_accuracy_drop < 1:
        raise RecipeError(f"--max-accuracy-drop must be in [0, 1), got {options.max_accuracy_drop}")
    for name in targets:
        get_exporter(name).check_dependencies()
    return targets


def export_bundle(model_dir: str | Path, out: str | Path, data: ExportData, options: ExportOptions,
                  log: Callable[[str], None] | None = None) -> Manifest:
    """Export a sequence-classification checkpoint to a checked bundle at `out`.

    Raises ExportError when a target fails or an artifact fails its post-export check; then no
    bundle is written (and an existing one is untouched)."""
    log = log or (lambda msg: print(msg, file=sys.stderr))
    model_dir, out = Path(model_dir), Path(out)
    targets = validate(model_dir, out, options)
    if options.int8 and (data.train is None or data.validation is None):
        raise DataError("--int8 needs calibration data (train and validation splits); pass --calibration-data")
    if not data.test_texts:
        raise DataError("the export check needs held-out texts; pass --calibration-data with a test split")
    from edgekd.train.infer import load_checkpoint, torch_logits

    log(f"loading {model_dir}")
    model, tokenizer = load_checkpoint(model_dir)
    model_card = _model_card(model_dir)
    labels = [model.config.id2label[i] for i in range(model.config.num_labels)]
    settings = _tokenizer_settings(tokenizer, model_card)
    tokenizer_json = _tokenizer_json(model_dir, tokenizer)
    contract = bundle_mod.contract_hash(tokenizer_json, labels, settings)
    checks = check_texts(tokenizer, data.test_texts, settings.max_length, options.check_per_class)
    reference = {k: torch_logits(model, tokenizer, v, settings.max_length, batch_size=16) for k, v in checks.items()}
    calibration, validation, agreement = _int8_sets(tokenizer, data, options, labels, settings.max_length)
    with tempfile.TemporaryDirectory(prefix="edgekd-export-") as work, \
            bundle_mod.staging(out, options.force) as tmp:
        (tmp / bundle_mod.TOKENIZER).write_bytes(tokenizer_json)
        job = ExportJob(model_dir=model_dir, model=model, tokenizer=tokenizer, labels=labels, settings=settings,
                        contract=contract, bundle=tmp, workdir=Path(work), check_sets=checks, reference=reference,
                        int8=options.int8, max_accuracy_drop=options.max_accuracy_drop, calibration=calibration,
                        validation=validation, agreement_texts=agreement, log=log,
                        options={"coreml_precision": options.coreml_precision,
                                 "compute_units": options.compute_units})
        manifest = job.manifest()
        for name in targets:
            log(f"exporting {name}" + (" (fp32 + int8 with accuracy control)" if options.int8 else ""))
            manifest.artifacts.extend(get_exporter(name).export(job))
        manifest.parity = job.records.get("parity", {})
        manifest.provenance = _provenance(model_dir, model_card, data, options, targets)
        if calibration is not None:
            manifest.calibration = dict(calibration.record, validation_size=len(validation[0]),
                                        agreement_extra_size=len(agreement),
                                        accuracy_control=job.records.get("accuracy_control", {}))
        bundle_mod.write_manifest(tmp, manifest)
    log(f"wrote {out} ({len(manifest.artifacts)} artifacts)")
    return manifest


def _tokenizer_settings(tokenizer: Any, model_card: dict[str, Any]) -> TokenizerSettings:
    return TokenizerSettings(
        max_length=int(model_card.get("max_length", DEFAULT_MAX_LENGTH)),
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
    validation = _subsample(data.validation, VALIDATION_SIZE, options.calibration_seed)
    used = set(calibration.texts)
    rest = [t for t in texts if t not in used]
    rest = _subsample((rest, [0] * len(rest)), 4 * AGREEMENT_EXTRA, options.calibration_seed)[0]
    if not rest:  # the whole train split went into calibration
        return calibration, validation, []
    # the same length classes as the check (short / medium / truncated-long), from train texts
    classes = check_texts(tokenizer, rest, max_length, AGREEMENT_EXTRA // 3)
    return calibration, validation, [t for group in classes.values() for t in group]


def _model_card(model_dir: Path) -> dict[str, Any]:
    path = model_dir / "edgekd-model.json"
    if not path.is_file():
        return {}
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON ({exc}); re-run the training that wrote it") from exc


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
    return {
        "model_dir": str(model_dir.resolve()),
        "model_card": card,
        (card.get("role") or "model"): str(model_dir.resolve()),
        # verify refuses a PyTorch student whose weights differ from the ones exported here
        "student_weights_sha256": bundle_mod.checkpoint_weights_sha256(model_dir),
        "dataset_fingerprint": data.fingerprint or card.get("dataset_fingerprint", ""),
        "data_source": data.source,
        "export_options": dict(asdict(options), targets=targets),
        "versions": versions,
        "created": datetime.now(timezone.utc).isoformat(timespec="seconds"),
    }
