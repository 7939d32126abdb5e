"""`edgekd run`: the plan a recipe gives, step stamps (skip, resume after a crash, re-run downstream
of a change), and combining per-student reports."""

from __future__ import annotations

import copy
from pathlib import Path

import pytest

from edgekd import pipeline
from edgekd.errors import EdgekdError
from edgekd.recipe import load_recipe, parse_recipe
from tests.test_report import make_report

RECIPES = Path(__file__).resolve().parents[1] / "recipes"


def test_demo_plan_steps_and_flags() -> None:
    recipe = load_recipe(RECIPES / "demo.yaml", ["out=/tmp/edgekd-demo-plan"])
    steps, paths = pipeline.plan(recipe)
    assert [s.name for s in steps] == ["baseline", "teacher", "distill layers-2", "export layers-2",
                                       "verify layers-2", "report"]
    by = {s.name: s for s in steps}
    train = by["teacher"].key["argv"]
    assert train[0] == "train" and train[train.index("--max-length") + 1] == "64"
    assert train[train.index("--max-train-samples") + 1] == "1500"
    export = by["export layers-2"].key["argv"]
    assert export[export.index("--target") + 1] == "onnx,openvino,coreml" and "--int8" in export
    assert export[1] == str(paths["student:layers-2"])
    assert by["verify layers-2"].after == ["export layers-2", "teacher", "baseline"]


def test_existing_teacher_skips_training(tmp_path: Path) -> None:
    recipe = parse_recipe({"out": str(tmp_path), "data": {"path": "d"}, "teacher": {"path": "/models/t"},
                           "baseline": {"enabled": False}, "students": {"specs": ["layers=1", "layers=2"]}})
    steps, paths = pipeline.plan(recipe)
    assert [s.name for s in steps][:2] == ["distill layers-1", "export layers-1"]
    assert paths["teacher"] == Path("/models/t") and steps[0].after == []
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
