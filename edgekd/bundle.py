"""The bundle: the contract between export and runtime. Torch-free.

A bundle is a directory (or a `.zip` of one)::

    edgekd.json              manifest (this module reads and writes it)
    tokenizer.json           the one tokenizer for every backend
    onnx/model.onnx ...      artifacts, one entry each in the manifest
    reports/<device>.json    verification reports

The `contract` hash covers tokenizer.json, the ordered labels and the input signature. It is also
written into each artifact's own metadata and checked on load, so no model can run with another
tokenizer or label map. Bundles are built in a staging directory and renamed into place.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import shutil
import tempfile
import zipfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from edgekd.errors import BundleError

FORMAT_VERSION = 1
MANIFEST = "edgekd.json"
TOKENIZER = "tokenizer.json"
# Metadata key under which every artifact carries the contract hash.
CONTRACT_KEY = "edgekd.contract"


@dataclass
class TokenizerSettings:
    """How text becomes model inputs; identical for every backend of a bundle."""

    max_length: int
    # Inputs the model takes, in order, e.g. ["input_ids", "attention_mask", "token_type_ids"].
    inputs: list[str]
    pad_id: int = 0
    truncation_side: str = "right"
    # Integer dtype each backend wants for its inputs ("int64" for ONNX/OpenVINO, "int32" for Core ML).
    dtypes: dict[str, str] = field(default_factory=lambda: {"onnx": "int64", "openvino": "int64", "coreml": "int32"})


@dataclass
class Artifact:
    """One exported model file (or directory, for .mlpackage) in the bundle."""

    backend: str  # "onnx" | "openvino" | "coreml"
    precision: str  # "fp32" | "fp16" | "int8"
    path: str  # relative to the bundle root, posix separators
    sha256: str = ""
    bytes: int = 0
    # Quantization settings (mode, calibration size, preset, ...) or None for float artifacts.
    quantization: dict[str, Any] | None = None
    # Ops that stayed float in an int8 artifact (accuracy control), by node name or type.
    float_ops: list[str] = field(default_factory=list)
    # Backend-specific facts: Core ML sequence buckets and compute units, ORT optimisation level, ...
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def name(self) -> str:
        return f"{self.backend}-{self.precision}"


@dataclass
class Manifest:
    labels: list[str]
    tokenizer: TokenizerSettings
    contract: str = ""
    task: str = "text-classification"
    format_version: int = FORMAT_VERSION
    artifacts: list[Artifact] = field(default_factory=list)
    # teacher, student, dataset fingerprint, library versions, created (ISO time)
    provenance: dict[str, Any] = field(default_factory=dict)
    calibration: dict[str, Any] | None = None
    # Export-time parity summary, keyed by artifact name.
    parity: dict[str, Any] = field(default_factory=dict)
    # Artifacts asked for but left out, each {artifact, backend, precision, stage, reason, numbers}.
    dropped: list[dict[str, Any]] = field(default_factory=list)

    def artifact(self, backend: str, precision: str) -> Artifact:
        for a in self.artifacts:
            if a.backend == backend and a.precision == precision:
                return a
        have = ", ".join(a.name for a in self.artifacts) or "none"
        raise BundleError(f"the bundle has no {backend}-{precision} artifact (it has: {have}); "
                          f"export it with: edgekd export MODEL --target {backend}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> Manifest:
        version = data.get("format_version")
        if version != FORMAT_VERSION:
            raise BundleError(f"bundle format version {version!r} is not supported (this edgekd reads "
                              f"{FORMAT_VERSION}); re-export the bundle with this edgekd version")
        try:
            return cls(
                labels=list(data["labels"]),
                tokenizer=TokenizerSettings(**data["tokenizer"]),
                contract=data["contract"],
                task=data.get("task", "text-classification"),
                format_version=version,
                artifacts=[Artifact(**a) for a in data.get("artifacts", [])],
                provenance=data.get("provenance", {}),
                calibration=data.get("calibration"),
                parity=data.get("parity", {}),
                dropped=list(data.get("dropped", [])),
            )
        except (KeyError, TypeError) as exc:
            raise BundleError(f"the bundle manifest is malformed ({exc}); re-export the bundle") from exc


# --- hashing -------------------------------------------------------------------------------------


# Files an artifact path stands for beyond itself: an OpenVINO IR is model.xml plus its weights.
SIDECARS = {".xml": [".bin"]}


def artifact_files(path: Path) -> list[Path]:
    """The files making up a file artifact: the path itself and any sidecar that exists
    (openvino/model.xml -> also openvino/model.bin)."""
    path = Path(path)
    return [path] + [s for s in (path.with_suffix(x) for x in SIDECARS.get(path.suffix, [])) if s.is_file()]


def sha256_path(path: Path) -> str:
    """sha256 of a file (with its sidecars), or of a directory (relative paths and contents, sorted)."""
    h = hashlib.sha256()
    path = Path(path)
    if path.is_dir():
        for p in sorted(q for q in path.rglob("*") if q.is_file()):
            h.update(p.relative_to(path).as_posix().encode() + b"\0")
            _hash_file_into(h, p)
    else:
        for p in artifact_files(path):
            _hash_file_into(h, p)
    return h.hexdigest()


def _hash_file_into(h: Any, path: Path) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


# A checkpoint's weights: safetensors when it has them (what save_pretrained writes, shards
# included), else the older pytorch_model*.bin files (hashed as bytes, never unpickled).
WEIGHT_PATTERNS = ("*.safetensors", "pytorch_model*.bin")


def checkpoint_weight_files(model_dir: Path) -> list[Path]:
    """The weight files of a Hugging Face checkpoint directory, sorted by name ([] when none)."""
    for pattern in WEIGHT_PATTERNS:
        found = sorted(p for p in Path(model_dir).glob(pattern) if p.is_file())
        if found:
            return found
    return []


def checkpoint_weights_sha256(model_dir: Path) -> str | None:
    """sha256 over a checkpoint's weight files' contents in sorted name order (None: no weight files).
    The manifest records it as `provenance.student_weights_sha256`; verify compares it."""
    files = checkpoint_weight_files(model_dir)
    if not files:
        return None
    h = hashlib.sha256()
    for p in files:
        _hash_file_into(h, p)
    return h.hexdigest()


def path_bytes(path: Path) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return sum(p.stat().st_size for p in artifact_files(path))


def contract_hash(tokenizer_json: bytes, labels: list[str], settings: TokenizerSettings) -> str:
    """sha256 over tokenizer.json, the ordered labels and the input signature (not the dtypes,
    which legitimately differ per backend)."""
    signature = {
        "labels": list(labels),
        "max_length": settings.max_length,
        "inputs": list(settings.inputs),
        "pad_id": settings.pad_id,
        "truncation_side": settings.truncation_side,
    }
    h = hashlib.sha256(tokenizer_json)
    h.update(json.dumps(signature, sort_keys=True, ensure_ascii=False).encode())
    return h.hexdigest()


# --- reading -------------------------------------------------------------------------------------


def read_manifest(bundle: Path) -> Manifest:
    """Read and check `edgekd.json` of a bundle directory, including its contract hash."""
    bundle = Path(bundle)
    path = bundle / MANIFEST
    if not path.is_file():
        raise BundleError(f"{bundle} is not an edgekd bundle (no {MANIFEST}); create one with: "
                          f"edgekd export MODEL --out {bundle}")
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise BundleError(f"{path} is not valid JSON ({exc}); re-export the bundle") from exc
    manifest = Manifest.from_dict(data)
    check_contract(bundle, manifest)
    return manifest


def check_contract(bundle: Path, manifest: Manifest) -> None:
    tok = Path(bundle) / TOKENIZER
    if not tok.is_file():
        raise BundleError(f"{tok} is missing; re-export the bundle")
    actual = contract_hash(tok.read_bytes(), manifest.labels, manifest.tokenizer)
    if actual != manifest.contract:
        raise BundleError(f"contract mismatch in {bundle}: tokenizer.json, labels or input settings changed "
                          f"after export (expected {manifest.contract[:12]}, got {actual[:12]}); re-export the bundle")


def check_artifact(bundle: Path, artifact: Artifact) -> Path:
    """Return the artifact's path after checking it exists and matches its recorded sha256."""
    path = Path(bundle) / artifact.path
    if not path.exists():
        raise BundleError(f"artifact {artifact.name} is missing: {path}; re-export the bundle")
    actual = sha256_path(path)
    if actual != artifact.sha256:
        raise BundleError(f"artifact {artifact.name} was modified after export: {path} has sha256 "
                          f"{actual[:12]}, the manifest says {artifact.sha256[:12]}; re-export the bundle")
    return path


def check_bundle(bundle: Path) -> Manifest:
    """The manifest of a bundle directory after checking the whole bundle is as exported: the contract
    hash (tokenizer.json, labels, inputs) and every artifact's sha256. `edgekd pack` checks this first."""
    manifest = read_manifest(bundle)
    for artifact in manifest.artifacts:
        check_artifact(bundle, artifact)
    return manifest


def check_embedded_contract(artifact: Artifact, found: str | None, manifest: Manifest) -> None:
    """Compare the contract hash an artifact carries in its own metadata with the manifest's."""
    if found != manifest.contract:
        raise BundleError(f"artifact {artifact.name} ({artifact.path}) was exported for another tokenizer or label "
                          f"map (contract {str(found)[:12]}, bundle {manifest.contract[:12]}); re-export the bundle")


def open_bundle(path: str | os.PathLike[str]) -> Path:
    """A bundle directory, or a `.zip` of one extracted safely (no absolute paths, no `..`, no links)
    into a private cache directory keyed by the zip's sha256."""
    path = Path(path)
    if path.is_dir():
        return path
    if not path.exists():
        raise BundleError(f"bundle not found: {path}")
    if not zipfile.is_zipfile(path):
        raise BundleError(f"{path} is neither a bundle directory nor a .zip of one")
    digest = sha256_path(path)
    cache = Path(os.environ.get("EDGEKD_CACHE", Path.home() / ".cache" / "edgekd")) / "bundles" / digest[:16]
    if (cache / MANIFEST).is_file():
        return cache
    try:
        _extract(path, cache)
    except (BundleError, OSError):
        # Another process (a second serve worker, say) extracted the same zip first: use its copy.
        if (cache / MANIFEST).is_file():
            return cache
        raise
    return cache


def _extract(path: Path, cache: Path) -> None:
    """Extract a bundle zip into `cache` through a staging directory renamed into place."""
    with zipfile.ZipFile(path) as zf, _staging(cache) as tmp:
        for info in zf.infolist():
            target = _safe_member(tmp, info)
            if info.is_dir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            target.parent.mkdir(parents=True, exist_ok=True)
            with zf.open(info) as src, open(target, "wb") as dst:
                shutil.copyfileobj(src, dst)
        root = tmp
        if not (tmp / MANIFEST).is_file():
            # Accept a zip holding one top-level folder that is the bundle.
            subdirs = [p for p in tmp.iterdir() if p.is_dir()]
            if len(subdirs) == 1 and (subdirs[0] / MANIFEST).is_file():
                root = subdirs[0]
            else:
                raise BundleError(f"{path} holds no {MANIFEST} at its top level; zip the bundle directory itself")
        if root != tmp:
            for p in root.iterdir():
                p.rename(tmp / p.name)
            root.rmdir()


def _safe_member(root: Path, info: zipfile.ZipInfo) -> Path:
    name = info.filename
    is_link = (info.external_attr >> 16) & 0o170000 == 0o120000
    target = (root / name).resolve()
    if is_link or name.startswith(("/", "\\")) or ".." in Path(name).parts or not target.is_relative_to(root.resolve()):
        raise BundleError(f"refusing unsafe path in bundle zip: {name!r} (absolute, '..' or a link)")
    return target


# --- writing -------------------------------------------------------------------------------------


@contextlib.contextmanager
def _staging(final: Path, force: bool = False) -> Iterator[Path]:
    """Yield an empty staging directory beside `final`; on success it replaces `final`, on error it
    is removed and `final` is untouched."""
    final = Path(final)
    final.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{final.name}.", suffix=".partial", dir=final.parent))
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    if final.exists():
        if not force:
            shutil.rmtree(tmp, ignore_errors=True)
            raise BundleError(f"{final} already exists; pass --force to replace it")
        old = final.with_name(f".{final.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        final.rename(old)
        tmp.rename(final)
        shutil.rmtree(old, ignore_errors=True)
    else:
        tmp.rename(final)


def staging(final: Path, force: bool = False) -> contextlib.AbstractContextManager[Path]:
    """Build a bundle atomically: `with staging(out, force) as tmp: ...write into tmp...`.

    Refuses (before any work) to replace an existing `final` unless `force`."""
    if Path(final).exists() and not force:
        raise BundleError(f"{final} already exists; pass --force to replace it")
    return _staging(Path(final), force)


def finalize_artifact(bundle: Path, artifact: Artifact) -> Artifact:
    """Fill in sha256 and bytes of an artifact written under `bundle`."""
    path = Path(bundle) / artifact.path
    artifact.sha256 = sha256_path(path)
    artifact.bytes = path_bytes(path)
    return artifact


def write_manifest(bundle: Path, manifest: Manifest) -> Path:
    """Write `edgekd.json` atomically (temp file + rename)."""
    path = Path(bundle) / MANIFEST
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False) + "\n", encoding="utf-8")
    os.replace(tmp, path)
    return path
