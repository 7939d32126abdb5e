"""The benchmark's pipeline steps on real data. Each step runs the real `edgekd` command in a
subprocess (`edgekd.cli.main` with the recorded arguments, so the command recorded in RESULTS.md is
what ran) and is cached: a step is skipped while its output directory holds a stamp with the same
command, the same upstream steps (a step's inputs are the cached outputs named in its command; when
one of those is redone, every step that reads it is redone too) and the same code: the sha256 of
every edgekd source file the step's process imported, plus the package's data files (`source_version`).
A change to code a step ran reruns it and, through the upstream rule, every step after it; a change
to code it never imported (a serve fix, say, for a training step) does not."""

from __future__ import annotations

import hashlib
import json
import os
import shlex
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
# Outside the work tree, so that trained models outlive a fresh checkout on the same machine.
CACHE = Path(os.environ.get("EDGEKD_BENCH_CACHE", Path.home() / ".cache" / "edgekd" / "benchmarks"))
DATA = ROOT.parent / "shared" / "data"
STAMP = "benchmark-step.json"
PACKAGE = ROOT / "edgekd"
# Runs `edgekd ARGS` as `python -m edgekd` does, then records (at exit, so lazy imports count) which
# edgekd source files the process imported, into the file named by $EDGEKD_BENCH_IMPORTS.
_RUNNER = """import atexit, json, os, sys
def _record():
    files = {getattr(m, "__file__", None) for n, m in list(sys.modules.items()) if n.split(".")[0] == "edgekd"}
    with open(os.environ["EDGEKD_BENCH_IMPORTS"], "w") as f:
        json.dump(sorted(f for f in files if f), f)
atexit.register(_record)
from edgekd.cli import main
sys.exit(main(sys.argv[1:]))
"""


@dataclass
class Step:
    name: str
    out: Path
    argv: list[str]  # arguments after `edgekd`

    @property
    def command(self) -> str:
        # Paths as a user in the repository root types them (../shared is beside the checkout).
        rel = [a.replace(str(DATA.parent), "../shared").replace(str(ROOT) + "/", "") for a in self.argv]
        return "edgekd " + shlex.join(rel).replace(str(CACHE), "$CACHE")


def ag_news() -> str:
    return str(DATA / "ag_news")


def head_slice(dataset: str, out: Path, rows: dict[str, int]) -> Path:
    """`out` holding the first `rows[split]` rows of each split of ../shared/data/<dataset> as CSV,
    every column kept (smoke settings train on these); a split already written is kept as is, and a
    split is written whole or not at all (temporary file, then rename)."""
    import csv
    import gzip
    import itertools

    out.mkdir(parents=True, exist_ok=True)
    for split, n in rows.items():
        path = out / f"{split}.csv"
        if path.is_file():
            continue
        with gzip.open(DATA / dataset / f"{split}.csv.gz", "rt", encoding="utf-8", newline="") as f:
            reader = csv.reader(f)
            kept = list(itertools.islice(reader, n + 1))  # the header and n rows
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as f:
            csv.writer(f).writerows(kept)
        tmp.rename(path)
    return out


def pipeline(dataset: str = "ag_news") -> dict[str, Step]:
    """The steps of the AG News benchmark, keyed by name, in dependency order."""
    data = str(DATA / dataset)
    c = CACHE / dataset
    teacher = c / "teacher"
    students = c / "students"
    # The teacher: edgekd train's defaults (3 epochs, lr 5e-5, linear decay, warm-up 6%) but at
    # max_length 64 (15% of AG News texts are longer; at 128 an epoch costs ~2x on 2 CPU cores).
    steps = {
        "baseline": Step("baseline", c / "baseline", ["baseline", "--data", data, "--out", str(c / "baseline")]),
        "teacher": Step("teacher", teacher, [
            "train", "--data", data, "--model", "sentence-transformers/all-MiniLM-L6-v2", "--out", str(teacher),
            "--epochs", "3", "--lr", "5e-5", "--batch-size", "32", "--max-length", "64", "--no-progress"]),
    }
    return steps | {
        "students": Step("students", students, [
            "distill", "--teacher", str(teacher), "--data", data, "--student", "layers=3", "--student", "layers=2",
            "--epochs", "2", "--out", str(students), "--no-progress"]),
        "no_teacher": Step("no_teacher", c / "no_teacher", [
            "distill", "--teacher", str(teacher), "--data", data, "--student", "layers=3", "--no-teacher",
            "--epochs", "2", "--out", str(c / "no_teacher"), "--no-progress"]),
        "bundle": Step("bundle", c / "bundle", [
            "export", str(students / "layers-3"), "--target", "all", "--int8", "--calibration-data", data,
            "--out", str(c / "bundle"), "--force"]),
        # The smallest student, ONNX only: the fastest edgekd model that still keeps >= 99% of the teacher.
        "bundle_small": Step("bundle_small", c / "bundle-layers-2", [
            "export", str(students / "layers-2"), "--target", "onnx", "--int8", "--calibration-data", data,
            "--out", str(c / "bundle-layers-2"), "--force"]),
    }


def upstream(argv: list[str]) -> dict[str, str]:
    """{upstream step dir: when it finished} for each cached step output that `argv` reads (a path
    inside CACHE: the step dir itself or a folder in it, e.g. students/layers-3)."""
    found: dict[str, str] = {}
    for a in argv:
        p = Path(a)
        if not p.is_absolute() or CACHE not in p.parents:
            continue
        for d in (p, *p.parents):
            if d == CACHE:
                break
            if (d / STAMP).is_file():
                found[str(d.relative_to(CACHE))] = json.loads((d / STAMP).read_text()).get("finished", "")
                break
    return found


def step_env() -> dict[str, str]:
    """The environment of a step: the user's, without the OpenMP wait policy the benchmark process set
    for its own interleaved timings (a step runs and times PyTorch as a user's command would)."""
    env = dict(os.environ)
    if env.pop("EDGEKD_BENCH_SET_OMP_WAIT_POLICY", None):
        env.pop("OMP_WAIT_POLICY", None)
    return env


def source_version(files: list[str], package: Path | None = None) -> str:
    """sha256 over the edgekd source `files` (paths relative to the package's parent, as a stamp
    records them) and every non-Python file of the package (schemas, ...); a missing file counts too."""
    package = package or PACKAGE
    data = [str(f.relative_to(package.parent)) for f in package.rglob("*")
            if f.is_file() and f.suffix not in (".py", ".pyc") and "__pycache__" not in f.parts]
    digest = hashlib.sha256()
    for rel in sorted(set(files) | set(data)):
        path = package.parent / rel
        digest.update(rel.encode() + b"\0" + (path.read_bytes() if path.is_file() else b"<missing>") + b"\0")
    return digest.hexdigest()


def git_commit(root: Path = ROOT) -> str | None:
    """The checkout's HEAD commit, read from .git (None outside a git checkout): recorded, not compared."""
    git = root / ".git"
    try:
        if git.is_file():  # a worktree: "gitdir: PATH"
            git = Path(git.read_text().split(":", 1)[1].strip())
        head = (git / "HEAD").read_text().strip()
        if not head.startswith("ref: "):
            return head
        ref = head[5:]
        if (git / ref).is_file():
            return (git / ref).read_text().strip()
        packed = (git / "packed-refs").read_text() if (git / "packed-refs").is_file() else ""
        return next((line.split()[0] for line in packed.splitlines() if line.endswith(" " + ref)), None)
    except (OSError, IndexError):
        return None


def _imported(record: Path, package: Path) -> list[str]:
    """The package's source files a step imported (from its record), relative to the package's parent."""
    if not record.is_file():
        return []
    files = [Path(f).resolve() for f in json.loads(record.read_text())]
    return sorted(str(f.relative_to(package.parent.resolve())) for f in files if package.resolve() in f.parents)


def _stale(stamp: dict[str, Any], step: Step, inputs: dict[str, str]) -> str | None:
    """Why a step's stamp does not cover this run (None: it does)."""
    if stamp.get("argv") != step.argv:
        return "its command changed"
    if stamp.get("inputs") != inputs:
        return "an upstream step was redone since this ran"
    source = stamp.get("source") or {}
    if "sha256" not in source:
        return "its stamp predates source versions"
    if source_version(source.get("files", [])) != source["sha256"]:
        return "edgekd code it ran changed since"
    return None


def run_step(step: Step, log: Any = print) -> dict[str, Any]:
    """Run a step unless its stamp says the same command already completed on the same upstream
    outputs with the same edgekd code; returns the stamp."""
    stamp_path = step.out / STAMP
    inputs = {k: v for k, v in upstream(step.argv).items() if k != str(step.out.relative_to(CACHE))}
    if stamp_path.is_file():
        stale = _stale(json.loads(stamp_path.read_text()), step, inputs)
        if stale is None:
            log(f"[{step.name}] cached: {step.command}")
            return json.loads(stamp_path.read_text()) | {"cached": True}
        log(f"[{step.name}] {stale}: running it again")
    log(f"[{step.name}] running: {step.command}")
    record = CACHE / f".imports-{step.name}-{os.getpid()}.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    start = time.perf_counter()
    proc = subprocess.run([sys.executable, "-c", _RUNNER, *step.argv], cwd=ROOT,
                          env=step_env() | {"EDGEKD_BENCH_IMPORTS": str(record)})
    wall = time.perf_counter() - start
    files = _imported(record, PACKAGE)
    record.unlink(missing_ok=True)
    if proc.returncode != 0:
        raise SystemExit(f"benchmark step {step.name} failed (exit {proc.returncode}): {step.command}")
    stamp = {"command": step.command, "argv": step.argv, "inputs": inputs, "wall_time_s": round(wall, 1),
             "finished": time.strftime("%Y-%m-%dT%H:%M:%S"),
             "source": {"sha256": source_version(files), "files": files, "git_commit": git_commit()}}
    step.out.mkdir(parents=True, exist_ok=True)
    stamp_path.write_text(json.dumps(stamp, indent=2) + "\n")
    return stamp | {"cached": False}


def test_texts(n: int, dataset: str = "ag_news") -> list[str]:
    """The first `n` test texts of a dataset in ../shared/data, in file order."""
    from edgekd.data import DataSpec, load_splits

    return list(load_splits(DataSpec(str(DATA / dataset))).test.texts[:n])


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())
