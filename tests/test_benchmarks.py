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
    """A step cache in tmp_path/cache whose `edgekd` runs are faked; the edgekd package is a small copy in
    tmp_path/src/edgekd, and every fake step imports train.py of it (not serve.py)."""
    root = tmp_path / "cache"
    monkeypatch.setattr(steps, "CACHE", root)
    package = tmp_path / "src" / "edgekd"
    package.mkdir(parents=True)
    for name, text in (("train.py", "LR = 1e-4\n"), ("serve.py", "PORT = 8000\n"), ("schema.json", "{}\n")):
        (package / name).write_text(text)
    monkeypatch.setattr(steps, "PACKAGE", package)
    calls: list[list[str]] = []

    def fake_run(cmd: list[str], cwd: Path, env: dict[str, str]) -> subprocess.CompletedProcess:
        calls.append(cmd[3:])
        out = Path(cmd[cmd.index("--out") + 1])
        out.mkdir(parents=True, exist_ok=True)
        (out / "model.txt").write_text(str(len(calls)))
        Path(env["EDGEKD_BENCH_IMPORTS"]).write_text(json.dumps([str(package / "train.py"), "/usr/lib/json.py"]))
        return subprocess.CompletedProcess(cmd, 0)

    monkeypatch.setattr(steps.subprocess, "run", fake_run)
    return root, calls


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


def test_a_step_reruns_when_the_edgekd_code_it_ran_changes(cache: tuple[Path, list[list[str]]]) -> None:
    root, calls = cache
    package = steps.PACKAGE
    teacher, student = _pair(root)
    first = steps.run_step(teacher, log=lambda m: None)
    steps.run_step(student, log=lambda m: None)
    source = first["source"]
    assert source["files"] == ["edgekd/train.py"]  # what the step imported from the package, nothing else
    assert source["sha256"] == steps.source_version(["edgekd/train.py"]) and "git_commit" in source
    (package / "serve.py").write_text("PORT = 9000\n")  # code the step never imported
    assert steps.run_step(teacher, log=lambda m: None)["cached"] is True
    (package / "train.py").write_text("LR = 5e-5\n")  # code it ran
    logged: list[str] = []
    again = steps.run_step(teacher, log=logged.append)
    assert again["cached"] is False and again["source"]["sha256"] != source["sha256"]
    assert any("edgekd code it ran changed since" in m for m in logged)
    # ... and the step that reads its output reruns through the upstream rule.
    assert steps.run_step(student, log=lambda m: None)["cached"] is False
    (package / "schema.json").write_text('{"v": 2}\n')  # a data file of the package counts for every step
    assert steps.run_step(teacher, log=lambda m: None)["cached"] is False
    assert len(calls) == 5


def test_a_stamp_without_a_source_version_reruns(cache: tuple[Path, list[list[str]]]) -> None:
    root, calls = cache
    teacher, _ = _pair(root)
    stamp = steps.run_step(teacher, log=lambda m: None)
    stamp.pop("source")
    stamp.pop("cached")
    (root / "teacher" / steps.STAMP).write_text(json.dumps(stamp))  # written before stamps had one
    assert steps.run_step(teacher, log=lambda m: None)["cached"] is False and len(calls) == 2


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


def test_the_runner_records_the_edgekd_files_a_command_imports(tmp_path: Path) -> None:
    import os
    import sys

    record = tmp_path / "imports.json"
    proc = subprocess.run([sys.executable, "-c", steps._RUNNER, "info", str(tmp_path / "missing")], cwd=steps.ROOT,
                          env=dict(os.environ) | {"EDGEKD_BENCH_IMPORTS": str(record)}, capture_output=True, text=True)
    assert proc.returncode == 2 and "bundle not found" in proc.stderr  # edgekd's own CLI ran, with its exit code
    files = steps._imported(record, steps.PACKAGE)
    assert "edgekd/cli.py" in files and "edgekd/commands/info.py" in files
    assert "edgekd/train/teacher.py" not in files and "edgekd/exporters/onnx.py" not in files  # never imported


def test_peak_estimate_uses_the_maximum_clock_and_physical_cores(tmp_path: Path) -> None:
    import os

    from benchmarks import speed

    cpus = sorted(os.sched_getaffinity(0))
    for cpu in cpus:  # every usable CPU is an SMT sibling of core 0: one physical core
        (tmp_path / f"cpu{cpu}" / "topology").mkdir(parents=True)
        (tmp_path / f"cpu{cpu}" / "topology" / "physical_package_id").write_text("0\n")
        (tmp_path / f"cpu{cpu}" / "topology" / "core_id").write_text("0\n")
    cpuinfo = "cpu MHz\t\t: 1500.000\n"
    assert speed.max_clock_ghz(tmp_path, lscpu="CPU max MHz:  3500.0000\n", cpuinfo=cpuinfo) == (3.5, "lscpu CPU max MHz")
    for cpu in cpus:
        (tmp_path / f"cpu{cpu}" / "cpufreq").mkdir()
        (tmp_path / f"cpu{cpu}" / "cpufreq" / "cpuinfo_max_freq").write_text("3700000\n")
    peak = speed.cpu_peak_gflops(tmp_path, lscpu="CPU max MHz: 3500.0000\n", cpuinfo=cpuinfo)
    assert (peak["ghz"], peak["clock_source"], peak["cores"]) == (3.7, "cpufreq cpuinfo_max_freq", 1)
    assert peak["peak_gflops"] == round(3.7 * peak["flop_per_cycle"], 1) and "estimate" in peak["formula"]
    # No maximum exposed (a VM): the current clock, said so.
    ghz, source = speed.max_clock_ghz(tmp_path / "none", lscpu="", cpuinfo=cpuinfo)
    assert ghz == 1.5 and "no maximum clock exposed" in source


def test_unknown_parts_are_a_one_line_error_listing_the_parts(capsys: pytest.CaptureFixture) -> None:
    from benchmarks.__main__ import main

    with pytest.raises(SystemExit) as exc:
        main(["train"])
    message = str(exc.value)
    assert "\n" not in message and "unknown part 'train'" in message and "baseline, teacher, students" in message


def _device(device_id: str, isa: dict[str, bool]) -> dict:
    return {"device_id": device_id, "cpu_model": "Test CPU", "usable_cores": 2, "isa": isa}


def test_results_md_shows_every_devices_verdicts_side_by_side(tmp_path: Path) -> None:
    a = {"device": _device("linux-x86_64-test-aaaaaaaa", {"avx2": True, "avx512_vnni": True}),
         "steps": {"baseline": {"metrics": {"accuracy": 0.90}}}}
    b = {"device": _device("linux-x86_64-test-bbbbbbbb", {"avx2": True, "avx512_vnni": False}),
         "steps": {"baseline": {"metrics": {"accuracy": 0.85}}}}
    for r in (a, b):
        (tmp_path / f"{r['device']['device_id']}.json").write_text(json.dumps(r))
    (tmp_path / "serve-linux-x86_64-test-aaaaaaaa.json").write_text(json.dumps({"device": a["device"]}))  # a part's
    md = tmp_path / "RESULTS.md"
    md.write_text("old\n<!-- serve:begin -->\nserve section\n<!-- serve:end -->\n")
    results.write_results_md(a, md, tmp_path)
    text = md.read_text()
    table = text.split("## Verdicts by device")[1].split("\n## ")[0].splitlines()
    header = next(line for line in table if line.startswith("| target |"))
    assert header.count("`linux-x86_64-test-") == 2 and "avx2, avx512_vnni" in header
    row = next(line for line in table if line.startswith("| baseline test accuracy"))
    assert row.split("|")[2:4] == [" **met** ", " **not met** "]
    assert "serve section" in text  # a separate part's section is kept


def test_the_pytorch_speed_row_needs_the_controlled_comparison() -> None:
    title = "3-layer student >= 1.8x faster than teacher"
    old = {"steps": {"students": {"comparison": [{"model": "teacher", "latency_p50_ms": 18.0},
                                                 {"model": "layers-3", "accuracy": 0.9, "latency_p50_ms": 8.0}]}}}
    row = next(t for t in results.targets(old) if t[0].startswith(title))
    assert row[2].startswith("**not established**") and "separate 50-run timings" in row[1]
    comp = _comparison(2.3, 2.2)
    comp = {"teacher_torch": comp.pop("teacher_transformers_pipeline"), "student_torch": comp.pop("edgekd_int8_student"),
            **comp, "slow": "teacher_torch", "fast": "student_torch"}
    row = next(t for t in results.targets(old | {"speed": {"torch_student_vs_teacher": comp}}) if t[0].startswith(title))
    assert row[1].startswith("2.30x (20.00 ms vs 8.70 ms) (back to back 2.20x)") and row[2] == "**met**"


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


def test_head_slice_keeps_the_header_every_column_and_n_rows(tmp_path: Path) -> None:
    import csv
    import gzip

    from benchmarks.steps import DATA, head_slice

    out = head_slice("arabic_news_ant", tmp_path / "slice", {"train": 5, "test": 3})
    for split, n in (("train", 5), ("test", 3)):
        with open(out / f"{split}.csv", newline="", encoding="utf-8") as f:
            got = list(csv.reader(f))
        with gzip.open(DATA / "arabic_news_ant" / f"{split}.csv.gz", "rt", encoding="utf-8", newline="") as f:
            source = csv.reader(f)
            expected = [next(source) for _ in range(n + 1)]
        assert got == expected and "title" in got[0]  # every column, the header first
    (out / "test.csv").write_text("kept")  # a split already written is not rewritten
    head_slice("arabic_news_ant", out, {"test": 3})
    assert (out / "test.csv").read_text() == "kept" and not list(out.glob("*.tmp"))


def test_a_separate_part_publishes_its_results_and_section_or_only_its_smoke_files(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import benchmarks.__main__ as bench

    monkeypatch.setattr(bench, "ROOT", tmp_path)
    monkeypatch.setattr(bench, "RESULTS", tmp_path / "benchmarks" / "results")
    (tmp_path / "benchmarks").mkdir()
    result = {"device": {"device_id": "dev-1"}, "setting": "full", "value": "قيمة"}
    bench._publish("part", result, ["## Part", "", "a line"], "part")
    written = json.loads((tmp_path / "benchmarks" / "results" / "part-dev-1.json").read_text(encoding="utf-8"))
    assert written == result and "a line" in (tmp_path / "benchmarks" / "RESULTS.md").read_text()
    smoke = tmp_path / "cache" / "part-smoke"
    bench._publish("part", result | {"setting": "smoke"}, ["## Smoke"], "part", smoke)
    assert json.loads((smoke / "part.json").read_text(encoding="utf-8"))["setting"] == "smoke"
    assert (smoke / "part.md").read_text() == "## Smoke\n" and "Smoke" not in (tmp_path / "benchmarks" / "RESULTS.md").read_text()


def _imbalance_row(dataset: str, model: str, weight: str, seed: int, f1: float, zero: list[str] | None = None) -> dict:
    return {"dataset": dataset, "model": model, "class_weight": weight, "seed": seed, "f1_macro": f1,
            "accuracy": f1, "worst_f1": 0.0 if zero else f1 / 2, "zero_f1_classes": zero or []}


def test_the_imbalance_target_needs_every_seed_to_beat_the_baseline_with_no_dead_class() -> None:
    from benchmarks.imbalance import target, verdict

    rows = [_imbalance_row("ag", "baseline", "-", 42, 0.50), _imbalance_row("ag", "teacher", "default", 42, 0.80),
            _imbalance_row("ag", "student", "default", 42, 0.79), _imbalance_row("ag", "teacher", "none", 42, 0.60),
            _imbalance_row("ag", "student", "none", 42, 0.70, ["x"]),
            _imbalance_row("ag", "baseline", "-", 43, 0.50), _imbalance_row("ag", "teacher", "default", 43, 0.80)]
    t = target(rows)["ag"]
    assert t["met"] is True and t["complete"] is False  # seed 43 lacks its student: decided so far, not complete
    assert [x["met"] for x in t["seeds"]] == [True, None]
    rows.append(_imbalance_row("ag", "student", "default", 43, 0.45))  # below the baseline on seed 43
    t = target(rows)["ag"]
    assert t["met"] is False and t["complete"] is True
    assert t["seeds"][1]["checks"] == {"teacher macro F1 > baseline": True, "student macro F1 > baseline": False,
                                       "teacher: no class with F1 = 0": True, "student: no class with F1 = 0": True}
    rows[1] = _imbalance_row("ag", "teacher", "default", 42, 0.80, ["World"])  # a dead class fails the seed
    assert target(rows)["ag"]["seeds"][0]["met"] is False
    gain = verdict(rows)["ag teacher"]
    assert gain["by_seed"] == {"42": {"f1_macro": 0.2, "accuracy": 0.2, "worst_f1": -0.3}}
