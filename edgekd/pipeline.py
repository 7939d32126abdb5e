"""`edgekd run RECIPE`: baseline -> teacher -> students -> export -> verify -> report, resumable.

Each step runs an `edgekd` verb in-process with the flags the recipe gives it, so a pipeline step
and a hand-typed command are the same thing. A finished step leaves a stamp
(`OUT/.steps/<step>.json`) holding a hash of its command line and of its upstream stamps; a step
whose stamp matches and whose outputs exist is skipped, so re-running after a crash resumes where it
stopped, and changing one setting re-runs that step and everything downstream of it only.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError, GateError
from edgekd.recipe import Recipe

STAMP_DIR = ".steps"


@dataclass
class Step:
    """One pipeline step: what it runs, what it writes, what it depends on."""

    name: str  # e.g. "teacher", "distill layers-2"
    run: Callable[[], Any]
    outputs: list[Path]
    key: dict[str, Any]  # everything that determines the outputs (command line, settings)
    after: list[str] = field(default_factory=list)  # upstream step names
    rmtree_before: list[Path] = field(default_factory=list)  # stale outputs to clear before a re-run


def _slug(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "_" for c in name)


def _cli(argv: list[str]) -> Callable[[], Any]:
    def go() -> None:
        from edgekd.cli import main

        code = main(["--debug", *argv])  # --debug: errors propagate with their type (GateError stays 1)
        if code:
            raise EdgekdError(f"'edgekd {' '.join(argv)}' exited {code}")
    return go


def data_flags(recipe: Recipe, prepared: Path) -> list[str]:
    """The data flags every later step gets: the prepared dataset directory (texts already joined,
    labels mapped, splits sampled), so every step sees exactly the same rows."""
    return ["--data", str(prepared), "--seed", str(recipe.data.seed)]


def gate_flags(recipe: Recipe) -> list[str]:
    """The recipe's gate overrides (`verify.gates`) as --gate-* flags: export's post-export check and
    int8 accuracy control read the same gate table as verify."""
    return [arg for precision, metrics in sorted(recipe.verify.gates.items())
            for metric, threshold in sorted(metrics.items())
            for arg in (f"--gate-{precision}-{metric.replace('_', '-')}", str(threshold))]


def training_flags(section: Any) -> list[str]:
    """The teacher's or the students' --epochs (when set), --class-weight, --select-metric, --patience."""
    return [*([] if section.epochs is None else ["--epochs", str(section.epochs)]),
            "--class-weight", section.class_weight, "--select-metric", section.select_metric,
            "--patience", str(section.patience)]


def prepare_data(recipe: Recipe, out: Path) -> dict[str, Any]:
    """Load the recipe's dataset once (text columns, label map, carving, train sampling), sample the
    test split to `max_test_samples` (stratified, fixed seed) and write `out/{train,validation,test}.csv.gz`
    with columns text,label."""
    import csv
    import gzip

    import numpy as np

    from edgekd.data import DataSpec, load_splits

    d = recipe.data
    splits = load_splits(DataSpec(path=d.path, text_columns=d.text_columns, label_column=d.label_column,
                                  label_map=d.label_map, max_train_samples=d.max_train_samples, seed=d.seed))
    out.mkdir(parents=True, exist_ok=True)
    rows = {}
    for name, split in splits.items():
        keep = np.arange(len(split))
        if name == "test" and d.max_test_samples and d.max_test_samples < len(split):
            keep = stratified_sample(split.labels, d.max_test_samples, d.seed)
        with gzip.open(out / f"{name}.csv.gz", "wt", encoding="utf-8", newline="") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows((split.texts[i], splits.labels[split.labels[i]]) for i in keep)
        rows[name] = len(keep)
    return {"rows": rows, "labels": splits.labels, "source": d.path}


def stratified_sample(labels: Any, n: int, seed: int) -> Any:
    """Sorted indices of about `n` rows keeping each class's share (at least one row per class)."""
    import numpy as np

    labels = np.asarray(labels)
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(1, np.floor(counts / counts.sum() * n).astype(int))
    for i in np.argsort(-counts)[: max(0, n - int(quota.sum()))]:
        quota[i] += 1  # hand the rounding remainder to the largest classes
    picked = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota, strict=True)]
    return np.sort(np.concatenate(picked))


def _student_name(spec: str) -> str:
    from edgekd.train.students import parse_student_spec

    return parse_student_spec(spec).name


def plan(recipe: Recipe) -> tuple[list[Step], dict[str, Path]]:
    """The steps of a recipe, in order, and the paths they write (baseline, teacher, students/<name>,
    bundles/<name>, report)."""
    out = Path(recipe.out)
    t, s, e = recipe.teacher, recipe.students, recipe.export
    paths: dict[str, Path] = {"baseline": out / "baseline", "teacher": Path(t.path) if t.path else out / "teacher",
                              "report": out / "report"}
    paths["data"] = out / "data"
    data = data_flags(recipe, paths["data"])
    steps: list[Step] = [Step("data", lambda: prepare_data(recipe, paths["data"]), [paths["data"] / "test.csv.gz"],
                              {"data": recipe.to_dict()["data"]}, rmtree_before=[paths["data"]])]
    if recipe.baseline.enabled:
        argv = ["baseline", *data, "--out", str(paths["baseline"])]
        steps.append(Step("baseline", _cli(argv), [paths["baseline"] / "metrics.json"], {"argv": argv},
                          after=["data"], rmtree_before=[paths["baseline"]]))
    base, teacher_deps = t.model, ["data"]
    if t.vocab_size is not None and not t.path:  # a native vocabulary first: the teacher fine-tunes it
        paths["base"], teacher_deps = out / f"base-vocab{t.vocab_size}", ["adapt-vocab"]
        base, argv = str(paths["base"]), ["adapt-vocab", t.model, *data, "--size", str(t.vocab_size),
                                          "--out", str(paths["base"]), "--force"]
        steps.append(Step("adapt-vocab", _cli(argv), [paths["base"] / "edgekd-model.json"], {"argv": argv},
                          after=["data"], rmtree_before=[paths["base"]]))
    if not t.path:
        argv = ["train", *data, "--model", base, "--out", str(paths["teacher"]), *training_flags(t),
                "--lr", str(t.lr), "--batch-size", str(t.batch_size), "--max-length", str(t.max_length)]
        if t.diff_attention is not None:
            argv += ["--diff-attention", str(t.diff_attention)]
        steps.append(Step("teacher", _cli(argv), [paths["teacher"] / "edgekd-model.json"], {"argv": argv},
                          after=teacher_deps, rmtree_before=[paths["teacher"]]))
    teacher_after = ["data"] if t.path else ["teacher"]
    for spec in s.specs:
        name = _student_name(spec)
        student, bundle = out / "students" / name, out / "bundles" / name
        paths[f"student:{name}"], paths[f"bundle:{name}"] = student, bundle
        argv = ["distill", *data, "--teacher", str(paths["teacher"]), "--student", spec,
                "--out", str(student), *training_flags(s), "--lr", str(s.lr),
                "--batch-size", str(s.batch_size), "--temperature", str(s.temperature), "--alpha", str(s.alpha)]
        steps.append(Step(f"distill {name}", _cli(argv), [student / "edgekd-model.json"], {"argv": argv},
                          after=teacher_after, rmtree_before=[student]))
        exported, export_after = student, f"distill {name}"
        if e.prune_vocab_min_count is not None:  # export (and verify) the pruned checkpoint instead
            exported = out / "students" / f"{name}-vocab{e.prune_vocab_min_count}"
            argv = ["prune-vocab", str(student), *data, "--out", str(exported), "--force",
                    "--min-count", str(e.prune_vocab_min_count)]
            export_after = f"prune-vocab {name}"
            steps.append(Step(export_after, _cli(argv), [exported / "edgekd-model.json"], {"argv": argv},
                              after=[f"distill {name}"], rmtree_before=[exported]))
        paths[f"exported:{name}"] = exported
        argv = ["export", str(exported), "--target", ",".join(e.targets), "--out", str(bundle), "--force",
                *data, "--calibration-size", str(e.calibration_samples), "--coreml-precision", e.coreml_precision,
                *(["--int8"] if e.int8 else []), *(["--require-int8"] if e.require_int8 else []),
                *([] if e.max_accuracy_drop is None else ["--max-accuracy-drop", str(e.max_accuracy_drop)]),
                *gate_flags(recipe)]
        steps.append(Step(f"export {name}", _cli(argv), [bundle / "edgekd.json"], {"argv": argv},
                          after=[export_after]))
        steps.append(Step(f"verify {name}", _verify_step(recipe, bundle, exported, paths), [bundle / "reports"],
                          {"verify": recipe.to_dict()["verify"], "baseline": recipe.baseline.enabled},
                          after=[f"export {name}", *teacher_after, *(["baseline"] if recipe.baseline.enabled else [])]))
    names = [_student_name(x) for x in s.specs]
    steps.append(Step("report", lambda: _report_step(recipe, paths, names), [paths["report"]],
                      {"students": names}, after=[f"verify {n}" for n in names]))
    return steps, paths


def _verify_step(recipe: Recipe, bundle: Path, student: Path, paths: dict[str, Path]) -> Callable[[], Any]:
    def go() -> dict[str, Any]:
        from edgekd.verify import runner
        from edgekd.verify.latency import LatencySettings
        from edgekd.verify.parity import GateSet

        v = recipe.verify
        gates = GateSet()
        for precision, metrics in v.gates.items():
            for metric, threshold in metrics.items():
                gates.override(precision, metric, threshold)
        config = runner.VerifyConfig(
            bundle=bundle, data=str(paths["data"]), teacher=paths["teacher"], student=student,
            baseline=paths["baseline"] if recipe.baseline.enabled else None, backends=v.backends,
            max_samples=v.max_samples, gates=gates, allow_partial=v.allow_partial,
            latency=LatencySettings(runs=v.runs, cold_start=v.cold_start))
        report = runner.verify(config, progress=lambda msg: print(f"verify: {msg}", flush=True))
        runner.write(report, config)
        return report
    return go


def _report_step(recipe: Recipe, paths: dict[str, Path], names: list[str]) -> dict[str, Any]:
    """One report for the whole run: every student's models side by side (teacher and baseline once),
    from THIS device's report of each bundle (`reports/<device-id>.json`), whatever else is there."""
    from edgekd.verify.device import fingerprint
    from edgekd.verify.report import read_report, report_path, write_report

    device = fingerprint()["device_id"]
    reports = []
    for name in names:
        path = report_path(paths[f"bundle:{name}"] / "reports", device)
        if not path.is_file():
            stamp = Path(recipe.out) / STAMP_DIR / f"{_slug(f'verify {name}')}.json"
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


def combine_reports(reports: list[tuple[str, dict[str, Any]]]) -> dict[str, Any]:
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


# --- stamps --------------------------------------------------------------------------------------


def _hash(step: Step, upstream: dict[str, str]) -> str:
    payload = {"key": step.key, "after": {n: upstream.get(n, "") for n in step.after}}
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()


def _stamp_path(out: Path, step: Step) -> Path:
    return out / STAMP_DIR / f"{_slug(step.name)}.json"


def is_up_to_date(out: Path, step: Step, digest: str) -> bool:
    """True when the step's stamp holds `digest` and all its outputs exist."""
    path = _stamp_path(out, step)
    if not path.is_file() or not all(p.exists() for p in step.outputs):
        return False
    try:
        return json.loads(path.read_text()).get("hash") == digest
    except json.JSONDecodeError:
        return False


def _write_stamp(out: Path, step: Step, digest: str, seconds: float) -> None:
    path = _stamp_path(out, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps({"step": step.name, "hash": digest, "seconds": round(seconds, 2),
                               "finished": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                               "key": step.key}, indent=2, default=str))
    tmp.replace(path)


@dataclass
class StepResult:
    name: str
    status: str  # "ran" | "skipped" | "failed"
    seconds: float
    detail: str = ""


def execute(recipe: Recipe, console: Any = None, force: bool = False,
            results: list[StepResult] | None = None) -> tuple[list[StepResult], dict[str, Any] | None]:
    """Run the recipe's steps in order, skipping up-to-date ones. A failed gate does not stop the
    run (the report is still written); it is raised as GateError at the end. Any other error stops
    the run at once, leaving the finished steps stamped. `results` (when given) is filled as the
    steps finish, so a caller can show them after an error."""
    from edgekd.console import make_console, rule

    console = console or make_console()
    out = Path(recipe.out)
    steps, _ = plan(recipe)
    digests: dict[str, str] = {}
    results = [] if results is None else results
    final: dict[str, Any] | None = None
    for i, step in enumerate(steps, 1):
        digest = digests[step.name] = _hash(step, digests)
        header = f"[{i}/{len(steps)}] {step.name}"
        if not force and is_up_to_date(out, step, digest):
            console.print(f"[dim]{header}: up to date, skipped[/]")
            results.append(StepResult(step.name, "skipped", 0.0))
            value = _load_report(step)
        else:
            rule(console, header)
            for stale in step.rmtree_before:
                if stale.exists() and stale.resolve().is_relative_to(out.resolve()):
                    shutil.rmtree(stale)
            t0 = time.perf_counter()
            try:
                value = step.run()
            except BaseException:
                results.append(StepResult(step.name, "failed", time.perf_counter() - t0))
                raise
            seconds = time.perf_counter() - t0
            _write_stamp(out, step, digest, seconds)
            results.append(StepResult(step.name, "ran", seconds))
        if step.name == "report":
            final = value
    return results, final


def _load_report(step: Step) -> dict[str, Any] | None:
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


def raise_on_gates(report: dict[str, Any] | None) -> None:
    """GateError when the final report has failed gates."""
    if report is not None and not report["passed"]:
        from edgekd.verify.parity import raise_on_failures

        raise_on_failures(report["gates"])
    if report is None:
        raise GateError("the run produced no report; re-run it")
