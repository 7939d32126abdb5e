"""What `GET /info` says about the model being served: labels, the artifact in use, the bundle's
contract, its export-time parity and the latest `edgekd verify` summary for this device. Torch-free:
everything comes from the manifest and this device's `reports/<device-id>.json`."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import edgekd
from edgekd.runtimes.classifier import Classifier
from edgekd.serve.api import Limits
from edgekd.verify.report import device_report

__all__ = ["DEVICE_KEYS", "bundle_info", "device_report"]

# The device facts /info and the page show (the whole fingerprint is in the verify report).
DEVICE_KEYS = ("device_id", "os", "arch", "cpu_model", "logical_cores", "usable_cores", "memory_bytes", "python")


def bundle_info(clf: Classifier, device: dict[str, Any], limits: Limits, report: Path | None,
                source: Path | None = None) -> dict[str, Any]:
    """The `/info` document (JSON-ready); `report`: this device's verify report (`device_report`);
    `source`: the bundle path as given (default: the bundle directory)."""
    manifest = clf.manifest
    artifact = next((a for a in manifest.artifacts if (a.backend, a.precision) == (clf.backend, clf.precision)), None)
    name = f"{clf.backend}-{clf.precision}"
    provenance = manifest.provenance
    return {
        "edgekd_version": edgekd.__version__,
        "task": manifest.task,
        "labels": list(clf.labels),
        "model": str(provenance.get("model_dir") or provenance.get("student") or ""),
        "artifact": {
            "name": name, "backend": clf.backend, "precision": clf.precision, "engine": clf.engine,
            "source": str(source or clf.bundle), "bundle": str(clf.bundle), "path": artifact.path if artifact else None,
            "bytes": artifact.bytes if artifact else None, "sha256": artifact.sha256 if artifact else None,
            "quantization": artifact.quantization if artifact else None,
            "choice": clf.choice.to_dict(),  # why auto picked this artifact (rule, reason, numbers)
        },
        "contract": {"sha256": manifest.contract, "max_length": manifest.tokenizer.max_length,
                     "inputs": list(manifest.tokenizer.inputs), "truncation_side": manifest.tokenizer.truncation_side},
        "parity": _parity(manifest.parity.get(name)),
        "verify": _verify_summary(report, name) if report else None,
        "device": {k: device.get(k) for k in DEVICE_KEYS},
        "limits": {"max_body_bytes": limits.max_body_bytes, "max_texts": limits.max_texts,
                   "max_text_chars": limits.max_text_chars},
    }


def _parity(entry: dict[str, Any] | None) -> dict[str, Any] | None:
    """The export-time check of the artifact in use, without its per-length breakdown."""
    if not entry:
        return None
    keep = ("status", "decided_by", "n", "agreement", "agreement_ci", "flips", "max_abs_logit", "max_abs_prob",
            "engine", "gate", "failed", "decision")
    return {k: entry[k] for k in keep if k in entry}


def _verify_summary(path: Path, name: str) -> dict[str, Any]:
    """The verify report's verdict, data, and the row of the artifact in use (accuracy, parity vs the
    PyTorch student, batch-1 latency); an unreadable report is said, not raised."""
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return {"path": str(path), "error": f"cannot read the verify report ({exc})"}
    model = next((m for m in report.get("models", []) if m.get("name") == name), None)
    latency = ((model or {}).get("latency") or {}).get("batch1") or {}
    html = path.with_suffix(".html")
    return {
        "path": str(path), "html": "/report" if html.is_file() else None,
        "created": report.get("created"), "passed": report.get("passed"), "data": report.get("data"),
        "skipped": report.get("skipped", []),
        "gates_failed": [g for g in report.get("gates", []) if not g.get("passed")],
        "artifact": None if model is None else {
            "name": name, "accuracy": model.get("accuracy"), "parity": _drop(model.get("parity"), "flipped"),
            "gap": model.get("gap"),
            "latency_ms": {k: latency[k] for k in ("p50_ms", "p90_ms", "p99_ms", "runs") if k in latency} or None,
        },
    }


def _drop(d: dict[str, Any] | None, key: str) -> dict[str, Any] | None:
    return None if d is None else {k: v for k, v in d.items() if k != key}
