"""The Pareto benchmark part (benchmarks/pareto.py) on made-up rows: frontier marking, the target's
verdict, the section and chart; and the grid's steps (nothing is trained here)."""

from __future__ import annotations

from pathlib import Path

import pytest

from benchmarks import pareto
from edgekd.train.students import parse_student_spec


def _rows() -> list[dict]:
    def row(model: str, kind: str, acc: float, p50: float, size: float, precision: str | None = "fp32") -> dict:
        return {"model": model, "kind": kind, "precision": precision, "accuracy": acc, "p50_ms": p50,
                "bytes": size * 1e6, "speedup": 20.0 / p50, "accuracy_share": acc / 0.92, "n": 100}
    return [row("teacher", "teacher", 0.92, 20.0, 90.0), row("baseline", "baseline", 0.90, 0.5, 30.0, None),
            row("a fp32", "student", 0.915, 4.0, 95.0), row("a int8", "student", 0.913, 2.4, 16.0, "int8"),
            row("b int8", "student", 0.905, 2.0, 12.0, "int8"),  # faster than a, less accurate: frontier
            row("c fp32", "student", 0.900, 5.0, 50.0)]  # slower and worse than a: never on a frontier


def test_frontier_marks_the_models_nothing_beats() -> None:
    rows = _rows()
    pareto.mark_frontier(rows)
    on = {r["model"]: (r["frontier_latency"], r["frontier_size"]) for r in rows}
    assert {m for m, (lat, _) in on.items() if lat} == {"baseline", "b int8", "a int8", "a fp32", "teacher"}
    assert {m for m, (_, size) in on.items() if size} == {"b int8", "a int8", "teacher"}
    assert on["c fp32"] == (False, False)
    # A tie on cost keeps only the more accurate model.
    assert pareto.frontier([{"model": "x", "p50_ms": 1.0, "accuracy": 0.8},
                            {"model": "y", "p50_ms": 1.0, "accuracy": 0.9}], "p50_ms") == {"y"}


def test_verdict_needs_speed_accuracy_and_the_frontier() -> None:
    rows = _rows()
    pareto.mark_frontier(rows)
    v = pareto.verdict(rows)  # a int8: 8.33x at 99.2% of the teacher, on the frontier
    assert v == {"met": True, "best": "a int8", "fastest_accurate": "a int8", "most_accurate_fast": "a int8"}
    for r in rows:
        if r["model"] == "a int8":
            r["accuracy"], r["accuracy_share"] = 0.90, 0.90 / 0.92
    pareto.mark_frontier(rows)
    v = pareto.verdict(rows)
    assert not v["met"] and v["fastest_accurate"] == "a fp32" and v["most_accurate_fast"] == "b int8"


def test_the_target_needs_the_back_to_back_speed_up_too() -> None:
    rows = _rows()
    for r in rows:
        r["speedup_back_to_back"] = r["speedup"] * (0.9 if r["model"] == "a int8" else 1.0)  # 8.33x -> 7.5x
    pareto.mark_frontier(rows)
    v = pareto.verdict(rows)
    assert not v["met"] and v["fastest_accurate"] == "a int8"
    rows[3]["speedup_back_to_back"] = 8.1
    assert pareto.verdict(rows)["best"] == "a int8"


def test_add_latency_takes_both_speed_ups_from_each_group() -> None:
    rows = [{"model": "teacher", "kind": "teacher", "accuracy": 0.9},
            {"model": "baseline", "kind": "baseline", "accuracy": 0.8, "precision": None},
            {"model": "s int8", "kind": "student", "accuracy": 0.89, "precision": "int8"}]
    t = {"p50_ms": 16.0}
    groups = {"baseline": {"teacher": t, "baseline": {"p50_ms": 0.5}},
              "s": {"teacher": {"p50_ms": 18.0}, "int8": {"p50_ms": 2.0},
                    "back_to_back": {"teacher": {"p50_ms": 15.0}, "int8": {"p50_ms": 2.5}}}}
    pareto._add_latency(rows, groups)
    by = {r["model"]: r for r in rows}
    assert by["teacher"]["p50_ms"] == 17.0  # the median of the groups' teacher timings
    assert by["s int8"]["speedup"] == 9.0 and by["s int8"]["speedup_back_to_back"] == 6.0
    assert by["baseline"]["speedup_back_to_back"] is None and abs(by["s int8"]["accuracy_share"] - 0.89 / 0.9) < 1e-12


def test_section_and_chart(tmp_path: Path) -> None:
    rows = _rows()
    pareto.mark_frontier(rows)
    result = {"grid": {"name": "full", "specs": ["layers=2,ffn=384"], "epochs": "2", "train_rows": None,
                       "targets": "onnx", "runs": 100, "latency_texts": 500},
              "rows": rows, "target": pareto.TARGET | pareto.verdict(rows), "dropped": {"b": ["onnx-int8 (x): y"]}}
    lines = pareto.markdown(result, "dev-1", "results/pareto-dev-1.png")
    text = "\n".join(lines)
    assert "**met** by a int8" in text and "![pareto](results/pareto-dev-1.png)" in text
    table = [line for line in lines if line.startswith("| ") and "model" not in line]
    assert [line.split(" | ")[0][2:] for line in table] == ["baseline", "b int8", "a int8", "a fp32", "c fp32",
                                                             "teacher"]  # by latency
    assert "| a int8 | 0.9130 | 99.24% | 2.40 | 8.33x | - | 16.0 | latency, size |" in text
    assert "| a fp32 | 0.9150 | 99.46% | 4.00 | 5.00x | - | 95.0 | latency |" in text
    pareto.chart(rows, tmp_path / "p.png")
    assert (tmp_path / "p.png").stat().st_size > 10_000


def test_grid_specs_parse_and_full_reuses_the_main_students(monkeypatch: pytest.MonkeyPatch) -> None:
    assert len(pareto.FULL.specs) == 18 and "layers=3,ffn=384,heads=6" in pareto.FULL.specs
    assert len({parse_student_spec(s).name for s in pareto.FULL.specs}) == 18  # one folder each
    assert all(parse_student_spec(s).options for s in pareto.SMOKE.specs)  # the smoke run prunes width
    assert len(pareto.SLICE.specs) == 12 and set(pareto.SLICE.specs) < set(pareto.FULL.specs)
    monkeypatch.setenv("EDGEKD_BENCH_PARETO", "slice")
    assert pareto.grid() is pareto.SLICE
    monkeypatch.setenv("EDGEKD_BENCH_PARETO", "tiny")
    with pytest.raises(SystemExit, match="use one of full, slice, smoke"):
        pareto.grid()
    steps = pareto.steps(pareto.FULL)
    # layers=2 and layers=3 (no width options) are the main benchmark's students step, trained once.
    assert steps["distill layers-3"] is steps["distill layers-2"] and steps["distill layers-3"].name == "ag_news/students"
    assert str(steps["bundle layers-3"].stage.model).endswith("students/layers-3")
    pruned = steps["distill layers-4-ffn384-heads6"]
    assert pruned.stage.students == ["layers=4,ffn=384,heads=6"] and pruned.after == ["ag_news/teacher"]
    monkeypatch.setenv("EDGEKD_BENCH_PARETO", "smoke")
    assert pareto.grid() is pareto.SMOKE


def test_slice_controls_reuse_the_grids_seed_42_student(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    from benchmarks import steps as bench_steps

    for module in (pareto, bench_steps):  # the slice writes its data there while planning
        monkeypatch.setattr(module, "CACHE", tmp_path)
    steps = pareto.steps(pareto.SLICE)
    assert steps["control distilled 42"] is steps["distill layers-3"]
    plain, other = steps["control plain 42"], steps["control distilled 43"]
    assert not plain.stage.config.use_teacher and plain.stage.students == ["layers=3"]
    assert other.stage.config.use_teacher and other.stage.config.train.seed == 43 and other.stage.data.seed == 43
    assert steps["control plain 43"].stage.config.train.seed == 43 and plain.stage.config.train.seed == 42
    assert plain.stage.config.train.epochs == steps["distill layers-3"].stage.config.train.epochs
    assert "control plain 42" not in pareto.steps(pareto.SMOKE)


def test_control_lines_call_noise_and_speed() -> None:
    from benchmarks.diffattn import versus_plain

    rows = [{"dataset": "ag_news", "role": "student", "variant": arm, "seed": seed, "fp32": {"accuracy": acc, "n": 7600}}
            for arm, seed, acc in (("distilled", 42, 0.900), ("plain", 42, 0.890), ("distilled", 43, 0.902),
                                   ("plain", 43, 0.891))]
    v = versus_plain(rows)[0]
    # +1.0 and +1.1 points; plain's spread 0.1; sampling 1.96 * sqrt(mean(2 * p(1-p)/n) / 2) ~ 0.67 points
    assert v["variant"] == "distilled" and [round(d, 4) for d in v["diffs"]] == [0.01, 0.011]
    assert abs(v["sampling"] - 1.96 * (((0.9 * 0.1 + 0.89 * 0.11) / 7600 + (0.902 * 0.098 + 0.891 * 0.109) / 7600)
                                      / 2 / 2) ** 0.5) < 1e-12
    assert not v["inside_noise"]
    ctl = {"rows": rows, "versus_plain": v, "check": {"checkpoint_accuracy": 0.9, "onnx_fp32_accuracy": 0.9, "n": 7600}}
    t = {"teacher_torch": {"p50_ms": 9.0}, "student_torch": {"p50_ms": 4.0}, "speedup": 2.25, "consistent": True,
         "back_to_back": {"speedup": 2.0}}
    text = "\n".join(pareto._control_lines(ctl, t))
    assert "seed 42: 0.9000 vs 0.8900; seed 43: 0.9020 vs 0.8910" in text and "+1.00 / +1.10" in text
    assert "**distillation helps**" in text and "2.25x interleaved (9.00 ms vs 4.00 ms), 2.00x back to back: **met**" in text
    t |= {"consistent": False}
    assert "**not established**" in "\n".join(pareto._control_lines(None, t))
    flipped = [r | {"fp32": {"accuracy": 0.885, "n": 7600}} if (r["variant"], r["seed"]) == ("distilled", 43) else r
               for r in rows]
    assert "**inside the noise**" in "\n".join(pareto._control_lines(ctl | {"versus_plain": versus_plain(flipped)[0]},
                                                                     None))


def test_compass_line_names_the_fastest_accurate_student_and_the_most_accurate_past_10x() -> None:
    rows = [{"model": "teacher", "kind": "teacher", "accuracy": 0.90, "accuracy_share": 1.0, "speedup": 1.0},
            {"model": "a int8", "kind": "student", "accuracy": 0.8915, "accuracy_share": 0.9905, "speedup": 9.88,
             "speedup_back_to_back": 10.06},
            {"model": "b int8", "kind": "student", "accuracy": 0.8914, "accuracy_share": 0.9860, "speedup": 12.11,
             "speedup_back_to_back": 11.78},
            {"model": "c int8", "kind": "student", "accuracy": 0.89, "accuracy_share": 0.99, "speedup": 12.0,
             "speedup_back_to_back": 9.0}]  # faster interleaved, but its lower timing is 9.0x
    text = pareto.compass(rows)
    assert text.startswith("Compass goal 10x (both timings) at >= 99%: **not met**")
    assert "the fastest student at >= 99% is a int8 (9.88x interleaved, 10.06x back to back, 99.05% of the teacher)" in text
    assert "the most accurate past 10x is b int8 (12.11x" in text
    assert pareto.compass(rows, goal=9.5).startswith("Compass goal 9.5x (both timings) at >= 99%: **met**")
