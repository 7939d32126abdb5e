"""A bundle as one deterministic `.zip` (`edgekd pack`). Torch-free.

The same bundle always gives the same bytes, wherever it sits and whenever its files were written:
entries in sorted path order, every timestamp 1980-01-01 00:00, Unix modes 0644 (files) and 0755
(directories), deflate at one fixed level, no directory entries except for empty directories (so
an `.mlpackage` comes back exactly). The zip holds the bundle at its top level, which is what
`open_bundle` (and so `edgekd.load`, predict, verify, info and serve) reads.

Only what makes up the bundle is packed: `edgekd.json`, `tokenizer.json`, every artifact's files
(an OpenVINO IR with its `.bin`, a Core ML `.mlpackage` directory whole) and, unless left out,
`reports/`. Any other file in the bundle directory is listed in `PackResult.left_out`, not packed.
"""

from __future__ import annotations

import os
import secrets
import shutil
import zipfile
from dataclasses import dataclass, field
from pathlib import Path

from edgekd.bundle import (
    MANIFEST,
    TOKENIZER,
    Manifest,
    artifact_files,
    check_bundle,
    open_bundle,
    sha256_path,
)
from edgekd.errors import BundleError

# zlib's own default trade-off between size and time, fixed so the bytes never depend on a default.
DEFLATE_LEVEL = 6
# The earliest time a zip entry can hold (MS-DOS date): no entry carries a file's mtime.
ZIP_EPOCH = (1980, 1, 1, 0, 0, 0)
FILE_MODE = 0o100644  # regular file, rw-r--r--
DIR_MODE = 0o040755  # directory, rwxr-xr-x
MSDOS_DIRECTORY = 0x10
REPORTS = "reports"


@dataclass
class PackResult:
    """What `pack_bundle` wrote."""

    out: Path
    bytes: int  # size of the zip
    unpacked_bytes: int  # the packed files' total size before compression
    entries: list[str]  # zip entry names, in zip order (empty directories end in "/")
    sha256: str  # of the zip
    left_out: list[str] = field(default_factory=list)  # files in the bundle directory that were not packed


def bundle_members(root: Path, manifest: Manifest, reports: bool = True) -> list[str]:
    """The bundle's entries as sorted posix paths relative to `root`: manifest, tokenizer, every
    artifact's files, and `reports/` (hidden files left out) when `reports`."""
    names = {MANIFEST, TOKENIZER}
    for artifact in manifest.artifacts:
        path = root / artifact.path
        if path.is_dir():
            names |= _tree(root, path)
        else:
            names |= {p.relative_to(root).as_posix() for p in artifact_files(path)}
    if reports and (root / REPORTS).is_dir():
        names |= {n for n in _tree(root, root / REPORTS) if not any(part.startswith(".") for part in n.split("/"))}
    return sorted(names)


def _tree(root: Path, top: Path) -> set[str]:
    """Files under `top`, and its empty directories (with a trailing "/"), relative to `root`."""
    out = set()
    for p in top.rglob("*"):
        if p.is_file():
            out.add(p.relative_to(root).as_posix())
        elif p.is_dir() and not any(p.iterdir()):
            out.add(p.relative_to(root).as_posix() + "/")
    return out


def pack_bundle(bundle: str | os.PathLike[str], out: str | os.PathLike[str], force: bool = False,
                reports: bool = True) -> PackResult:
    """Check `bundle` (a directory or a .zip: manifest, contract and every artifact's sha256) and
    write it to `out` as a deterministic zip, atomically (a temporary file renamed into place).

    Refuses, before any work, an existing `out` unless `force`, and an `out` inside the bundle."""
    out = Path(out)
    if out.is_dir():
        raise BundleError(f"--out {out} is a directory; name the zip file, e.g. --out {out / 'model.zip'}")
    if out.exists() and not force:
        raise BundleError(f"{out} already exists; pass --force to replace it")
    root = open_bundle(bundle)
    if out.resolve().is_relative_to(root.resolve()):
        raise BundleError(f"--out {out} is inside the bundle {bundle}; write the zip outside it")
    manifest = check_bundle(root)
    if not manifest.artifacts:
        raise BundleError(f"{bundle} holds no artifacts; export some with: edgekd export MODEL --out {bundle}")
    members = bundle_members(root, manifest, reports)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{secrets.token_hex(4)}.partial")
    try:
        with open(tmp, "xb") as f, zipfile.ZipFile(f, "w") as zf:  # "x": a new file, mode 0666 less the umask
            for name in members:
                _write_member(zf, root, name)
        os.replace(tmp, out)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    present = {p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file()}
    unpacked = sum((root / n).stat().st_size for n in members if not n.endswith("/"))
    return PackResult(out, out.stat().st_size, unpacked, members, sha256_path(out), sorted(present - set(members)))


def _write_member(zf: zipfile.ZipFile, root: Path, name: str) -> None:
    info = zipfile.ZipInfo(name, date_time=ZIP_EPOCH)
    info.create_system = 3  # Unix on every OS: external_attr below holds Unix modes
    if name.endswith("/"):
        info.external_attr = (DIR_MODE << 16) | MSDOS_DIRECTORY
        zf.writestr(info, b"")
        return
    path = root / name
    info.external_attr = FILE_MODE << 16
    info.compress_type = zipfile.ZIP_DEFLATED
    # zf.open(info, "w") deflates at the level the ZipInfo carries: `compress_level` from Python 3.13,
    # `_compresslevel` before it.
    setattr(info, "compress_level" if hasattr(zipfile.ZipInfo, "compress_level") else "_compresslevel",
            DEFLATE_LEVEL)
    info.file_size = path.stat().st_size  # lets zipfile choose ZIP64 up front, from the size alone
    with open(path, "rb") as src, zf.open(info, "w") as dst:
        shutil.copyfileobj(src, dst, 1 << 20)
