"""edgekd's one step runner (`edgekd.steps`): stamps, upstream runs, and isolated steps whose stamps are
versioned by the edgekd code their process imported (what the benchmarks use). Most `edgekd` runs are faked
here; two run a real stage in a real child process."""

from __future__ import annotations

import json
import pickle
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import ClassVar

import pytest

from edgekd import steps
from edgekd.commands._common import Stage


@dataclass
class Fit(Stage):
    """A toy stage: what a fake child process 'runs' (it writes out/model.txt)."""

    VERB: ClassVar[str] = "train"
    out: Path
    lr: float = 1e-4
    teacher: Path | None = None

    def command(self) -> list[str]:
        return ["train", "--lr", str(self.lr), "--out", str(self.out),
                *([] if self.teacher is None else ["--teacher", str(self.teacher)])]


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[steps.Runner, list[Fit]]:
    """An isolated Runner in tmp_path/cache whose child processes are faked; the edgekd package is a small
    copy in tmp_path/src/edgekd, and every fake step imports train.py of it (not serve.py)."""
    root = tmp_path / "cache"
    package = tmp_path / "src" / "edgekd"
    package.mkdir(parents=True)
    for name, text in (("train.py", "LR = 1e-4\n"), ("serve.py", "PORT = 8000\n"), ("schema.json", "{}\n")):
        (package / name).write_text(text)
    monkeypatch.setattr(steps, "PACKAGE", package)
    calls: list[Fit] = []

    def fake_run(cmd: list[str], cwd: Path | None, env: dict[str, str]) -> subprocess.CompletedProcess:
        assert cmd[1:3] == ["-c", steps._CHILD]
        stage = pickle.loads(Path(cmd[3]).read_bytes())
        calls.append(stage)
        stage.out.mkdir(parents=True, exist_ok=True)
        (stage.out / "model.txt").write_text(str(len(calls)))
        Path(cmd[4]).write_text(json.dumps([str(package / "train.py"), "/usr/lib/json.py"]))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(steps.subprocess, "run", fake_run)
    return steps.Runner(root, isolate=True), calls


def _pair(runner: steps.Runner) -> tuple[steps.Step, steps.Step]:
    root = Path(runner.root)
    teacher = steps.Step.of("teacher", Fit(root / "teacher"), [root / "teacher"])
    student = steps.Step.of("students", Fit(root / "students", teacher=root / "teacher"), [root / "students"],
                            after=["teacher"])
    return teacher, student


def quiet(message: str) -> None:
    pass


def test_a_step_reruns_when_a_step_it_reads_was_redone(cache: tuple[steps.Runner, list[Fit]]) -> None:
    runner, calls = cache
    teacher, student = _pair(runner)
    runner.run(teacher, log=quiet)
    first = runner.run(student, log=quiet)
    assert first.stamp["after"] == {"teacher": runner.stamp("teacher")["run"]}
    assert runner.run(student, log=quiet).status == "skipped"
    assert runner.run(teacher, log=quiet).status == "skipped"
    assert len(calls) == 2
    # The teacher is redone (here: its stamp says another run); the same distill config must rerun.
    stamp = runner.stamp("teacher")
    runner.stamp_path("teacher").write_text(json.dumps(stamp | {"run": "another-run"}))
    logged: list[str] = []
    again = runner.run(student, log=logged.append)
    assert again.status == "ran" and again.stamp["after"] == {"teacher": "another-run"}
    assert any("an upstream step was redone since this ran" in m for m in logged)
    assert len(calls) == 3 and calls[-1] == student.stage


def test_a_step_reruns_when_the_edgekd_code_it_ran_changes(cache: tuple[steps.Runner, list[Fit]]) -> None:
    runner, calls = cache
    package = steps.PACKAGE
    teacher, student = _pair(runner)
    first = runner.run(teacher, log=quiet)
    runner.run(student, log=quiet)
    source = first.stamp["source"]
    assert source["files"] == ["edgekd/train.py"]  # what the step imported from the package, nothing else
    assert source["sha256"] == steps.source_version(["edgekd/train.py"]) and "git_commit" in source
    (package / "serve.py").write_text("PORT = 9000\n")  # code the step never imported
    assert runner.run(teacher, log=quiet).status == "skipped"
    (package / "train.py").write_text("LR = 5e-5\n")  # code it ran
    logged: list[str] = []
    again = runner.run(teacher, log=logged.append)
    assert again.status == "ran" and again.stamp["source"]["sha256"] != source["sha256"]
    assert any("edgekd code it ran changed since" in m for m in logged)
    # ... and the step that reads its output reruns through the upstream rule.
    assert runner.run(student, log=quiet).status == "ran"
    (package / "schema.json").write_text('{"v": 2}\n')  # a data file of the package counts for every step
    assert runner.run(teacher, log=quiet).status == "ran"
    assert len(calls) == 5


def test_a_step_made_by_older_code_is_finished_for_publishing_but_not_after_a_config_or_upstream_change(
        cache: tuple[steps.Runner, list[Fit]]) -> None:
    runner, calls = cache
    teacher, student = _pair(runner)
    runner.run(teacher, log=quiet)
    runner.run(student, log=quiet)
    (steps.PACKAGE / "train.py").write_text("LR = 5e-5\n")  # code both ran changed
    assert runner.stale(teacher) == "edgekd code it ran changed since" and runner.finished(teacher)
    assert runner.finished(student)  # its upstream was not redone: the teacher it read is the one on disk
    changed = steps.Step.of("teacher", Fit(Path(runner.root) / "teacher", lr=5e-5), teacher.outputs)
    assert not runner.finished(changed)
    stamp = runner.stamp("teacher")
    runner.stamp_path("teacher").write_text(json.dumps(stamp | {"run": "another-run"}))
    assert not runner.finished(student)  # its teacher was redone since: its outputs are not that teacher's
    assert not runner.finished(steps.Step.of("never", Fit(Path(runner.root) / "never"), []))
    assert len(calls) == 2


def test_a_stamp_without_a_source_version_reruns(cache: tuple[steps.Runner, list[Fit]]) -> None:
    runner, calls = cache
    teacher, _ = _pair(runner)
    stamp = runner.run(teacher, log=quiet).stamp
    stamp.pop("source")
    runner.stamp_path(teacher).write_text(json.dumps(stamp))  # written before stamps had one
    assert runner.run(teacher, log=quiet).status == "ran" and len(calls) == 2


def test_a_changed_config_or_a_lost_output_reruns_and_force_always_does(cache: tuple[steps.Runner, list[Fit]]) -> None:
    runner, calls = cache
    teacher, student = _pair(runner)
    runner.run(teacher, log=quiet)
    runner.run(student, log=quiet)
    changed = steps.Step.of("teacher", Fit(Path(runner.root) / "teacher", lr=5e-5), teacher.outputs)
    assert runner.stale(changed) == "its config changed"
    assert runner.statuses([changed, student]) == {"teacher": "its config changed",
                                                   "students": "an upstream step runs first"}
    (Path(runner.root) / "students" / "model.txt").unlink()
    (Path(runner.root) / "students").rmdir()
    assert runner.stale(student) == "an output is missing"
    assert runner.run(teacher, force=True, log=quiet).status == "ran" and len(calls) == 3
    old = {k: v for k, v in runner.stamp(teacher).items() if k not in ("run", "after")} | {"hash": "a hash of before"}
    runner.stamp_path(teacher).write_text(json.dumps(old))  # the pipeline's stamp before the one runner
    assert runner.stale(teacher) == "its stamp is from an older edgekd"


def test_a_failed_step_leaves_no_stamp_and_names_its_command(cache: tuple[steps.Runner, list[Fit]],
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    runner, _ = cache
    teacher, _ = _pair(runner)
    monkeypatch.setattr(steps.subprocess, "run", lambda cmd, cwd, env: subprocess.CompletedProcess(cmd, 2))
    with pytest.raises(SystemExit, match=r"step teacher failed \(exit 2\): edgekd train --lr 0.0001 --out "):
        runner.run(teacher, log=quiet)
    assert runner.stamp(teacher) is None and not list(runner.stamp_path(teacher).parent.glob(".teacher*"))


def test_a_rerun_that_dies_leaves_no_earlier_stamp_behind(cache: tuple[steps.Runner, list[Fit]],
                                                         monkeypatch: pytest.MonkeyPatch) -> None:
    runner, _ = cache
    teacher, _ = _pair(runner)
    runner.run(teacher, log=quiet)
    monkeypatch.setattr(steps.subprocess, "run", lambda cmd, cwd, env: subprocess.CompletedProcess(cmd, 1))
    with pytest.raises(SystemExit):
        runner.run(teacher, force=True, log=quiet)  # it may have begun to rewrite the outputs
    assert runner.stale(teacher) == "not run yet"


def test_source_version_changes_with_a_file_it_covers(tmp_path: Path) -> None:
    package = tmp_path / "edgekd"
    package.mkdir()
    (package / "a.py").write_text("x = 1\n")
    (package / "b.py").write_text("y = 1\n")
    before = steps.source_version(["edgekd/a.py"], package)
    (package / "b.py").write_text("y = 2\n")
    assert steps.source_version(["edgekd/a.py"], package) == before
    (package / "a.py").write_text("x = 2\n")
    assert steps.source_version(["edgekd/a.py"], package) != before
    (package / "a.py").unlink()
    assert steps.source_version(["edgekd/a.py"], package) not in (before, steps.source_version([], package))


def test_an_isolated_stage_runs_in_its_own_process_and_records_what_it_imported(
        tmp_path: Path, capfd: pytest.CaptureFixture[str]) -> None:
    """A real child process: the baseline verb's stage on a small real slice, then a stage that fails
    as `edgekd baseline` fails (one line, its exit code)."""
    from edgekd.commands.baseline import BaselineStage
    from edgekd.data import DataSpec
    from tests.conftest import write_dataset

    data = write_dataset(tmp_path / "data", {"train": 120, "test": 40})
    runner = steps.Runner(tmp_path / "cache", isolate=True)
    out = tmp_path / "cache" / "baseline"
    done = runner.run(steps.Step.of("baseline", BaselineStage(DataSpec(str(data)), out), [out / "metrics.json"]))
    assert done.status == "ran" and done.value is None  # the work happened in the child: its outputs are on disk
    assert json.loads((out / "metrics.json").read_text())["accuracy"] > 0.25  # 4 classes
    files = done.stamp["source"]["files"]
    assert "edgekd/commands/baseline.py" in files and "edgekd/cli.py" in files
    assert "edgekd/steps.py" not in files  # the runner itself: a change to it redoes no step
    assert "edgekd/train/teacher.py" not in files and "edgekd/exporters/onnx.py" not in files  # never imported
    assert runner.run(steps.Step.of("baseline", BaselineStage(DataSpec(str(data)), out),
                                    [out / "metrics.json"])).status == "skipped"
    bad = steps.Step.of("bad", BaselineStage(DataSpec(str(tmp_path / "missing")), tmp_path / "cache" / "bad"), [])
    capfd.readouterr()
    with pytest.raises(SystemExit, match=r"step bad failed \(exit 2\): edgekd baseline --data "):
        runner.run(bad)
    errors = [line for line in capfd.readouterr().err.splitlines() if line.strip()]
    assert len(errors) == 1 and errors[0].startswith("edgekd baseline: error: ")  # as the CLI says it


def test_training_commands_import_no_export_recipe_or_verify_code() -> None:
    """A step's stamp hashes every edgekd module its command imports, so a training step that imported the
    exporters (through edgekd.recipe) went stale, and was retrained from scratch, on every export change."""
    code = ("import sys, edgekd.commands.train, edgekd.commands.distill; "
            "print(sorted(m for m in sys.modules if m.startswith(('edgekd.recipe', 'edgekd.exporters', "
            "'edgekd.verify.runner', 'edgekd.pipeline'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
