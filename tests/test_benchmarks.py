"""The benchmark's steps (typed stage configs on edgekd's one runner, whose own tests are in
test_steps.py), its timing cross-check and its verdicts (no model runs: results are synthetic)."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np
import pytest

from benchmarks import results, steps, timing


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


def test_a_slice_run_is_marked_in_its_column_and_its_accuracy_verdicts(tmp_path: Path) -> None:
    full = {"device": _device("linux-x86_64-test-aaaaaaaa", {"avx2": True}),
            "steps": {"baseline": {"metrics": {"accuracy": 0.90}}}}
    sliced = {"device": _device("linux-x86_64-test-bbbbbbbb", {"avx2": True, "avx512_vnni": True}),
              "scale": {"name": "slice", "train_rows": 12000, "epochs": "1", "teacher_epochs": 1,
                        "teacher_max_length": 64, "env": "EDGEKD_BENCH_MAIN=slice"},
              "steps": {"baseline": {"metrics": {"accuracy": 0.88}}}}
    for r in (full, sliced):
        (tmp_path / f"{r['device']['device_id']}.json").write_text(json.dumps(r))
    by = {t: v for t, _, v, _ in results.targets(sliced)}
    assert by["baseline test accuracy >= 0.89 (issue 2)"] == "**not met** (slice)"
    assert by["MiniLM teacher test accuracy >= 0.92 (issue 2)"] == "not measured (slice)"
    md = tmp_path / "RESULTS.md"
    results.write_results_md(sliced, md, tmp_path)
    text = md.read_text()
    assert "the first 12,000 AG News training rows, a 1-epoch max_length-64 teacher" in text.split("\n## ")[0]
    table = text.split("## Verdicts by device")[1].split("\n## ")[0].splitlines()
    header = next(line for line in table if line.startswith("| target |"))
    assert header.count("training slice") == 1 and header.index("bbbbbbbb") < header.index("training slice")
    row = next(line for line in table if line.startswith("| baseline test accuracy"))
    assert row.split("|")[2:4] == [" **met** ", " **not met** (slice) "]
    assert results.scale_text(full) == "all of AG News"


def test_the_main_benchmark_on_the_slice_reuses_the_pareto_slice_steps(tmp_path: Path,
                                                                       monkeypatch: pytest.MonkeyPatch) -> None:
    from benchmarks import __main__ as bench
    from benchmarks import pareto

    for module in (steps, pareto):
        monkeypatch.setattr(module, "CACHE", tmp_path)
    monkeypatch.setenv("EDGEKD_BENCH_MAIN", "slice")
    main, grid = bench.main_steps(), pareto.steps(pareto.SLICE)
    assert set(main) == set(steps.pipeline())  # every part finds the steps it reads
    assert main["teacher"] is not None and main["teacher"].key == grid["teacher"].key
    assert main["no_teacher"].key == grid["control plain 42"].key
    assert main["students"].stage.students == ["layers=3", "layers=2"] and main["students"].after == [grid["teacher"].name]
    assert bench._scale_record()["train_rows"] == pareto.SLICE.train_rows
    old = tmp_path / "dev.json"
    old.write_text(json.dumps({"steps": {"teacher": {}}}))  # a full run (no scale recorded)
    assert bench._results_so_far(old) == {"scale": bench._scale_record()}  # not mixed into the slice run
    old.write_text(json.dumps({"steps": {"teacher": {}}, "scale": bench._scale_record()}))
    assert bench._results_so_far(old)["steps"] == {"teacher": {}}
    monkeypatch.delenv("EDGEKD_BENCH_MAIN")
    assert bench._results_so_far(old) == {"scale": {"name": "full"}}
    monkeypatch.setenv("EDGEKD_BENCH_MAIN", "half")
    with pytest.raises(SystemExit, match="use full or slice"):
        bench.main_steps()


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


def _every_step(monkeypatch: pytest.MonkeyPatch, cache: Path) -> dict[str, object]:
    """Every step of every benchmark part in each of its settings, keyed by name, with $CACHE in `cache`
    (the parts write their data slices there while planning)."""
    import importlib

    modules = [importlib.import_module(f"benchmarks.{m}") for m in ("steps", "imbalance", "vocab", "adapt", "pareto",
                                                                    "diffattn", "serve", "embeddings")]
    for module in modules:
        if hasattr(module, "CACHE"):
            monkeypatch.setattr(module, "CACHE", cache)
    _, imbalance, vocab, adapt, pareto, diffattn, _, embeddings = modules
    plans = [steps.pipeline(), vocab.steps(), embeddings.steps(),
             *(imbalance.steps(s) for s in (imbalance.SLICE, imbalance.SMOKE)),
             *(adapt.steps(s) for s in adapt.SETTINGS.values()), *(pareto.steps(g) for g in pareto.GRIDS.values()),
             pareto.main_steps(pareto.SLICE),
             *(diffattn.steps(d, seed, sc) for sc in (diffattn.SMOKE, diffattn.FULL) for d in ("ag_news", "arabic_news_ant")
               for seed in {*diffattn.seeds(d, sc), 42, 43})]
    found: dict[str, object] = {}
    for plan in plans:
        for step in plan.values():
            assert found.setdefault(step.name, step).key == step.key, f"two configs write {step.name}"
    return found


def _paths(value: object) -> list[str]:
    if isinstance(value, dict):
        return [p for v in value.values() for p in _paths(v)]
    if isinstance(value, list):
        return [p for v in value for p in _paths(v)]
    return [value] if isinstance(value, str) and value.startswith("/") else []


def test_every_benchmark_step_is_its_command_and_waits_for_the_steps_it_reads(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each step's recorded command gives its config back through the verb's flags, and every cached output
    its config reads (a teacher, a student, a bundle) is a step in its `after`, so redoing that step redoes it."""
    import importlib

    from edgekd.cli import COMMANDS, parse

    cache = tmp_path / "cache"
    every = _every_step(monkeypatch, cache)
    assert len(every) > 100
    outputs = {str(s.outputs[0]): name for name, s in every.items()}
    for out in outputs:  # a step clears its output folder before it runs: none may hold another step's
        assert not [o for o in outputs if o != out and Path(out) in Path(o).parents], out
    for name, step in every.items():
        assert importlib.import_module(COMMANDS[step.verb]).stage_from_args(parse(step.command)).key() == step.key, name
        reads = {outputs[str(p)] for path in _paths(step.key) if path.startswith(str(cache)) and path != str(step.outputs[0])
                 for p in (Path(path), *Path(path).parents) if str(p) in outputs}
        assert reads <= set(step.after), f"{name} reads {reads - set(step.after)} without waiting for it"


def test_the_published_commands_are_the_configs_the_steps_run(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Before/after the runner merge: every `edgekd` command RESULTS.md published (the hand-written command lines
    the parts ran, with their measured results) parses to the same stage config as the typed step that now writes
    the same output, so those cached steps and their numbers stay what the current steps produce."""
    import importlib
    import re

    from edgekd.cli import COMMANDS, parse

    cache = tmp_path / "cache"
    every = _every_step(monkeypatch, cache)
    by_output = {str(s.outputs[0]): s for s in every.values()}
    text = (steps.ROOT / "benchmarks" / "RESULTS.md").read_text(encoding="utf-8")
    commands = re.findall(r"(?m)(?:`|^)edgekd ((?:baseline|train|distill|export|verify|adapt-vocab|prune-vocab) [^`\n]+)", text)
    # the embedding learning-rate sweep's setup (run by hand into a folder of the user's, not a runner step)
    sweep = {c.removeprefix("edgekd ") for path in (steps.ROOT / "benchmarks" / "results").glob("embedding-lr-*.json")
             for c in json.loads(path.read_text(encoding="utf-8"))["commands"]}
    assert sweep & set(commands)  # RESULTS.md shows it: skipped below by name, not by a loose rule
    matched = 0
    for line in (c for c in commands if c not in sweep):
        argv = [a.replace("$CACHE", str(cache)).replace("../shared", str(steps.DATA.parent)) for a in line.split()]
        stage = importlib.import_module(COMMANDS[argv[0]]).stage_from_args(parse(argv))
        out = str(stage.config.out_dir if argv[0] == "verify" else stage.out)
        assert out in by_output, f"no step writes {out} (published: edgekd {line})"
        assert by_output[out].key == stage.key(), f"edgekd {line}"
        matched += 1
    assert matched >= 30  # the main pipeline, the vocab part and the imbalance slice at least


def test_a_step_finished_before_the_runner_merge_still_publishes(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A step with only the old runner's stamp in its output folder counts as finished (its wall time as
    "seconds") for publishing; the one runner's own stamp wins once it exists, and a run redoes the step."""
    monkeypatch.setattr(steps, "CACHE", tmp_path)
    out = tmp_path / "ag_news" / "baseline"
    s = steps.step(steps.baseline(steps.data(tmp_path / "d"), out), out)
    assert steps.stamp(s) is None
    out.mkdir(parents=True)
    (out / steps.OLD_STAMP).write_text(json.dumps({"command": "edgekd baseline ...", "wall_time_s": 99.8}))
    assert steps.stamp(s)["seconds"] == 99.8 and steps.finished(s)["seconds"] == 99.8
    assert steps.runner().stale(s) == "not run yet"  # the old stamp covers publishing, not a run
    steps.runner().stamp_path(s).parent.mkdir(parents=True)
    steps.runner().stamp_path(s).write_text(json.dumps({"seconds": 1.5}))
    assert steps.stamp(s)["seconds"] == 1.5
    assert steps.finished(s) is None  # the one runner's stamp is of another config: not these outputs
    _stamp(s, 2.5, commit="0dfdf54aa")  # this config, run under older code (no source version): publishes
    assert steps.finished(s)["seconds"] == 2.5 and steps.commit(steps.finished(s)) == "0dfdf54"


def _stamp(s: steps.Step, seconds: float, commit: str | None = None) -> None:
    """A stamp of `s` as the runner writes it for this config and upstream, without a source version (the
    code it ran is unknown: `Runner.finished` accepts it, a run redoes it)."""
    r = steps.runner()
    r.stamp_path(s).parent.mkdir(parents=True, exist_ok=True)
    r.stamp_path(s).write_text(json.dumps({"hash": r.digest(s), "key": s.key, "seconds": seconds,
                                           **({"source": {"git_commit": commit}} if commit else {})}))


def test_the_adapt_part_publishes_each_finished_max_length_and_says_what_is_missing(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """`python -m benchmarks.adapt` runs nothing: a max_length whose six steps finished is measured (here with
    the measurements faked), the other is listed as missing and the section says the run is partial."""
    from benchmarks import adapt

    monkeypatch.setattr(adapt, "others", lambda result: [])  # the committed results of other settings
    monkeypatch.setattr(adapt, "tfidf_correct", lambda d, splits: np.ones(150, bool))
    monkeypatch.setenv("EDGEKD_BENCH_ADAPT", "smoke")
    for module in (steps, adapt):
        monkeypatch.setattr(module, "CACHE", tmp_path)
    plan = adapt.steps(adapt.SMOKE)
    short, long = adapt.SMOKE.max_lengths
    for name, s in plan.items():
        if name.endswith(f"-{long}"):
            continue  # the longer max_length has not run
        steps.out_dir(s).mkdir(parents=True, exist_ok=True)
        _stamp(s, 12.5)
    card = {"vocab_adaptation": {"vocab_size": 2000, "corpus_rows": 540, "init": {"copied": 1, "mean_of_pieces": 2, "unk": 0}}}
    (steps.out_dir(plan["adapt"]) / "edgekd-model.json").write_text(json.dumps(card))
    mlm = {"epochs": 1.0, "texts": 540, "steps": 17, "seconds": 90.0,
           "held_out": {"before": {"loss": 9.1, "accuracy": 0.0}, "after": {"loss": 6.2, "accuracy": 0.11}}}
    (steps.out_dir(plan["adapt-mlm"]) / "edgekd-model.json").write_text(
        json.dumps({"vocab_adaptation": {**card["vocab_adaptation"], "mlm": mlm}}))
    monkeypatch.setattr(adapt, "_headline", lambda d: {"accuracy": 0.5, "f1_macro": 0.4, "n": 150})
    monkeypatch.setattr(adapt, "tokenization", lambda d, texts, n: {"tokens_per_1000_chars": 250.0, "truncated_share": 0.5})
    # the English student without an int8 artifact (accuracy control dropped it): its fp32 is scored and timed
    monkeypatch.setattr(adapt, "int8_scores", lambda b, spec: {
        "precision": "fp32" if b.name.startswith("english") else "int8", "accuracy": 0.45, "f1_macro": 0.4, "n": 150})
    monkeypatch.setattr(adapt, "latency", lambda bundles, texts, runs: {
        **{f"{v} fp32": {"p50_ms": 4.0 + v.startswith("english")} for v in bundles},
        **{f"{v} int8": {"p50_ms": 3.0} for v in bundles if not v.startswith("english")}})
    result = adapt.study(lambda m: None, run=False)
    assert [(r["vocab"], r["max_length"]) for r in result["rows"]] == [
        ("english", short), ("adapted", short), ("adapted-mlm", short)]
    assert result["partial"] and sorted(result["missing"]) == sorted(n for n in plan if n.endswith(f"-{long}"))
    assert {c["wall_time_s"] for c in result["commands"]} == {12.5}
    assert list(result["verdict"]) == [str(short), f"{short} adapted-mlm"]
    assert plan["adapt-mlm"].stage.mlm.epochs == 1 and plan["adapt"].stage.mlm.epochs == 0
    assert plan[f"teacher adapted-mlm-{short}"].after == [plan["adapt-mlm"].name]
    # both max_lengths' English and adapted arms run before the masked-LM step and its arms
    order = list(plan)
    assert order.index(f"bundle adapted-{long}") < order.index("adapt-mlm") < order.index(f"teacher adapted-mlm-{short}")
    text = "\n".join(adapt.markdown(result, "dev"))
    assert "1 epochs of masked-LM training on the 540 training texts" in text and "9.100 -> 6.200" in text
    assert "**Partial run**" in text and f"| adapted | {short} |" in text and f"| english | {long} |" not in text
    p50 = {r["vocab"]: (r["student_p50_ms"], r["student_fp32_p50_ms"]) for r in result["rows"]}
    assert p50 == {"english": (5.0, 5.0), "adapted": (3.0, 4.0), "adapted-mlm": (3.0, 4.0)}
    assert "| 3.00 | 4.00 |" in text and "| 5.00 | 5.00 |" in text
    # the section ends with the committed embedding learning-rate sweep, one row per (vocabulary, rate)
    assert "### The word-embedding learning rate after the swap" in text
    assert "| adapted | 0.0001 (= body) | 0.2933 / 0.0756 | stopped | stopped |" in text
    assert "| adapted | 0.003 | 0.7940 / 0.6576 | 0.8173 / 0.7745 | 0.8193 / 0.7900 |" in text


def test_an_adapt_setting_without_the_masked_lm_arm_plans_and_publishes_only_its_arms(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A setting naming its arms (FULL1: English and adapted) plans no masked-LM step, publishes whole without
    one, and its note heads the section."""
    import dataclasses

    from benchmarks import adapt

    full1 = adapt.steps(adapt.FULL1)
    assert not [n for n in full1 if "mlm" in n] and {n.rsplit("-", 1)[-1] for n in full1 if " " in n} == {"128"}
    assert full1["teacher adapted-128"].stage.train.epochs == 1.0 and full1["adapt"].stage.size == 16000
    monkeypatch.setattr(adapt, "others", lambda result: [])
    s = dataclasses.replace(adapt.SMOKE, vocabs=("english", "adapted"), note="Cut to fit one session.")
    monkeypatch.setattr(adapt, "setting", lambda: s)
    for module in (steps, adapt):
        monkeypatch.setattr(module, "CACHE", tmp_path)
    plan = adapt.steps(s)
    assert not [n for n in plan if "mlm" in n]
    for st in plan.values():
        steps.out_dir(st).mkdir(parents=True, exist_ok=True)
        _stamp(st, 3.0)
    card = {"vocab_adaptation": {"vocab_size": 2000, "corpus_rows": 540, "init": {"copied": 1, "mean_of_pieces": 2, "unk": 0}}}
    (steps.out_dir(plan["adapt"]) / "edgekd-model.json").write_text(json.dumps(card))
    monkeypatch.setattr(adapt, "_headline", lambda d: {"accuracy": 0.5, "f1_macro": 0.4, "n": 150})
    monkeypatch.setattr(adapt, "tokenization", lambda d, texts, n: {"tokens_per_1000_chars": 250.0, "truncated_share": 0.5})
    i = np.arange(150)
    right, tfidf = i < 90, ((i >= 10) & (i < 80)) | (i >= 140)  # only the student: 0-9, 80-89; only TF-IDF: 140-149
    monkeypatch.setattr(adapt, "tfidf_correct", lambda d, splits: tfidf)
    monkeypatch.setattr(adapt, "int8_scores", lambda b, spec: {
        "precision": "int8", "accuracy": 0.5, "f1_macro": 0.4, "n": 150, "correct": right})
    monkeypatch.setattr(adapt, "latency", lambda bundles, texts, runs: {
        f"{v} {p}": {"p50_ms": 3.0} for v in bundles for p in ("fp32", "int8")})
    result = adapt.study(lambda m: None, run=False)
    assert "partial" not in result and result["mlm"] is None and result["note"] == "Cut to fit one session."
    assert [(r["vocab"], r["max_length"]) for r in result["rows"]] == [
        (v, n) for n in s.max_lengths for v in ("english", "adapted")]
    assert list(result["verdict"]) == [str(n) for n in s.max_lengths]
    # student - TF-IDF on the same texts, with its paired interval (recomputed here from the discordant counts)
    m = result["verdict"][str(s.max_lengths[0])]["vs_tfidf"]
    b, c = 20, 10
    assert (m["only_student"], m["only_tfidf"], m["n"]) == (b, c, 150)
    se = 100 * ((b + c - (b - c) ** 2 / 150) ** 0.5) / 150
    assert m["points"] == pytest.approx(100 * (b - c) / 150, abs=0.01)
    assert m["ci_points"] == pytest.approx([m["points"] - 1.96 * se, m["points"] + 1.96 * se], abs=0.01)
    assert "vs_tfidf" not in next(r for r in result["rows"] if r["vocab"] == "english")
    assert all("correct" not in r["student_onnx_int8"] for r in result["rows"])  # the arrays stay out of the JSON
    text = "\n".join(adapt.markdown(result, "dev"))
    assert "Cut to fit one session." in text and "masked-LM training on" not in text
    assert f"student - TF-IDF +6.67 pt, paired 95% CI {m['ci_points'][0]:+.2f} to {m['ci_points'][1]:+.2f}; " \
           "right only for the student 20, only for TF-IDF 10, of 150" in text


def test_full1_256_adds_both_arms_at_256_to_full1s_cache() -> None:
    """A setting can add arms to another's cache: FULL1_256 trains both arms at 256 in full1's cache folder,
    reusing its baseline and vocabulary (same output folders)."""
    from benchmarks import adapt

    full1, long = adapt.steps(adapt.FULL1), adapt.steps(adapt.FULL1_256)
    assert [n for n in long if " " in n and not n.startswith("adapt")] == [
        "teacher english-256", "student english-256", "bundle english-256",
        "teacher adapted-256", "student adapted-256", "bundle adapted-256"]
    for name in ("baseline", "adapt"):
        assert steps.out_dir(long[name]) == steps.out_dir(full1[name])
    assert steps.out_dir(long["teacher english-256"]).parent == steps.out_dir(full1["teacher english-128"]).parent
    assert long["teacher adapted-256"].stage.train.max_length == 256


def test_imbalance_publishes_a_step_only_while_its_config_still_matches(tmp_path: Path,
                                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """`finished_wall_time` (what `python -m benchmarks.imbalance` publishes without running): the wall time of
    a finished step of this config; None without metrics.json, or once its stamp is of another config."""
    from benchmarks import imbalance

    monkeypatch.setattr(steps, "CACHE", tmp_path)
    out = tmp_path / "t"
    s = steps.step(steps.train(steps.data(tmp_path / "d"), out), out)
    _stamp(s, 7.5)
    assert imbalance.finished_wall_time(s) is None  # no metrics.json: not finished
    out.mkdir(parents=True)
    (out / "metrics.json").write_text("{}")
    assert imbalance.finished_wall_time(s) == 7.5
    steps.runner().stamp_path(s).write_text(json.dumps({"hash": "another config", "seconds": 1.0}))
    assert imbalance.finished_wall_time(s) is None


def test_imbalance_runs_chosen_datasets_and_carries_the_others(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """EDGEKD_BENCH_IMBALANCE_DATASETS plans only the datasets it names (arabic_news_ant's teachers start from
    an adapt-vocab step of their own seed, the default's models before `none`'s), and `carry` takes the others'
    rows, commands and device from an earlier results file of the same setting."""
    import benchmarks.__main__ as bench
    from benchmarks import imbalance, steps

    for module in (imbalance, steps):
        monkeypatch.setattr(module, "CACHE", tmp_path / "cache")
    monkeypatch.setenv("EDGEKD_BENCH_IMBALANCE_DATASETS", "arabic_news_ant")
    plan = imbalance.steps(imbalance.SMOKE)
    assert {n.split()[0] for n in plan} == {"arabic_news_ant"}
    assert list(plan)[:3] == ["arabic_news_ant baseline 42", "arabic_news_ant adapt 42", "arabic_news_ant teacher default 42"]
    teacher = plan["arabic_news_ant teacher none 42"]
    adapt = plan["arabic_news_ant adapt 42"]
    assert teacher.stage.model == str(adapt.outputs[0]) and teacher.after == [adapt.name]
    monkeypatch.setenv("EDGEKD_BENCH_IMBALANCE_DATASETS", "arabic_news_ant,nope")
    with pytest.raises(SystemExit, match="unknown nope"):
        imbalance.steps(imbalance.SMOKE)

    monkeypatch.setattr(bench, "RESULTS", tmp_path / "results")
    (tmp_path / "results").mkdir()
    earlier = {"device": {"device_id": "dev-0"}, "setting": "smoke",
               "models": [_imbalance_row("ag_news_imbalanced", "baseline", "-", 42, 0.5),
                          _imbalance_row("arabic_news_ant", "baseline", "-", 42, 0.7)],
               "commands": {"ag_news_imbalanced baseline 42": "edgekd baseline ...", "arabic_news_ant baseline 42": "x"}}
    (tmp_path / "results" / "imbalance-dev-0.json").write_text(json.dumps(earlier))
    (tmp_path / "results" / "imbalance-dev-9.json").write_text(json.dumps(earlier | {"setting": "slice"}))
    models, commands = [_imbalance_row("arabic_news_ant", "baseline", "-", 42, 0.8)], {"arabic_news_ant baseline 42": "y"}
    assert imbalance.carry(imbalance.SMOKE, {"ag_news_imbalanced"}, models, commands) == {"ag_news_imbalanced": "dev-0"}
    assert [(m["dataset"], m.get("device")) for m in models] == [("arabic_news_ant", None), ("ag_news_imbalanced", "dev-0")]
    assert commands == {"arabic_news_ant baseline 42": "y", "ag_news_imbalanced baseline 42": "edgekd baseline ..."}


def test_embeddings_rows_compare_with_the_unpruned_8bit_int8(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The embeddings part: each bundle's int8 against the unpruned 8-bit int8 (agreement and drop recomputed
    from the predictions here), the shipped rows as the manifest says, and the target judged on ONNX int8."""
    from benchmarks import embeddings

    monkeypatch.setattr(embeddings, "CACHE", tmp_path)
    monkeypatch.setattr(steps, "CACHE", tmp_path)
    plan = embeddings.steps()
    assert [n for n in plan if n.startswith("bundle_")] == [
        f"bundle_{v}_e{b}" for v in ("unpruned", "min-1", "min-2") for b in (8, 4)]
    assert plan["bundle_min-1_e4"].stage.options.embedding_bits == 4 and "--embedding-bits" not in plan[
        "bundle_min-1_e8"].command
    y = [0, 1, 2, 3] * 25
    ref = [*y[:99], 0]  # the unpruned int8: 99 of 100 right
    size = {"bundle_unpruned_e8": 15.8e6, "bundle_unpruned_e4": 11.4e6, "bundle_min-1_e8": 12.9e6,
            "bundle_min-1_e4": 8.8e6, "bundle_min-2_e8": 11.7e6, "bundle_min-2_e4": 8.1e6}
    preds = {n: ref if n.endswith("e8") else [*ref[:98], 3, 0] for n in size}  # 4-bit: one more flip
    preds["bundle_min-1_e4"] = ref

    def evaluate(bundle: Path, log: object) -> dict[str, object]:
        name = next(n for n, s in plan.items() if steps.out_dir(s) == bundle)
        acc = float(np.mean(np.asarray(preds[name]) == np.asarray(y)))
        return {a: {"bytes": size[name] * (4 if a == "onnx-fp32" else 1), "accuracy": acc, "predictions": preds[name]}
                for a in ("onnx-fp32", "onnx-int8")}

    for name, s in plan.items():
        steps.out_dir(s).mkdir(parents=True, exist_ok=True)
        if name.startswith("prune_"):
            (steps.out_dir(s) / "edgekd-model.json").write_text(json.dumps({"vocab_pruning": {"vocab_size": 23184}}))
        if name.startswith("bundle_"):
            rows = {"bits": 4, "block_size": 64} if name.endswith("e4") else {"bits": 8}
            if name == "bundle_min-2_e4":
                rows = {"bits": 8, "requested_bits": 4, "reason": "..."}
            (steps.out_dir(s) / "edgekd.json").write_text(json.dumps({"artifacts": [
                {"precision": "fp32", "quantization": {}},
                {"precision": "int8", "quantization": {"variant": "static-qdq", "embedding_rows": rows}}],
                "provenance": {"position_rows": [{"module": "bert.embeddings.position_embeddings", "rows": 64,
                                                  "of": 512}]}}))
    monkeypatch.setattr(embeddings, "run_step", lambda s, log: {"command": "c", "wall_time_s": 1.0})
    monkeypatch.setattr(embeddings.vocab, "evaluate", evaluate)
    result = embeddings.study(lambda m: None)
    by = {(r["min_count"], r["embedding_bits"]): r["artifacts"]["onnx-int8"] for r in result["rows"]}
    assert by[(None, 8)] == {"mb": 15.8, "accuracy": 0.99, "agreement_with_same": 1.0, "agreement_with_int8": 1.0,
                             "drop_points_vs_int8": 0.0}
    assert by[(None, 4)]["agreement_with_int8"] == 0.99 and by[(None, 4)]["drop_points_vs_int8"] == 1.0
    assert result["target"]["verdict"] == {"holding": ["min-1, 4-bit rows"], "met": True}  # 8.8 MB, same predictions
    text = "\n".join(embeddings.markdown(result, "dev"))
    assert "| 1 | 23,184 | 4-bit | onnx-int8 | 4-bit, block 64 | 8.80 | 0.9900 | +0.00 | 1.0000 |" in text
    assert "8-bit (4-bit rejected by accuracy control)" in text and "**met** by min-1, 4-bit rows." in text
    assert "the position table keeps the 64 rows max_length reads, of 512" in text  # from the manifest
    src = {x["change"]: x["agreement"] for x in result["sources"]}
    assert src["4-bit rows vs 8-bit rows, int8 of unpruned"] == 0.99 and src["4-bit rows vs 8-bit rows, int8 of min-1"] == 1.0
    assert src["int8 (unpruned, 8-bit rows) vs its fp32"] == 1.0 and "4-bit rows vs 8-bit rows, int8 of min-2: 0.9900" in text


def test_vocab_rows_with_4bit_bundles_judge_the_target_on_every_int8_artifact(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """The vocab part: 8-bit bundles to every target and ONNX-only 4-bit bundles, each row against the unpruned
    8-bit bundle's same artifact (agreement and drop recomputed here from the predictions), the rows each int8
    artifact ships, the flips' sources, and the target: every int8 artifact a 2-layer bundle has must hold it."""
    from benchmarks import vocab

    monkeypatch.setattr(vocab, "CACHE", tmp_path)
    monkeypatch.setattr(steps, "CACHE", tmp_path)
    monkeypatch.setattr(vocab, "LAYERS", (2,))
    plan = vocab.steps()
    bundles = [n for n in plan if n.startswith("bundle_")]
    assert bundles == ["bundle_2_full", "bundle_2_1_e4", "bundle_2_1", "bundle_2_2_e4", "bundle_2_full_e4", "bundle_2_2",
                       "bundle_2_5", "bundle_2_20"]
    for n in bundles:  # every bundle trims its position table; only the 8-bit ones go to every target
        options = plan[n].stage.options
        assert options.trim_positions and (options.embedding_bits, options.targets) == (
            (4, "onnx") if n.endswith("_e4") else (8, "onnx,openvino,coreml"))
    y = [0, 1, 2, 3] * 50
    ref = [*y[:198], 0, 0]  # the unpruned student's int8 artifacts: 198 of 200 right
    flip = [*ref[:196], 3, 3, 0, 0]  # two more flips, both wrong
    size = {"bundle_2_full": 15.8e6, "bundle_2_full_e4": 9.9e6, "bundle_2_1": 12.9e6, "bundle_2_1_e4": 8.5e6,
            "bundle_2_2": 11.7e6, "bundle_2_2_e4": 7.9e6, "bundle_2_5": 9.8e6, "bundle_2_20": 7.1e6}
    preds = {n: flip for n in size} | {"bundle_2_full": ref, "bundle_2_1": ref}
    preds_ov = dict(preds)
    preds["bundle_2_1_e4"] = ref  # the 4-bit min-1 ONNX int8 agrees with the reference on every text

    def evaluate(bundle: Path, log: object) -> dict[str, object]:
        name = next(n for n, s in plan.items() if steps.out_dir(s) == bundle)
        out = {}
        for a in ("onnx-fp32", "onnx-int8") + (() if name.endswith("_e4") else ("openvino-int8",)):
            p = preds_ov[name] if a == "openvino-int8" else preds[name]
            out[a] = {"bytes": size[name] * (4 if a.endswith("fp32") else 1), "predictions": p,
                      "accuracy": float(np.mean(np.asarray(p) == np.asarray(y)))}
        return out

    card = {"vocab_size": 23184, "original_vocab_size": 30522, "test_after": {"unk_rate": 0.0, "tokens_per_text": 51.0},
            "test_before": {"unk_rate": 0.0, "tokens_per_text": 50.8}, "accuracy": 0.99, "accuracy_unpruned": 0.99,
            "agreement": 0.998, "weights_bytes_after": 51.2e6}
    for name, s in plan.items():
        steps.out_dir(s).mkdir(parents=True, exist_ok=True)
        if name.startswith("prune_"):
            m = int(name.split("_")[2])
            (steps.out_dir(s) / "edgekd-model.json").write_text(json.dumps({"vocab_pruning": card | {"min_count": m}}))
        if name.startswith("bundle_"):
            rows = {"bits": 4, "block_size": 128} if name.endswith("_e4") else {"bits": 8}
            if name == "bundle_2_2_e4":
                rows = {"bits": 8, "requested_bits": 4, "reason": "..."}
            (steps.out_dir(s) / "edgekd.json").write_text(json.dumps({"artifacts": [
                {"backend": "onnx", "precision": "fp32", "quantization": {}},
                {"backend": "onnx", "precision": "int8", "quantization": {"embedding_rows": rows}}]}))
    monkeypatch.setattr(vocab, "run_step", lambda s, log: {"command": "c", "wall_time_s": 1.0})
    monkeypatch.setattr(vocab, "evaluate", evaluate)
    result = vocab.study(lambda m: None)
    by = {(r["min_count"], r["embedding_bits"]): r for r in result["rows"]}
    assert by[(None, 8)]["artifacts"]["onnx-int8"]["agreement_with_unpruned"] is None  # the reference itself
    assert by[(None, 4)]["artifacts"]["onnx-int8"] == {"mb": 9.9, "accuracy": 0.98, "agreement_with_unpruned": 0.99,
                                                      "drop_points": 1.0}
    # min-1 at 8 bits: 12.9 MB is over the size; min-1 4-bit: 8.5 MB, same predictions; min-5: its OpenVINO
    # int8 flips, so the bundle fails although its size would do
    assert result["target"]["verdict"] == {"holding": ["min-count 1, 4-bit rows"], "pick": "min-count 1, 4-bit rows"}
    src = {x["change"]: x["agreement"] for x in result["sources"][2]}
    assert src == {"int8 (unpruned, 8-bit rows) vs its fp32": 1.0, "pruning at min-count 1, fp32 vs unpruned fp32": 1.0,
                   "pruning at min-count 2, fp32 vs unpruned fp32": 0.99, "pruning at min-count 5, fp32 vs unpruned fp32": 0.99,
                   "pruning at min-count 20, fp32 vs unpruned fp32": 0.99, "4-bit rows vs 8-bit rows, int8 of unpruned": 0.99,
                   "4-bit rows vs 8-bit rows, int8 of min-1": 1.0, "4-bit rows vs 8-bit rows, int8 of min-2": 1.0}
    text = "\n".join(vocab.markdown(result, "dev"))
    assert "| 2-layer | 1 | 23,184 | 0.0000% | onnx-int8 | 4-bit, block 128 | 8.50 | 0.9900 | +0.00 | 1.0000 |" in text
    assert "| 2-layer | 2 | 23,184 | 0.0000% | onnx-int8 | 8-bit (4-bit rejected by accuracy control) | 7.90 |" in text
    assert "| 2-layer | 1 | 23,184 | 0.0000% | openvino-int8 | 8-bit | 12.90 | 0.9900 | +0.00 | 1.0000 |" in text
    assert text.count("| pytorch-fp32 |") == 4  # once per pruned checkpoint, not again for its 4-bit bundle
    assert text.count("| 2-layer | 1 | 23,184 | 0.0000% | onnx-fp32 |") == 1  # nor its fp32 artifact
    assert "**met** by min-count 1, 4-bit rows (the least pruned: min-count 1, 4-bit rows)." in text
    assert "4-bit rows vs 8-bit rows, int8 of unpruned: 0.9900" in text


def test_vocab_evaluate_reuses_an_artifact_another_bundle_evaluated_with_the_same_inputs(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A 4-bit bundle's fp32 model is byte for byte its 8-bit bundle's: evaluate takes that record instead of
    running the test split again, but only when the tokenizer file and settings match too."""
    import edgekd
    from benchmarks import vocab

    labels = ["Business", "Sci/Tech", "Sports", "World"]
    settings = {"max_length": 64, "pad_id": 0, "truncation_side": "right"}

    def bundle(name: str, int8_sha: str, tokenizer: str) -> Path:
        b = tmp_path / "bundles" / name
        b.mkdir(parents=True)
        (b / "tokenizer.json").write_text(tokenizer)
        (b / "edgekd.json").write_text(json.dumps({"labels": labels, "tokenizer": settings, "artifacts": [
            {"backend": "onnx", "precision": "fp32", "sha256": "same-fp32", "bytes": 4},
            {"backend": "onnx", "precision": "int8", "sha256": int8_sha, "bytes": 1}]}))
        return b

    loaded: list[tuple[str, str]] = []

    class Fake:
        def __init__(self, path: str, backend: str, precision: str) -> None:
            loaded.append((Path(path).name, precision))

        def logits(self, texts: list[str], batch_size: int) -> np.ndarray:
            return np.eye(4)[np.arange(len(texts)) % 4]

    monkeypatch.setattr(edgekd, "load", lambda path, backend, precision: Fake(path, backend, precision))
    first = vocab.evaluate(bundle("e8", "int8-a", "{}"), lambda m: None)
    assert loaded == [("e8", "fp32"), ("e8", "int8")] and "same_as" not in first["onnx-fp32"]
    second = vocab.evaluate(bundle("e4", "int8-b", "{}"), lambda m: None)
    assert loaded[2:] == [("e4", "int8")]  # its fp32 artifact is e8's: not run again
    assert second["onnx-fp32"]["same_as"] == "e8" and second["onnx-fp32"]["seconds"] == 0
    assert second["onnx-fp32"]["predictions"] == first["onnx-fp32"]["predictions"]
    vocab.evaluate(bundle("other-tokenizer", "int8-c", '{"model": {}}'), lambda m: None)
    assert loaded[3:] == [("other-tokenizer", "fp32"), ("other-tokenizer", "int8")]
    assert vocab.evaluate(tmp_path / "bundles" / "e4", lambda m: None) == second and len(loaded) == 5  # cached


def test_adapt_carries_a_whole_max_length_from_an_earlier_run_of_its_setting(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A max_length this cache cannot give (a step there to redo) comes whole from the newest results file of the
    same setting: every vocabulary's row and its steps' commands, marked carried; other settings' files are not read."""
    import benchmarks.__main__ as main
    from benchmarks import adapt

    monkeypatch.setattr(main, "RESULTS", tmp_path)
    short, long = adapt.SMOKE.max_lengths
    row = {"tokenization": {"tokens_per_1000_chars": 250.0, "truncated_share": 0.5},
           **{k: {"accuracy": 0.5, "f1_macro": 0.4} for k in ("teacher", "student")},
           "student_onnx_int8": {"precision": "int8", "accuracy": 0.45, "f1_macro": 0.4}, "student_p50_ms": 3.0}
    earlier = {"setting": "smoke", "device": {"device_id": "dev-a"},
               "rows": [dict(row, vocab=v, max_length=n) for n in (short, long) for v in ("english", "adapted")],
               "commands": [{"step": f"teacher {v}-{n}", "command": "c", "wall_time_s": 1.0}
                            for n in (short, long) for v in ("english", "adapted")]}
    (tmp_path / "adapt-dev-a.json").write_text(json.dumps(earlier))
    (tmp_path / "adapt-dev-b.json").write_text(json.dumps(dict(earlier, setting="slice", device={"device_id": "b"})))
    rows = [dict(row, vocab="english", max_length=short), dict(row, vocab="adapted", max_length=short)]
    commands = [{"step": f"teacher english-{short}", "command": "now", "wall_time_s": 2.0}]
    carried = adapt.carry(adapt.SMOKE, {long}, rows, commands)
    assert carried == {str(long): "adapt-dev-a.json (dev-a)"}
    assert [(r["vocab"], r["max_length"], r.get("carried", False)) for r in rows] == [
        ("english", short, False), ("adapted", short, False), ("english", long, True), ("adapted", long, True)]
    assert [c["step"] for c in commands if c.get("carried")] == [f"teacher english-{long}", f"teacher adapted-{long}"]
    assert adapt.carry(adapt.SMOKE, set(), rows, commands) == {}


def test_the_adapt_section_keeps_every_other_published_setting_and_each_setting_has_its_own_file(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Publishing one setting writes adapt-<setting>-<device>.json (full: adapt-<device>.json) and its section
    ends with the newest table of each other setting, read back from its results file."""
    import benchmarks.__main__ as main
    from benchmarks import adapt

    monkeypatch.setattr(main, "RESULTS", tmp_path)
    assert [adapt.results_tag({"setting": s}) for s in ("full", "full1", "slice")] == [
        "adapt", "adapt-full1", "adapt-slice"]
    row = {"tokenization": {"tokens_per_1000_chars": 250.0, "truncated_share": 0.5},
           **{k: {"accuracy": 0.5, "f1_macro": 0.4} for k in ("teacher", "student")},
           "student_onnx_int8": {"precision": "int8", "accuracy": 0.8271, "f1_macro": 0.4}, "student_p50_ms": 3.0}
    slice_result = {"setting": "slice", "device": {"device_id": "dev-a"}, "epochs": "3", "partial": True,
                    "commands": [{"step": "baseline", "command": "edgekd baseline --data D --out B", "wall_time_s": 46.25}],
                    "baseline": {"accuracy": 0.8308}, "adaptation": {"vocab_size": 8000},
                    "rows": [dict(row, vocab=v, max_length=128) for v in ("english", "adapted")],
                    "verdict": {"128": {"student_int8": 0.8271, "tfidf": 0.8308, "english_teacher": 0.5, "met": False}}}
    # the newest result of a setting is shown, by the time it records: file times in a checkout say nothing
    (tmp_path / "adapt-slice-dev-a.json").write_text(json.dumps(dict(slice_result, written="2026-12-06T23:00:00+00:00")))
    older = dict(slice_result, device={"device_id": "dev-old"}, written="2026-11-30T00:10:00+00:00")
    (tmp_path / "adapt-slice-dev-old.json").write_text(json.dumps(older))
    os.utime(tmp_path / "adapt-slice-dev-a.json", (1, 1))  # the newer result has the older file time
    (tmp_path / "adapt-full1-dev-a.json").write_text(json.dumps(dict(slice_result, setting="full1")))  # this one
    text = "\n".join(adapt.others({"setting": "full1"}))
    assert "### The `slice` setting (results/adapt-slice-dev-a.json, `dev-a`)" in text and "dev-old" not in text
    assert adapt.SLICE.note in text and "TF-IDF + LR on the same rows: 0.8308; 3 epochs" in text
    assert "| adapted | 128 |" in text and "max_length 128: 0.8271 vs 0.8308 / 0.5000 -> **not met**" in text
    assert "full1" not in text and "Partial run" in text
    assert "| baseline | `edgekd baseline --data D --out B` | 46.2 s |" in text  # its steps, with wall times


def test_tfidf_correct_recomputes_the_baselines_own_test_accuracy(tmp_path: Path) -> None:
    """The adapt verdict's per-text TF-IDF correctness (label names compared) gives back the accuracy the
    baseline step wrote, on a small real slice of arabic_news_ant."""
    from benchmarks import adapt
    from edgekd.train.baseline import train_baseline

    spec = steps.data(steps.head_slice("arabic_news_ant", tmp_path / "data", {"train": 400, "test": 120}),
                      text_columns=("title", "text"))
    train_baseline(spec, tmp_path / "baseline")
    from edgekd.data import load_splits

    right = adapt.tfidf_correct(tmp_path / "baseline", load_splits(spec))
    written = json.loads((tmp_path / "baseline" / "metrics.json").read_text())["accuracy"]
    assert right.shape == (120,) and right.dtype == bool and 0 < right.mean() < 1
    assert right.mean() == pytest.approx(written, abs=1e-12)


def test_the_rounding_harness_is_the_4bit_artifact_with_its_table_fed(tiny_bert: Path, tmp_path: Path) -> None:
    """benchmarks/rounding.py: numpy's `block_rows` is, value for value, the table ONNX Runtime computes from
    the exporter's 4-bit rows; the harness graph fed that table gives the 4-bit model's logits exactly, and
    reads the table it is fed (another rounding moves the logits). The entropy bound never holds the target."""
    from types import SimpleNamespace

    import onnx
    import onnxruntime as ort

    from benchmarks import rounding
    from edgekd.exporters import onnx as onnx_mod

    src = onnx_mod.raw_onnx(SimpleNamespace(model_dir=tiny_bert, workdir=tmp_path, shared={}, options={}))
    onnx_mod._word_embedding_int4(src, tmp_path / "emb4.onnx", 16)
    model, float_graph = onnx.load(str(tmp_path / "emb4.onnx")), onnx.load(str(src)).graph
    word = onnx_mod.word_embedding_gather(float_graph)
    fp32 = onnx.numpy_helper.to_array(next(i for i in float_graph.initializer if i.name == word.input[0]))
    shipped = rounding.shipped_table(model)
    assert shipped.shape == fp32.shape and np.array_equal(rounding.block_rows(fp32, 4, block=16), shipped)
    assert 0 < np.abs(shipped - fp32).max() < 0.1 * np.abs(fp32).max()

    rng = np.random.default_rng(0)
    feed = {"input_ids": rng.integers(0, fp32.shape[0], (3, 12)), "attention_mask": np.ones((3, 12), np.int64),
            "token_type_ids": np.zeros((3, 12), np.int64)}
    ort_session = ort.InferenceSession(model.SerializeToString(), providers=["CPUExecutionProvider"])
    expected = ort_session.run(None, {i.name: feed[i.name] for i in ort_session.get_inputs()})[0]
    graph = rounding.table_graph(model)
    assert not any(n.op_type == "GatherBlockQuantized" for n in graph.graph.node)
    harness = rounding.TableSession(graph, [i.name for i in ort_session.get_inputs()])
    harness.table = shipped
    np.testing.assert_array_equal(harness.run(feed), expected)
    harness.table = rounding.block_rows(fp32, 3, block=16)
    assert not np.allclose(harness.run(feed), expected, atol=1e-4)

    bound = {"runnable": False, "artifact_mb": 1.0, "agreement": 1.0, "drop_points": 0.0}
    assert not rounding.holds(bound) and rounding.holds(bound | {"runnable": True})
