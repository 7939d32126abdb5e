"""The benchmark's pipeline steps on real data, as typed stage configs (`TrainStage`, `ExportStage`, ...:
the configs `edgekd run` builds from a recipe and each verb builds from its flags) run by edgekd's one
step runner, `edgekd.steps.Runner`, with `isolate=True`: each step runs in a Python process of its own
exactly as `edgekd VERB` would, and is cached. A step is skipped while its stamp
(`$CACHE/.steps/<step>.json`; a step's name is its output folder relative to $CACHE) holds the same
config, the same runs of the upstream steps it reads (when one of those is redone, every step that reads
it is redone too) and the same code: the sha256 of every edgekd source file the step's process imported,
plus the package's data files (`edgekd.steps.source_version`). A change to code a step ran reruns it and,
through the upstream rule, every step after it; a change to code it never imported (a serve fix, say,
for a training step) does not. The command recorded in RESULTS.md is the config's equivalent command
line (`Stage.command`), which gives the same config back through the verb's flags (tested)."""

from __future__ import annotations

import json
import os
import shlex
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from edgekd.commands._common import Stage
from edgekd.commands.adapt_vocab import AdaptVocabStage
from edgekd.commands.baseline import BaselineStage
from edgekd.commands.distill import DistillStage
from edgekd.commands.export import ExportStage
from edgekd.commands.prune_vocab import PruneVocabStage
from edgekd.commands.train import TrainStage
from edgekd.commands.verify import VerifyStage
from edgekd.data import DataSpec
from edgekd.steps import Runner, Step
from edgekd.train.common import DistillConfig, TrainConfig

ROOT = Path(__file__).resolve().parents[1]
# Outside the work tree, so that trained models outlive a fresh checkout on the same machine.
CACHE = Path(os.environ.get("EDGEKD_BENCH_CACHE", Path.home() / ".cache" / "edgekd" / "benchmarks"))
DATA = ROOT.parent / "shared" / "data"
BASE = "sentence-transformers/all-MiniLM-L6-v2"


# --- the stage configs the benchmark parts use (the CLI's semantics: --seed seeds data and training) ---


def data(path: str | Path, text_columns: Iterable[str] = ("text",), max_train_samples: int | None = None,
         seed: int = 42) -> DataSpec:
    return DataSpec(str(path), text_columns=list(text_columns), max_train_samples=max_train_samples, seed=seed)


def _train_config(spec: DataSpec, lr: float, epochs: float | str | None = None, **settings: Any) -> TrainConfig:
    return TrainConfig(epochs=None if epochs is None else float(epochs), lr=lr, seed=spec.seed, progress=False,
                       **settings)


def baseline(spec: DataSpec, out: Path) -> BaselineStage:
    return BaselineStage(spec, out)


def train(spec: DataSpec, out: Path, model: str = BASE, diff_attention: str | None = None,
          **settings: Any) -> TrainStage:
    """`edgekd train` (no progress bars); `settings`: TrainConfig fields (epochs, lr, max_length, class_weight, ...)."""
    settings.setdefault("lr", TrainConfig.lr)
    return TrainStage(spec, out, model, _train_config(spec, **settings), diff_attention)


def distill(teacher: Path, spec: DataSpec, students: list[str], out: Path, no_teacher: bool = False,
            max_length: int | None = None, **settings: Any) -> DistillStage:
    """`edgekd distill` (no progress bars); `settings`: TrainConfig fields; max_length None: the teacher's."""
    defaults = DistillConfig()
    settings.setdefault("lr", defaults.train.lr)
    config = DistillConfig(train=_train_config(spec, **settings), use_teacher=not no_teacher)
    return DistillStage(str(teacher), spec, list(students), out, config, max_length=max_length)


def export(model: Path, out: Path, targets: str, spec: DataSpec, int8: bool = True, **options: Any) -> ExportStage:
    """`edgekd export --force` with the dataset as calibration and accuracy-control data; `options`: other
    ExportOptions fields (embedding_bits, ...)."""
    from edgekd.exporters.bundle_writer import ExportOptions

    return ExportStage(Path(model), out, ExportOptions(targets=targets, int8=int8, force=True, **options), spec)


def adapt_vocab(model: str, spec: DataSpec, size: int, out: Path, mlm_epochs: float = 0.0) -> AdaptVocabStage:
    """`edgekd adapt-vocab --force` (with `--mlm-epochs` when given)."""
    from edgekd.train.mlm import MlmConfig

    return AdaptVocabStage(model, spec, size, out, force=True, mlm=MlmConfig(epochs=float(mlm_epochs)))


def prune_vocab(checkpoint: Path, spec: DataSpec, out: Path, min_count: int) -> PruneVocabStage:
    return PruneVocabStage(Path(checkpoint), spec, out, min_count, force=True)


def verify(bundle: Path, data_path: str | Path, out: Path, **config: Any) -> VerifyStage:
    """`edgekd verify --out OUT`; `config`: VerifyConfig fields (teacher, baseline, backends, max_samples)."""
    from edgekd.verify.runner import VerifyConfig

    return VerifyStage(VerifyConfig(bundle=Path(bundle), data=str(data_path), out_dir=out, **config))


# --- steps --------------------------------------------------------------------------------------------


def step(stage: Stage, out: Path, after: Iterable[Step] = ()) -> Step:
    """The step that runs `stage` into `out` (a folder in $CACHE, which is also the step's name), after
    the steps whose outputs it reads."""
    return Step.of(str(out.relative_to(CACHE)), stage, [out], after=[s.name for s in after], rmtree_before=[out])


def out_dir(s: Step) -> Path:
    return s.outputs[0]


def runner() -> Runner:
    return Runner(CACHE, isolate=True, env=step_env(), cwd=ROOT)


def run_step(s: Step, log: Callable[[str], Any] = print) -> dict[str, Any]:
    """Run `s` through the one runner unless its stamp covers it; {command, wall_time_s (of the run that
    made the outputs), cached, source}."""
    done = runner().run(s, log=lambda m: log(m.replace(f"edgekd {shlex.join(s.command)}", command(s))))
    return {"command": command(s), "wall_time_s": done.stamp.get("seconds"), "cached": done.status == "skipped",
            "source": done.stamp.get("source"), "finished": done.stamp.get("finished")}


def command(s: Step) -> str:
    """The step's command as a user in the repository root types it (../shared beside the checkout)."""
    rel = [a.replace(str(DATA.parent), "../shared").replace(str(ROOT) + "/", "") for a in s.command]
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
    spec = data(DATA / dataset)
    c = CACHE / dataset
    teacher_dir = c / "teacher"
    base = step(baseline(spec, c / "baseline"), c / "baseline")
    # The teacher: edgekd train's defaults (lr 5e-5, linear decay) for 3 epochs at max_length 64 (15% of
    # AG News texts are longer; at 128 an epoch costs ~2x on 2 CPU cores).
    teacher = step(train(spec, teacher_dir, epochs=3, lr=5e-5, batch_size=32, max_length=64), teacher_dir)
    no_teacher = step(distill(teacher_dir, spec, ["layers=3"], c / "no_teacher", no_teacher=True, epochs=2),
                      c / "no_teacher", after=[teacher])
    return {"baseline": base, "teacher": teacher, "no_teacher": no_teacher} | students_onward(spec, c, teacher, base, 2)


def students_onward(spec: DataSpec, c: Path, teacher: Step, base: Step, epochs: Any) -> dict[str, Step]:
    """The main benchmark's steps after its teacher and baseline, writing into `c`: both students distilled in
    one step, their bundles and the verify runs (pipeline's, and the Pareto slice's `main_steps`)."""
    teacher_dir, students_dir = out_dir(teacher), c / "students"
    students = step(distill(teacher_dir, spec, ["layers=3", "layers=2"], students_dir, epochs=epochs), students_dir,
                    after=[teacher])
    bundle = step(export(students_dir / "layers-3", c / "bundle", "all", spec), c / "bundle", after=[students])
    # The smallest student, ONNX only: the fastest edgekd model that still keeps >= 99% of the teacher.
    small = step(export(students_dir / "layers-2", c / "bundle-layers-2", "onnx", spec), c / "bundle-layers-2",
                 after=[students])
    # Every artifact of each bundle on the whole test split against the teacher (the 3-layer one with the
    # TF-IDF baseline beside it; the 2-layer one, ONNX only).
    checked = step(verify(c / "bundle", spec.path, c / "verify", teacher=teacher_dir, baseline=out_dir(base),
                          max_samples=0), c / "verify", after=[bundle, teacher, base])
    checked_small = step(verify(c / "bundle-layers-2", spec.path, c / "verify-layers-2", teacher=teacher_dir,
                                backends=["onnx"], max_samples=0), c / "verify-layers-2", after=[small, teacher])
    return {"students": students, "bundle": bundle, "bundle_small": small, "verify": checked,
            "verify_small": checked_small}


def step_env() -> dict[str, str]:
    """The environment of a step: the user's, without the OpenMP wait policy the benchmark process set
    for its own interleaved timings (a step runs and times PyTorch as a user's command would)."""
    env = dict(os.environ)
    if env.pop("EDGEKD_BENCH_SET_OMP_WAIT_POLICY", None):
        env.pop("OMP_WAIT_POLICY", None)
    return env


def test_texts(n: int, dataset: str = "ag_news") -> list[str]:
    """The first `n` test texts of a dataset in ../shared/data, in file order."""
    from edgekd.data import DataSpec, load_splits

    return list(load_splits(DataSpec(str(DATA / dataset))).test.texts[:n])


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


# What the benchmarks' own step runner, before the merge into edgekd.steps, left in each output folder.
OLD_STAMP = "benchmark-step.json"


def stamp(s: Step) -> dict[str, Any] | None:
    """The stamp of the step's last finished run (None: it never finished), current or not. A step that
    finished before the runner merge has only the old runner's stamp in its output folder: that one, its
    wall time as "seconds", so results measured then still publish (a run from this checkout redoes them)."""
    found = runner().stamp(s)
    if found is None and (out_dir(s) / OLD_STAMP).is_file():
        old = read_json(out_dir(s) / OLD_STAMP)
        found = {**old, "seconds": old.get("wall_time_s")}
    return found


def finished(s: Step) -> dict[str, Any] | None:
    """The stamp of the step's finished run when a publish may measure its outputs (`Runner.finished`: this
    config and upstream runs, this edgekd code or an older one), or the old runner's stamp over outputs
    that exist; None when the step never finished or its config or upstream changed since."""
    r = runner()
    found = r.stamp(s)
    if found is not None:
        return found if r.finished(s) else None
    return stamp(s) if all(Path(p).exists() for p in s.outputs) else None


def commit(found: dict[str, Any] | None) -> str | None:
    """The short git commit of the checkout a stamp's step ran in (None: not recorded)."""
    full = ((found or {}).get("source") or {}).get("git_commit")
    return full[:7] if full else None
