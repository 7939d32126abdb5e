"""`edgekd run`: the plan a recipe gives, step stamps (skip, resume after a crash, re-run downstream
of a change), and combining per-student reports."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import pytest

from edgekd import pipeline
from edgekd.errors import EdgekdError, GateError
from edgekd.recipe import load_recipe, parse_recipe
from tests.test_report import make_report

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_demo_plan_steps_and_flags() -> None:
    recipe = load_recipe(RECIPES / "demo.yaml", ["out=/tmp/edgekd-demo-plan"])
    steps, paths = pipeline.plan(recipe)
    assert [s.name for s in steps] == ["data", "baseline", "teacher", "distill layers-2", "export layers-2",
                                       "verify layers-2", "report"]
    by = {s.name: s for s in steps}
    assert by["data"].key["data"]["max_train_samples"] == 1500 and by["data"].key["data"]["max_test_samples"] == 1000
    train = by["teacher"].command  # the equivalent command line (the key is the stage config)
    assert train[0] == "train" and train[train.index("--max-length") + 1] == "64"
    assert train[train.index("--data") + 1] == str(paths["data"])  # every step reads the prepared slice
    export = by["export layers-2"].command
    assert export[export.index("--target") + 1] == "onnx,openvino,coreml" and "--int8" in export
    assert export[1] == str(paths["student:layers-2"])
    assert by["verify layers-2"].after == ["export layers-2", "teacher", "baseline"]


def test_existing_teacher_skips_training(tmp_path: Path) -> None:
    recipe = parse_recipe({"out": str(tmp_path), "data": {"path": "d"}, "teacher": {"path": "/models/t"},
                           "baseline": {"enabled": False}, "students": {"specs": ["layers=1", "layers=2"]}})
    steps, paths = pipeline.plan(recipe)
    assert [s.name for s in steps][:3] == ["data", "distill layers-1", "export layers-1"]
    assert paths["teacher"] == Path("/models/t") and steps[1].after == ["data"]
    assert steps[-1].after == ["verify layers-1", "verify layers-2"]


def _fake_plan(out: Path, log: list[str], key_b: str = "1", fail: str = "") -> list[pipeline.Step]:
    def make(name: str) -> pipeline.Step:
        def run() -> None:
            log.append(name)
            if name == fail:
                raise EdgekdError(f"{name} crashed")
            (out / name).write_text("done")
        key = {"v": key_b if name == "b" else "1"}
        return pipeline.Step(name, run, [out / name], key, after=[] if name == "a" else [chr(ord(name) - 1)])
    return [make(n) for n in "abc"]


def test_stamps_skip_resume_and_rerun_downstream(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    recipe = parse_recipe({"out": str(tmp_path), "data": {"path": "d"}})
    log: list[str] = []
    state = {"key_b": "1", "fail": "b"}
    monkeypatch.setattr(pipeline, "plan", lambda r: (_fake_plan(tmp_path, log, state["key_b"], state["fail"]), {}))
    results: list[pipeline.StepResult] = []
    with pytest.raises(EdgekdError, match="b crashed"):
        pipeline.execute(recipe, results=results)
    assert log == ["a", "b"] and [(r.name, r.status) for r in results] == [("a", "ran"), ("b", "failed")]
    state["fail"] = ""
    log.clear()
    results, _ = pipeline.execute(recipe)  # resume: a is up to date
    assert log == ["b", "c"] and [r.status for r in results] == ["skipped", "ran", "ran"]
    log.clear()
    pipeline.execute(recipe)
    assert log == []  # everything up to date
    state["key_b"] = "2"  # a setting of b changed: b and c (downstream) re-run, a does not
    pipeline.execute(recipe)
    assert log == ["b", "c"]
    log.clear()
    (tmp_path / "c").unlink()  # a lost output re-runs its step only
    pipeline.execute(recipe)
    assert log == ["c"]
    log.clear()
    pipeline.execute(recipe, force=True)
    assert log == ["a", "b", "c"]


def test_stratified_sample_keeps_class_shares() -> None:
    from edgekd.data import stratified_sample

    labels = [0] * 60 + [1] * 30 + [2] * 10
    idx = stratified_sample(labels, 20, seed=1, method="quota")  # the pipeline's max_test_samples
    picked = [labels[i] for i in idx]
    assert len(idx) == 20 and list(idx) == sorted(idx)
    assert (picked.count(0), picked.count(1), picked.count(2)) == (12, 6, 2)
    assert list(stratified_sample(labels, 20, seed=1, method="quota")) == list(idx)  # fixed seed


def test_combine_reports_of_two_students() -> None:
    one = make_report()
    two = copy.deepcopy(one)
    two["bundle"]["path"] = "runs/b2"
    two["passed"] = False
    two["gates"][0]["passed"] = False
    combined = pipeline.combine_reports([("layers-3", one), ("layers-2", two)])
    names = [m["name"] for m in combined["models"]]
    assert names == ["teacher", "layers-3/student-torch", "layers-3/onnx-int8", "layers-2/student-torch",
                     "layers-2/onnx-int8"]
    assert [g["artifact"] for g in combined["gates"]][::2] == ["layers-3/onnx-int8", "layers-2/onnx-int8"]
    assert combined["passed"] is False and combined["bundle"]["path"] == "runs/b, runs/b2"
    from edgekd.verify.report import validate

    validate(combined)
    single = pipeline.combine_reports([("layers-3", one)])
    assert [m["name"] for m in single["models"]] == ["teacher", "student-torch", "onnx-int8"]


# Another device whose report file sorts after this device's (linux-..., darwin-..., windows-...).
OTHER_DEVICE = "zzzz-arm64-other-device-0123abcd"


def _other_device_report(folder: Path, passes: bool) -> None:
    """Another device's report in `folder`, which sorts after this device's."""
    folder.mkdir(parents=True, exist_ok=True)
    other = make_report(int8_agreement=0.995 if passes else 0.9)
    other["device"]["device_id"] = OTHER_DEVICE
    (folder / f"{OTHER_DEVICE}.json").write_text(json.dumps(other))
    assert sorted(folder.glob("*.json"))[-1].name == f"{OTHER_DEVICE}.json"


@pytest.mark.parametrize("this_passes", [True, False])
def test_run_gates_on_this_devices_report(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, this_passes: bool) -> None:
    recipe = parse_recipe({"out": str(tmp_path), "data": {"path": "d"}})
    paths = {"bundle:layers-1": tmp_path / "bundles" / "layers-1", "report": tmp_path / "report"}
    mine = make_report(int8_agreement=0.995 if this_passes else 0.9)
    mine["skipped"] = [{"artifact": "openvino-int8", "backend": "openvino", "reason": "filtered out"}]
    reports = paths["bundle:layers-1"] / "reports"
    reports.mkdir(parents=True)
    (reports / f"{mine['device']['device_id']}.json").write_text(json.dumps(mine))
    _other_device_report(reports, passes=not this_passes)
    step = pipeline.Step("report", lambda: pipeline._report_step(recipe, paths, ["layers-1"]), [paths["report"]],
                         {"students": ["layers-1"]})
    monkeypatch.setattr(pipeline, "plan", lambda r: ([step], paths))
    for status in ("ran", "skipped"):  # the report step, then a re-run that loads the report it stamped
        results, final = pipeline.execute(recipe)
        assert [r.status for r in results] == [status]
        assert final["device"]["device_id"] == mine["device"]["device_id"] and final["passed"] is this_passes
        assert final["skipped"] == mine["skipped"]
        if this_passes:
            pipeline.raise_on_gates(final)
        else:
            with pytest.raises(GateError, match="onnx-int8 agreement=0.9"):
                pipeline.raise_on_gates(final)
        _other_device_report(paths["report"], passes=not this_passes)  # beside the run report just written


def test_report_step_needs_this_devices_report(tmp_path: Path) -> None:
    recipe = parse_recipe({"out": str(tmp_path), "data": {"path": "d"}})
    _other_device_report(tmp_path / "bundles" / "layers-1" / "reports", passes=True)
    paths = {"bundle:layers-1": tmp_path / "bundles" / "layers-1", "report": tmp_path / "report"}
    with pytest.raises(EdgekdError, match=r"no verification report of this device .* rm .*verify_layers-1\.json"):
        pipeline._report_step(recipe, paths, ["layers-1"])


def test_verify_step_passes_allow_partial(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.verify import runner

    assert parse_recipe({"data": {"path": "d"}}).verify.allow_partial is False
    recipe = parse_recipe({"out": str(tmp_path), "data": {"path": "d"},
                           "verify": {"allow_partial": True, "backends": ["onnx"]}})
    seen = {}

    def fake_verify(config: runner.VerifyConfig, progress: object = None) -> dict:
        seen["config"] = config
        raise EdgekdError("stop before any model loads")

    monkeypatch.setattr(runner, "verify", fake_verify)
    paths = {"data": tmp_path / "data", "teacher": tmp_path / "teacher", "baseline": tmp_path / "baseline"}
    with pytest.raises(EdgekdError, match="stop"):
        pipeline.verify_stage(recipe, tmp_path / "bundle", tmp_path / "student", paths).run()
    assert seen["config"].allow_partial is True and seen["config"].backends == ["onnx"]


@pytest.fixture(scope="module")
def small_dataset(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A small real AG News slice as a dataset directory (train 240 rows, test 60)."""
    from tests.conftest import write_dataset

    return write_dataset(tmp_path_factory.mktemp("ag_small"), {"train": 240, "test": 60})


@pytest.mark.slow
def test_run_end_to_end_resumes_and_gates(tiny_bert: Path, small_dataset: Path, tmp_path: Path,
                                          capsys: pytest.CaptureFixture[str]) -> None:
    """The real verbs on tiny models: baseline, distill, export (onnx), verify, report; a re-run
    skips everything; a verify setting re-runs verify and report only; a strict gate exits 1."""
    import json

    from edgekd.cli import main

    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(f"""
name: tiny
out: {tmp_path / 'run'}
teacher: {{path: {tiny_bert}}}
students: {{specs: ["layers=1"], epochs: 1, batch_size: 16}}
export: {{targets: [onnx], int8: false, calibration_samples: 32}}
data: {{path: {small_dataset}, max_test_samples: 40}}
verify: {{max_samples: 30, runs: 3, cold_start: false}}
""")
    assert main(["run", str(recipe)]) == 0
    out = capsys.readouterr().out
    assert "verify layers-1" in out and "onnx-fp32" in out and "PASS" in out
    report_dir = tmp_path / "run" / "report"
    [report_path] = report_dir.glob("*.json")
    report = json.loads(report_path.read_text())
    assert [m["name"] for m in report["models"]] == ["baseline-tfidf", "teacher", "student-torch", "onnx-fp32"]
    assert report["passed"] and report["data"]["n"] == 30
    assert (report_dir / report_path.name.replace(".json", ".html")).is_file()

    assert main(["run", str(recipe)]) == 0  # everything up to date
    out = capsys.readouterr().out
    assert out.count("up to date, skipped") == 6

    # One gate table: a recipe gate reaches the export's post-export check too. An fp32 gate no
    # conversion meets fails the export (non-zero exit; the previous bundle and report stay as they were).
    bundle = tmp_path / "run" / "bundles" / "layers-1" / "edgekd.json"
    before = bundle.read_bytes()
    code = main(["run", str(recipe), "--set", "verify.gates.fp32.max_abs_logit=0"])
    captured = capsys.readouterr()
    assert code == 2 and "post-export check failed for onnx-fp32" in captured.err
    assert captured.out.count("up to date, skipped") == 3  # data, baseline, distill
    assert bundle.read_bytes() == before and json.loads(report_path.read_text())["passed"] is True

    # A gate only verify measures (accuracy needs labels): export passes, verify fails, exit 1, report written.
    code = main(["run", str(recipe), "--set", "verify.gates.fp32.accuracy_drop=-0.5"])
    captured = capsys.readouterr()
    assert code == 1 and "onnx-fp32 accuracy_drop=" in captured.err
    assert captured.out.count("up to date, skipped") == 3  # data, baseline, distill (export reads the gates)
    assert json.loads(report_path.read_text())["passed"] is False


def test_every_stage_step_is_the_command_it_records() -> None:
    """A pipeline step calls the verb's stage function with a typed config; the command line it records
    (for people) gives that same config through the verb's flags, and the config is what the stamp hashes."""
    import importlib

    from edgekd.cli import COMMANDS, parse

    recipe = load_recipe(RECIPES / "demo.yaml", ["out=/tmp/edgekd-demo-plan", "teacher.vocab_size=8000", "teacher.mlm_epochs=1.5",
                                                 "export.prune_vocab_min_count=2", "export.embedding_bits=4", "students.epochs=2",
                                                 "verify.gates.int8.agreement=0.97"])
    steps, _ = pipeline.plan(recipe)
    staged = [s for s in steps if s.verb]
    assert [s.verb for s in staged] == ["baseline", "adapt-vocab", "train", "distill", "prune-vocab", "export", "verify"]
    for step in staged:
        module = importlib.import_module(COMMANDS[step.verb])
        assert module.stage_from_args(parse(step.command)).key() == step.key, step.name
        assert step.key["stage"] == step.verb and json.loads(json.dumps(step.key)) == step.key  # JSON-ready
    export = next(s for s in staged if s.verb == "export")
    assert export.key["options"]["calibration_size"] == 200  # demo.yaml's calibration_samples (the old spelling)
    assert ["--gate-int8-agreement", "0.97"] == export.command[-2:]


def test_a_stage_error_keeps_its_type_and_the_stamp_records_the_command(tmp_path: Path) -> None:
    from edgekd.errors import RecipeError

    steps, _ = pipeline.plan(parse_recipe({"out": str(tmp_path), "data": {"path": "d"}, "teacher": {"lr": 0}}))
    teacher = next(s for s in steps if s.name == "teacher")
    with pytest.raises(RecipeError, match=r"^--lr must be > 0, got 0.0$"):  # checked before any data loads
        teacher.run()
    import dataclasses

    from edgekd.steps import Runner

    Runner(tmp_path).run(dataclasses.replace(teacher, run=lambda: None, stage=None))  # the stamp of a finished run
    stamp = json.loads((tmp_path / pipeline.STAMP_DIR / "teacher.json").read_text())
    assert stamp["key"]["stage"] == "train" and stamp["key"]["train"]["lr"] == 0.0
    assert stamp["command"].startswith("edgekd train --data ") and "--lr 0.0" in stamp["command"]


def test_dry_run_lists_each_step_with_the_command_it_would_run(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    from edgekd.cli import main

    out = tmp_path / "run"
    assert main(["run", str(RECIPES / "demo.yaml"), "--dry-run", "--set", f"out={out}"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert [line.split()[0] for line in lines if not line.startswith(" ")] == [
        "data", "baseline", "teacher", "distill", "export", "verify", "report"]
    teacher = lines[[x.split()[0] for x in lines].index("teacher") + 1]  # the line under the step: its command
    assert teacher.strip().startswith(f"edgekd train --data {out / 'data'}") and "--max-length 64" in teacher
    assert not out.exists()  # a dry run writes nothing
