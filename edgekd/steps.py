"""The one step runner: every step of `edgekd run` (`pipeline.plan`) and of the benchmarks (`benchmarks/`)
is a `Step`, most of them a verb's typed stage config (`TrainStage`, `ExportStage`, ...; `Step.of`), and
`Runner` runs them.

A finished step leaves a stamp (`ROOT/.steps/<step>.json`) holding its config (`Step.key`), the run ids of
the upstream steps it read (`Step.after`) and a run id of its own. A step is skipped while its stamp
holds the same config and the same upstream run ids and its outputs exist: re-running after a crash
resumes where it stopped; changing one setting re-runs that step and, since it then gets a new run id,
every step downstream of it; a step whose upstream was redone (another seed's model, a forced re-run) is
redone too, even when its own config did not change.

With `isolate=True` (the benchmarks) each stage runs in its own Python process exactly as `edgekd VERB`
would (the CLI's quieting and one-line errors; the environment `env`), the process records which edgekd
source files it imported, and the stamp holds their sha256 (`source_version`): a step is also re-run when
the edgekd code it ran changed, and not when code it never imported did (a serve fix does not retrain a
teacher). In-process (`edgekd run`) a stamp does not cover the code: `edgekd run --force` re-runs after an
upgrade. Torch-free: the stages import what they need when they run.
"""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterable
from contextlib import AbstractContextManager, nullcontext
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from edgekd.commands._common import Stage

STAMP_DIR = ".steps"
PACKAGE = Path(__file__).resolve().parent
# stale() reasons that leave a step's outputs what its config and upstream runs make, only under older
# edgekd code (the stamp's `source` records the commit it ran at): `finished()` accepts them, a run redoes them.
CODE_REASONS = ("its stamp predates source versions", "edgekd code it ran changed since")
# The child process of an isolated step: runs the pickled stage as `edgekd VERB` would, then records (at
# exit, so lazy imports count) which edgekd source files the process imported.
_CHILD = "import sys; from edgekd.steps import _child; sys.exit(_child(sys.argv[1], sys.argv[2]))"


@dataclass
class Step:
    """One step: what it runs, what it writes, what it depends on."""

    name: str  # e.g. "teacher", "distill layers-2"; unique within a Runner's stamps
    run: Callable[[], Any]
    outputs: list[Path]
    key: dict[str, Any]  # everything that determines the outputs: a stage's config as JSON, or settings
    after: list[str] = field(default_factory=list)  # upstream step names (their stamps in the same Runner)
    rmtree_before: list[Path] = field(default_factory=list)  # stale outputs to clear before a re-run
    command: list[str] = field(default_factory=list)  # the equivalent `edgekd` command, for people only
    verb: str | None = None  # the verb whose stage runs (None: a function step)
    stage: Stage | None = None  # the typed config `run` runs (what an isolated step sends to its process)

    @classmethod
    def of(cls, name: str, stage: Stage, outputs: list[Path], after: Iterable[str] = (),
           rmtree_before: Iterable[Path] = ()) -> Step:
        """The step that runs `stage` (its verb's `run_stage`): errors keep their type (GateError stays 1)."""
        return cls(name, stage.run, list(outputs), stage.key(), list(after), list(rmtree_before),
                   command=stage.command(), verb=stage.VERB, stage=stage)


@dataclass
class StepResult:
    name: str
    status: str  # "ran" | "skipped" | "failed"
    seconds: float
    detail: str = ""
    stamp: dict[str, Any] = field(default_factory=dict)  # the step's stamp (ran or skipped)
    value: Any = None  # what the step returned (in-process runs only)


def slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


@dataclass
class Runner:
    """Runs steps and keeps their stamps in `root/.steps/`; see the module docstring."""

    root: Path
    isolate: bool = False  # each stage step in its own process, stamps versioned by the code it imported
    env: dict[str, str] | None = None  # an isolated step's environment (None: this process's)
    cwd: Path | None = None  # an isolated step's working directory
    around: Callable[[Step], AbstractContextManager[Any]] | None = None  # context of an in-process run

    def stamp_path(self, step: Step | str) -> Path:
        return Path(self.root) / STAMP_DIR / f"{slug(step if isinstance(step, str) else step.name)}.json"

    def stamp(self, step: Step | str) -> dict[str, Any] | None:
        """The step's stamp, None when there is none (or it is unreadable)."""
        path = self.stamp_path(step)
        try:
            return json.loads(path.read_text()) if path.is_file() else None
        except (OSError, json.JSONDecodeError):
            return None

    def _upstream(self, step: Step) -> dict[str, str]:
        """{upstream step: its run id} ("" for one that has not run)."""
        return {name: (self.stamp(name) or {}).get("run", "") for name in step.after}

    def digest(self, step: Step) -> str:
        payload = {"key": step.key, "after": self._upstream(step)}
        return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()

    def stale(self, step: Step) -> str | None:
        """Why the step must run (None: its stamp covers it)."""
        stamp = self.stamp(step)
        if stamp is None:
            return "not run yet"
        if not all(Path(p).exists() for p in step.outputs):
            return "an output is missing"
        if stamp.get("hash") != self.digest(step):
            if json.dumps(stamp.get("key"), sort_keys=True, default=str) != json.dumps(step.key, sort_keys=True,
                                                                                        default=str):
                return "its config changed"
            if "run" not in stamp:
                return "its stamp is from an older edgekd"
            return "an upstream step was redone since this ran"
        if self.isolate and step.stage is not None:
            source = stamp.get("source") or {}
            if "sha256" not in source:
                return CODE_REASONS[0]
            if source_version(source.get("files", [])) != source["sha256"]:
                return CODE_REASONS[1]
        return None

    def finished(self, step: Step) -> bool:
        """Whether the step's outputs are those of its config and upstream runs, made by this edgekd code or
        an older one (its stamp records which): what a benchmark may measure and publish without a re-run."""
        return self.stale(step) in (None, *CODE_REASONS)

    def statuses(self, steps: list[Step]) -> dict[str, str | None]:
        """`stale()` of each step as a run in this order would find it: a step downstream of one that
        runs runs too (that one gets a new run id)."""
        found: dict[str, str | None] = {}
        for step in steps:
            reason = self.stale(step)
            if reason is None and any(found.get(up) is not None for up in step.after):
                reason = "an upstream step runs first"
            found[step.name] = reason
        return found

    def run(self, step: Step, force: bool = False, log: Callable[[str], Any] | None = None) -> StepResult:
        """Run `step` unless its stamp covers it (or `force`); write the stamp when it finishes. An error
        propagates (an isolated step's as SystemExit naming the command) and leaves no stamp."""
        reason = "forced" if force else self.stale(step)
        if reason is None:
            if log:
                log(f"[{step.name}] up to date: {_command(step)}")
            return StepResult(step.name, "skipped", 0.0, stamp=self.stamp(step) or {})
        if log:
            log(f"[{step.name}] {reason}: running {_command(step)}")
        # No stamp while it runs: a run that dies part way must not leave an earlier run's stamp over
        # outputs it has begun to rewrite.
        self.stamp_path(step).unlink(missing_ok=True)
        root = Path(self.root).resolve()
        for stale in step.rmtree_before:
            if stale.exists() and stale.resolve().is_relative_to(root):
                shutil.rmtree(stale)
        upstream = self._upstream(step)
        t0 = time.perf_counter()
        source = None
        if self.isolate and step.stage is not None:
            source, value = self._run_isolated(step), None
        else:
            with self.around(step) if self.around else nullcontext():
                value = step.run()
        seconds = time.perf_counter() - t0
        stamp = {"step": step.name, "hash": self.digest(step), "run": uuid.uuid4().hex, "after": upstream,
                 "seconds": round(seconds, 2), "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                 "key": step.key, **({"command": _command(step)} if step.command else {}),
                 **({"source": source} if source is not None else {})}
        path = self.stamp_path(step)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_suffix(".tmp")
        tmp.write_text(json.dumps(stamp, indent=2, default=str) + "\n")
        tmp.replace(path)
        return StepResult(step.name, "ran", seconds, stamp=stamp, value=value)

    def _run_isolated(self, step: Step) -> dict[str, Any]:
        """Run the step's stage in a fresh `python` process; the source record of what it imported."""
        work = Path(self.root) / STAMP_DIR
        work.mkdir(parents=True, exist_ok=True)
        base = work / f".{slug(step.name)}.{os.getpid()}"
        payload, record = base.with_suffix(".stage"), base.with_suffix(".imports")
        payload.write_bytes(pickle.dumps(step.stage))
        try:
            proc = subprocess.run([sys.executable, "-c", _CHILD, str(payload), str(record)],
                                  cwd=self.cwd, env=self.env if self.env is not None else dict(os.environ))
            files = imported(record)
        finally:
            payload.unlink(missing_ok=True)
            record.unlink(missing_ok=True)
        if proc.returncode != 0:
            raise SystemExit(f"step {step.name} failed (exit {proc.returncode}): {_command(step)}")
        return {"sha256": source_version(files), "files": files, "git_commit": git_commit(PACKAGE.parent)}


def _command(step: Step) -> str:
    import shlex

    return "edgekd " + shlex.join(step.command) if step.command else step.name


def _child(payload: str, record: str) -> int:
    """An isolated step's process: the stage from `payload`, run as `edgekd VERB` runs it (see
    `cli.run_verb`); at exit the edgekd source files it imported go to `record` (JSON list)."""
    import atexit

    def write_record() -> None:
        files = {getattr(m, "__file__", None) for n, m in list(sys.modules.items()) if n.split(".")[0] == "edgekd"}
        Path(record).write_text(json.dumps(sorted(f for f in files if f)))

    atexit.register(write_record)
    from edgekd.cli import run_verb

    stage = pickle.loads(Path(payload).read_bytes())
    return run_verb(stage.VERB, stage.run)


def imported(record: Path, package: Path | None = None) -> list[str]:
    """The package's source files a process imported (from its record), relative to the package's parent,
    less this runner module: the child imports it to start the stage, and a change to how steps are run
    and stamped does not change what a stage computes (it would otherwise redo every cached step)."""
    package = (package or PACKAGE).resolve()
    if not Path(record).is_file():
        return []
    runner = Path(__file__).resolve()
    files = [Path(f).resolve() for f in json.loads(Path(record).read_text())]
    return sorted(str(f.relative_to(package.parent)) for f in files if package in f.parents and f != runner)


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


def git_commit(root: Path) -> str | None:
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
        common = Path(git / "commondir").read_text().strip() if (git / "commondir").is_file() else None
        base = (git / common).resolve() if common else git
        if (base / ref).is_file():
            return (base / ref).read_text().strip()
        packed = (base / "packed-refs").read_text() if (base / "packed-refs").is_file() else ""
        return next((line.split()[0] for line in packed.splitlines() if line.endswith(" " + ref)), None)
    except (OSError, IndexError):
        return None
