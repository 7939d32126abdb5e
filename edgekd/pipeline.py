"""`edgekd run RECIPE`: baseline -> teacher -> students -> export -> verify -> report, resumable.

Each step calls a verb's stage function (`run_stage` in `edgekd/commands/<verb>.py`) with the typed
config the recipe gives it (`TrainStage`, `DistillStage`, `ExportStage`, `VerifyStage`, ...), the same
config the verb's flags build, so a pipeline step and a hand-typed command are the same thing; the
equivalent command line is recorded for people (`Step.command`), never parsed. The steps run through
`edgekd.steps.Runner` (the benchmarks' runner too), stamped in `OUT/.steps/<step>.json`: a step whose
stamp matches and whose outputs exist is skipped, so re-running after a crash resumes where it stopped,
and changing one setting re-runs that step and everything downstream of it only.
"""

from __future__ import annotations

import shutil
from collections.abc import Callable
from contextlib import AbstractContextManager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.checkpoint import CARD
from edgekd.commands import adapt_vocab, baseline, distill, export, prune_vocab, train, verify
from edgekd.commands._common import gates_from_table
from edgekd.data import DataSpec, Splits
from edgekd.errors import EdgekdError, GateError
from edgekd.recipe import Recipe, StudentsConfig, TeacherConfig
from edgekd.steps import STAMP_DIR, Runner, Step, StepResult, slug
from edgekd.train.mlm import MlmConfig

if TYPE_CHECKING:
    from rich.console import Console

    from edgekd.train.common import TrainConfig

Report = dict[str, Any]  # a verification report (edgekd/verify/report.py's schema)
__all__ = ["Step", "StepResult", "execute", "plan", "raise_on_gates"]


def data_spec(recipe: Recipe, prepared: Path) -> DataSpec:
    """The dataset every later step reads: the prepared directory (texts already joined, labels mapped,
    splits sampled), so every step sees exactly the same rows."""
    return DataSpec(path=str(prepared), seed=recipe.data.seed)


def train_config(section: TeacherConfig | StudentsConfig, recipe: Recipe) -> TrainConfig:
    """The teacher's or the students' optimisation settings (max_length: the teacher's own; students
    take the teacher's, see `DistillStage.max_length`)."""
    from edgekd.train.common import TrainConfig

    extra = {"max_length": section.max_length} if isinstance(section, TeacherConfig) else {}
    return TrainConfig(epochs=section.epochs, lr=section.lr, embedding_lr=section.embedding_lr,
                       batch_size=section.batch_size, seed=recipe.data.seed,
                       class_weight=section.class_weight, select_metric=section.select_metric,
                       patience=section.patience, **extra)


def prepare_data(recipe: Recipe, out: Path) -> dict[str, Any]:
    """Load the recipe's dataset once (text columns, label map, carving, train sampling), sample the
    test split to `max_test_samples` (stratified, fixed seed) and write `out/{train,validation,test}.csv.gz`
    with columns text,label."""
    import csv
    import gzip

    from edgekd.data import load_splits, stratified_sample

    d = recipe.data
    splits: Splits = load_splits(DataSpec(path=d.path, text_columns=d.text_columns, label_column=d.label_column,
                                          label_map=d.label_map, max_train_samples=d.max_train_samples, seed=d.seed))
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name, split in splits.items():
        keep = np.arange(len(split))
        if name == "test" and d.max_test_samples and d.max_test_samples < len(split):
            keep = stratified_sample(split.labels, d.max_test_samples, d.seed, method="quota")
        with gzip.open(out / f"{name}.csv.gz", "wt", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows((split.texts[i], splits.labels[split.labels[i]]) for i in keep)
        rows[name] = len(keep)
    return {"rows": rows, "labels": splits.labels, "source": d.path}


def _student_name(spec: str) -> str:
    from edgekd.train.students import parse_student_spec

    return parse_student_spec(spec).name


def plan(recipe: Recipe) -> tuple[list[Step], dict[str, Path]]:
    """The steps of a recipe, in order, and the paths they write (baseline, teacher, students/<name>,
    bundles/<name>, report)."""
    from edgekd.exporters.bundle_writer import ExportOptions
    from edgekd.train.common import DistillConfig

    out = Path(recipe.out)
    t, s, e = recipe.teacher, recipe.students, recipe.export
    paths: dict[str, Path] = {"baseline": out / "baseline", "teacher": Path(t.path) if t.path else out / "teacher",
                              "report": out / "report"}
    paths["data"] = out / "data"
    data = data_spec(recipe, paths["data"])
    steps: list[Step] = [Step("data", lambda: prepare_data(recipe, paths["data"]), [paths["data"] / "test.csv.gz"],
                              {"data": recipe.to_dict()["data"]}, rmtree_before=[paths["data"]])]
    if recipe.baseline.enabled:
        steps.append(Step.of("baseline", baseline.BaselineStage(data, paths["baseline"]),
                             [paths["baseline"] / "metrics.json"], ["data"], [paths["baseline"]]))
    base, teacher_deps = t.model, ["data"]
    if t.vocab_size is not None and not t.path:  # a native vocabulary first: the teacher fine-tunes it
        paths["base"], teacher_deps = out / f"base-vocab{t.vocab_size}", ["adapt-vocab"]
        base = str(paths["base"])
        mlm = (MlmConfig(epochs=float(t.mlm_epochs), max_length=t.max_length, batch_size=t.batch_size)
               if t.mlm_epochs else MlmConfig())  # off: the teacher's settings do not touch this step's key
        stage = adapt_vocab.AdaptVocabStage(t.model, data, t.vocab_size, paths["base"], force=True, mlm=mlm)
        steps.append(Step.of("adapt-vocab", stage, [paths["base"] / CARD],
                             ["data"], [paths["base"]]))
    if not t.path:
        stage = train.TrainStage(data, paths["teacher"], base, train_config(t, recipe),
                                 None if t.diff_attention is None else str(t.diff_attention))
        steps.append(Step.of("teacher", stage, [paths["teacher"] / CARD],
                             teacher_deps, [paths["teacher"]]))
    teacher_after = ["data"] if t.path else ["teacher"]
    gates = gates_from_table(recipe.verify.gates)
    for spec in s.specs:
        name = _student_name(spec)
        student, bundle = out / "students" / name, out / "bundles" / name
        paths[f"student:{name}"], paths[f"bundle:{name}"] = student, bundle
        config = DistillConfig(train=train_config(s, recipe), temperature=s.temperature, alpha=s.alpha)
        stage = distill.DistillStage(str(paths["teacher"]), data, [spec], student, config)
        steps.append(Step.of(f"distill {name}", stage, [student / CARD],
                             teacher_after, [student]))
        exported, export_after = student, f"distill {name}"
        if e.prune_vocab_min_count is not None:  # export (and verify) the pruned checkpoint instead
            exported = out / "students" / f"{name}-vocab{e.prune_vocab_min_count}"
            export_after = f"prune-vocab {name}"
            stage = prune_vocab.PruneVocabStage(student, data, exported, e.prune_vocab_min_count, force=True)
            steps.append(Step.of(export_after, stage, [exported / CARD],
                                 [f"distill {name}"], [exported]))
        paths[f"exported:{name}"] = exported
        # targets as `--target` gives them (a comma list), so the config equals the command's
        options = ExportOptions(targets=",".join(e.targets), int8=e.int8, require_int8=e.require_int8,
                                calibration_size=e.calibration_size, gates=gates.copy(),
                                max_accuracy_drop=e.max_accuracy_drop, coreml_precision=e.coreml_precision,
                                embedding_bits=e.embedding_bits, trim_positions=e.trim_positions, force=True)
        steps.append(Step.of(f"export {name}", export.ExportStage(exported, bundle, options, data),
                             [bundle / "edgekd.json"], [export_after]))
        steps.append(Step.of(f"verify {name}", verify_stage(recipe, bundle, exported, paths), [bundle / "reports"],
                             [f"export {name}", *teacher_after, *(["baseline"] if recipe.baseline.enabled else [])]))
    names = [_student_name(x) for x in s.specs]
    steps.append(Step("report", lambda: _report_step(recipe, paths, names), [paths["report"]],
                      {"students": names}, after=[f"verify {n}" for n in names]))
    return steps, paths


def verify_stage(recipe: Recipe, bundle: Path, student: Path, paths: dict[str, Path]) -> verify.VerifyStage:
    """The verify step's config: the bundle against the run's teacher, student and baseline on the
    prepared test split, with the recipe's verify settings."""
    from edgekd.verify import runner
    from edgekd.verify.latency import LatencySettings

    v = recipe.verify
    return verify.VerifyStage(runner.VerifyConfig(
        bundle=bundle, data=str(paths["data"]), teacher=paths["teacher"], student=student,
        baseline=paths["baseline"] if recipe.baseline.enabled else None, backends=v.backends,
        max_samples=v.max_samples, gates=gates_from_table(v.gates), allow_partial=v.allow_partial,
        latency=LatencySettings(runs=v.runs, cold_start=v.cold_start)))


def _report_step(recipe: Recipe, paths: dict[str, Path], names: list[str]) -> Report:
    """One report for the whole run: every student's models side by side (teacher and baseline once),
    from THIS device's report of each bundle (`reports/<device-id>.json`), whatever else is there."""
    from edgekd.verify.device import fingerprint
    from edgekd.verify.report import read_report, report_path, write_report

    device = fingerprint()["device_id"]
    reports = []
    for name in names:
        path = report_path(paths[f"bundle:{name}"] / "reports", device)
        if not path.is_file():
            stamp = Path(recipe.out) / STAMP_DIR / f"{slug(f'verify {name}')}.json"
            raise EdgekdError(f"no verification report of this device ({device}) for student {name} at {path}; "
                              f"re-run its verify step: rm {stamp} && edgekd run {recipe.source}")
        reports.append((name, read_report(path)))
    combined = combine_reports(reports)
    combined["skipped"] = [{**s, "artifact": (f"{name}/" if len(reports) > 1 else "") + s["artifact"]}
                           for name, report in reports for s in report.get("skipped", [])]
    if paths["report"].exists():
        shutil.rmtree(paths["report"])
    write_report(combined, paths["report"])
    return combined


def combine_reports(reports: list[tuple[str, Report]]) -> Report:
    """One report from per-student reports of the same device: shared models (baseline, teacher) once,
    student models prefixed with the student name when there are several students."""
    first = reports[0][1]
    combined = {**first, "models": [], "gates": [], "notes": [], "bundle": dict(first["bundle"])}
    seen: set[str] = set()
    for student, report in reports:
        prefix = f"{student}/" if len(reports) > 1 else ""
        for m in report["models"]:
            if m["kind"] in ("baseline", "teacher"):
                if m["name"] not in seen:
                    combined["models"].append(m)
                    seen.add(m["name"])
                continue
            combined["models"].append({**m, "name": prefix + m["name"]})
        combined["gates"] += [{**g, "artifact": prefix + g["artifact"]} for g in report["gates"]]
        combined["notes"] += [prefix + n for n in report.get("notes", [])]
    combined["bundle"]["path"] = ", ".join(r["bundle"]["path"] for _, r in reports)
    combined["passed"] = all(r["passed"] for _, r in reports)
    return combined


def execute(recipe: Recipe, console: Console | None = None, force: bool = False,
            results: list[StepResult] | None = None,
            around: Callable[[Step], AbstractContextManager[Any]] | None = None) -> tuple[list[StepResult], Report | None]:
    """Run the recipe's steps in order, skipping up-to-date ones. A failed gate does not stop the
    run (the report is still written); it is raised as GateError at the end. Any other error stops
    the run at once, leaving the finished steps stamped. `results` (when given) is filled as the
    steps finish, so a caller can show them after an error. `around(step)` (when given) is a context
    each step that runs runs inside (the CLI's per-verb quieting of the libraries)."""
    import time

    from edgekd.console import make_console, rule

    console = console or make_console()
    runner = Runner(Path(recipe.out), around=around)
    steps, _ = plan(recipe)
    results = [] if results is None else results
    final: Report | None = None
    for i, step in enumerate(steps, 1):
        header = f"[{i}/{len(steps)}] {step.name}"
        if not force and runner.stale(step) is None:
            console.print(f"[dim]{header}: up to date, skipped[/]")
            results.append(StepResult(step.name, "skipped", 0.0))
            value = _load_report(step)
        else:
            rule(console, header)
            t0 = time.perf_counter()
            try:
                done = runner.run(step, force=True)
            except BaseException:
                results.append(StepResult(step.name, "failed", time.perf_counter() - t0))
                raise
            results.append(done)
            value = done.value
        if step.name == "report":
            final = value
    return results, final


def _load_report(step: Step) -> Report | None:
    """THIS device's report that a skipped verify/report step wrote earlier (for the summary and the
    gates); another device's report in the same folder is never used."""
    if not (step.name.startswith("verify") or step.name == "report"):
        return None
    from edgekd.verify.report import read_report, report_path

    path = report_path(step.outputs[0])
    if path.is_file():
        return read_report(path)
    if step.name == "report":  # stamped by a run on another device (a copied or shared out folder)
        raise EdgekdError(f"{step.outputs[0]} holds no report of this device ({path.stem}); re-run the verify "
                          f"and report steps here: rm {step.outputs[0].parent / STAMP_DIR}/verify*.json "
                          f"{step.outputs[0].parent / STAMP_DIR}/report.json and run again")
    return None


def raise_on_gates(report: Report | None) -> None:
    """GateError when the final report has failed gates."""
    if report is not None and not report["passed"]:
        from edgekd.verify.parity import raise_on_failures

        raise_on_failures(report["gates"])
    if report is None:
        raise GateError("the run produced no report; re-run it")
