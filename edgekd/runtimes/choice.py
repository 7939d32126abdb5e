"""Which artifact `edgekd.load(bundle)` picks when backend or precision is "auto", and why. Torch-free.

With this device's `edgekd verify` report in the bundle (`reports/<device-id>.json`, or beside a .zip:
`verify.report.device_report`), auto loads the artifact that measured fastest *here* among those this
machine can run and that passed their gates there: the lowest batch-1 p50 (`prefer="latency"`, the
default) or the most texts/s at batch (`prefer="throughput"`). The report is used only when it is of
this bundle (same contract), every candidate's measured sha256 is the manifest's (else it is stale:
the file changed since), and it measured every candidate; otherwise the fixed rule applies (`fixed_rule()`: as shipped, backend
Core ML (macOS) > OpenVINO > ONNX Runtime, precision int8 > fp32 > fp16).
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgekd.bundle import Artifact, Manifest

# precision="auto" without this device's verify report: int8 when present (smallest, fastest on CPU), else
# fp32, else fp16 (e.g. a Core ML bundle that only has fp16).
AUTO_PRECISION_ORDER = ("int8", "fp32", "fp16")


def fixed_rule() -> str:
    """The fixed rule in words, from the registry's `auto_rank`s (a backend registered later shows up)."""
    from edgekd.backends import REGISTRY

    ranked = sorted((s for s in REGISTRY.values() if s.auto_rank is not None), key=lambda s: s.auto_rank or 0)
    return f"backend {' > '.join(s.title for s in ranked)}, precision {' > '.join(AUTO_PRECISION_ORDER)}"



@dataclass(frozen=True)
class Metric:
    """A verify report measurement that `prefer` ranks artifacts by."""

    section: str  # key under a model row's "latency"
    key: str
    lower_is_better: bool
    label: str
    unit: str


# prefer= value -> what "fastest" means. Batch-1 p50 is what one user's request waits; throughput is
# what a batch job or a busy server gets.
PREFER: dict[str, Metric] = {
    "latency": Metric("batch1", "p50_ms", True, "batch-1 p50 latency", "ms"),
    "throughput": Metric("throughput", "texts_per_s", False, "throughput", "texts/s"),
}


@dataclass(frozen=True)
class Choice:
    """Why `load` picked its artifact. rule: "measured" (this device's verify report), "fixed"
    (`fixed_rule()`, no usable report), or "requested" (backend and precision were given)."""

    artifact: str  # e.g. "onnx-int8"
    backend: str  # the runtime backend that runs it
    rule: str
    reason: str  # one line, for `edgekd info`, `predict --verbose` and /info
    report: str | None = None  # the report the decision read
    measured: dict[str, float] = field(default_factory=dict)  # candidate -> its value of the metric
    options: dict[str, Any] = field(default_factory=dict)  # session options of the measured row (Core ML units)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Candidate:
    backend: str
    artifact: Artifact


def check_prefer(prefer: str) -> Metric:
    """The metric of `prefer`; ValueError naming the allowed values."""
    if prefer not in PREFER:
        raise ValueError(f"prefer must be one of {', '.join(PREFER)}, got {prefer!r}")
    return PREFER[prefer]


def measured(report: Path | None, manifest: Manifest, candidates: Sequence[Candidate],
             prefer: str) -> tuple[Choice | None, str]:
    """The fastest candidate that passed its gates in `report` (this device's), or (None, why the
    report cannot decide)."""
    metric = check_prefer(prefer)
    if report is None:
        return None, "no verify report for this device in the bundle"
    try:
        doc = json.loads(report.read_text(encoding="utf-8"))
    except (OSError, json.JSONDecodeError) as exc:
        return None, f"cannot read the verify report {report} ({exc})"
    if (doc.get("bundle") or {}).get("contract") != manifest.contract:
        return None, f"the verify report {report} is of another bundle (its contract differs from the manifest's)"
    failed = {g.get("artifact") for g in doc.get("gates", []) if not g.get("passed")}
    gated = {g.get("artifact") for g in doc.get("gates", [])}
    values: dict[str, float] = {}
    best: tuple[float, Candidate, dict[str, Any]] | None = None
    stale, unmeasured, rejected = [], [], []
    for cand in candidates:
        rows = [m for m in doc.get("models", []) if m.get("kind") == "artifact" and m.get("backend") == cand.backend
                and str(m.get("name", "")).split("@")[0] == cand.artifact.name]
        if any(m.get("sha256") != cand.artifact.sha256 for m in rows):
            stale.append(cand.artifact.name)
        found = [(m, _value(m, metric)) for m in rows]
        found = [(m, v) for m, v in found if v is not None]
        if not found:
            unmeasured.append(cand.artifact.name)
        for m, value in found:
            if m["name"] in failed or m["name"] not in gated:
                rejected.append(m["name"])
                continue
            values[m["name"]] = value
            score = value if metric.lower_is_better else -value
            if best is None or score < best[0]:
                best = (score, cand, _options(m["name"]))
    if stale:
        return None, (f"the verify report {report} is stale: {', '.join(stale)} changed since it was measured "
                      "(the sha256 it measured is not the manifest's, or it recorded none); re-run: edgekd verify BUNDLE --data D")
    if unmeasured:
        return None, (f"the verify report {report} has no {metric.label} of {', '.join(unmeasured)} on this device; "
                      "re-run: edgekd verify BUNDLE --data D")
    if best is None:
        return None, f"every candidate failed a gate in the verify report {report}: {', '.join(rejected)}"
    _, cand, options = best
    name = cand.artifact.name + (f"@{options['compute_units']}" if options else "")
    others = "; ".join(f"{n} {v:.4g} {metric.unit}" for n, v in values.items() if n != name)
    reason = (f"fastest {metric.label} measured on this device among the artifacts that passed their gates: "
              f"{name} {values[name]:.4g} {metric.unit}" + (f" (vs {others})" if others else "")
              + (f"; failed a gate: {', '.join(rejected)}" if rejected else ""))
    return Choice(cand.artifact.name, cand.backend, "measured", reason, str(report), values, options), ""


def _value(row: dict[str, Any], metric: Metric) -> float | None:
    value = ((row.get("latency") or {}).get(metric.section) or {}).get(metric.key)
    return None if value is None else float(value)


def _options(row_name: str) -> dict[str, Any]:
    """Session options a report row was measured with: `coreml-fp16@CPU_AND_NE` ran on those compute units."""
    _, _, units = row_name.partition("@")
    return {"compute_units": units} if units else {}


def this_device_report(root: Path, source: str | Path | None) -> Path | None:
    """This device's verify report of the bundle, or None. The device fingerprint is taken only when
    the bundle has reports at all (it reads /proc or asks sysctl: not worth it on every load)."""
    from edgekd.verify.report import device_report, reports_dir

    dirs = [Path(root) / "reports"] + ([reports_dir(source)] if source is not None and Path(source).is_file() else [])
    if not any(d.is_dir() and any(d.glob("*.json")) for d in dirs):
        return None
    from edgekd.verify.device import fingerprint

    return device_report(root, fingerprint()["device_id"], source)
