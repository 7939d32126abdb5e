"""The benchmark's step cache, its timing cross-check and its verdicts (no model runs: `edgekd` calls are
faked, results are synthetic)."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from benchmarks import results, steps, timing


@pytest.fixture
def cache(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> tuple[Path, list[list[str]]]:
    monkeypatch.setattr(steps, "CACHE", tmp_path)
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
        calls.append(cmd[3:])
        out = Path(cmd[cmd.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.txt").write_text(str(len(calls)))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(steps.subprocess, "run", fake_run)
    return tmp_path, calls


def _pair(root: Path) -> tuple[steps.Step, steps.Step]:
    teacher = steps.Step("teacher", root / "teacher", ["train", "--lr", "1e-4", "--out", str(root / "teacher")])
    student = steps.Step("students", root / "students", [
        "distill", "--teacher", str(root / "teacher"), "--out", str(root / "students")])
    return teacher, student


def test_a_step_reruns_when_a_step_it_reads_was_redone(cache: tuple[Path, list[list[str]]]) -> None:
    root, calls = cache
    teacher, student = _pair(root)
    steps.run_step(teacher, log=lambda m: None)
    first = steps.run_step(student, log=lambda m: None)
    assert first["inputs"] == {"teacher": json.loads((root / "teacher" / steps.STAMP).read_text())["finished"]}
    assert steps.run_step(student, log=lambda m: None)["cached"] is True
    assert steps.run_step(teacher, log=lambda m: None)["cached"] is True
    assert len(calls) == 2
    # The teacher is redone (here: a stamp from another time); the same distill command must rerun.
    stamp = json.loads((root / "teacher" / steps.STAMP).read_text())
    (root / "teacher" / steps.STAMP).write_text(json.dumps(stamp | {"finished": "2000-01-01T00:00:00"}))
    again = steps.run_step(student, log=lambda m: None)
    assert again["cached"] is False and again["inputs"] == {"teacher": "2000-01-01T00:00:00"}
    assert len(calls) == 3 and calls[-1] == student.argv


def test_a_path_inside_a_step_output_counts_as_that_step(cache: tuple[Path, list[list[str]]]) -> None:
    root, _ = cache
    teacher, student = _pair(root)
    steps.run_step(teacher, log=lambda m: None)
    steps.run_step(student, log=lambda m: None)
    argv = ["export", str(root / "students" / "layers-3"), "--out", str(root / "bundle"), "/elsewhere/data"]
    assert set(steps.upstream(argv)) == {"students"}


def test_steps_run_without_the_wait_policy_the_benchmark_set(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_WAIT_POLICY", "PASSIVE")
    monkeypatch.setenv("EDGEKD_BENCH_SET_OMP_WAIT_POLICY", "1")
    assert "OMP_WAIT_POLICY" not in steps.step_env()
    monkeypatch.delenv("EDGEKD_BENCH_SET_OMP_WAIT_POLICY")  # the user's own setting is kept
    assert steps.step_env()["OMP_WAIT_POLICY"] == "PASSIVE"


def test_back_to_back_times_each_system_alone_in_mirrored_blocks() -> None:
    order: list[str] = []
    systems = {"a": lambda i: order.append("a"), "b": lambda i: order.append("b")}
    t = timing.back_to_back(systems, runs=4, warmup=1)
    assert order == ["a"] * 3 + ["b"] * 3 + ["b"] * 3 + ["a"] * 3
    assert t["a"].runs == 4 and t["b"].runs == 4


def _comparison(inter: float, alone: float) -> dict:
    def side(ms: float) -> dict:
        return {"p50_ms": ms, "p90_ms": ms, "p99_ms": ms, "iqr_ms": 0.0, "mean_ms": ms, "runs": 60}

    slow, fast = "teacher_transformers_pipeline", "edgekd_int8_student"
    return {slow: side(20.0), fast: side(20.0 / inter), "speedup": inter, "slow": slow, "fast": fast,
            "back_to_back": {slow: side(20.0), fast: side(20.0 / alone), "speedup": alone},
            "consistent": abs(alone / inter - 1) <= 0.2}


@pytest.mark.parametrize(("inter", "alone", "verdict"), [
    (12.0, 11.0, "**met**"), (7.0, 8.0, "**not met**"), (10.8, 7.4, "**not established**")])
def test_a_speed_verdict_needs_both_timings_to_agree(inter: float, alone: float, verdict: str) -> None:
    r = {"speed": {"teacher_pipeline_vs_edgekd_int8": _comparison(inter, alone)}}
    row = next(t for t in results.targets(r) if t[0].startswith("edgekd int8 student >= 10x"))
    assert row[1].startswith(f"{inter:.2f}x (back to back {alone:.2f}x)")
    assert row[2].startswith(verdict)


def test_separate_parts_keep_their_results_sections() -> None:
    from benchmarks.sections import keep, splice

    text = splice("# Benchmark results\n\nold body\n", "first-run", ["## First-run matrix", "| a |"])
    text = splice(text, "serve", ["## serve", "v1"])
    text = splice(text, "serve", ["## serve", "v2"])  # replaced in place, not appended twice
    assert text.count("<!-- serve:begin -->") == 1 and "v2" in text and "v1" not in text
    rewritten = keep("# Benchmark results\n\nnew body\n", text)  # the main parts rewrite the file
    assert "new body" in rewritten and "old body" not in rewritten
    assert "| a |" in rewritten and "v2" in rewritten
