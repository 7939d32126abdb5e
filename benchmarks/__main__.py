"""`python -m benchmarks [PART ...]`: all (the default: baseline teacher students export speed small fairness
report), any of those, or a separate part (firstrun, serve, vocab, embeddings, rounding, adapt, pareto, diffattn, imbalance; run only
when named).

Runs the AG News benchmark from ../shared/data: TF-IDF baseline, MiniLM teacher, distilled students
(and the same student without the teacher), the exported bundle (every target, fp32 + int8), `edgekd
verify` on the full test set, and the side-by-side speed comparisons. The pipeline steps are typed
stage configs (benchmarks/steps.py) run by edgekd's one step runner, each in a process of its own as
`edgekd VERB` would, and cached in $EDGEKD_BENCH_CACHE (default ~/.cache/edgekd/benchmarks; stamps in
its .steps folder): a rerun only redoes a step whose config, upstream runs or imported edgekd code
changed. Results go to benchmarks/results/<device-id>.json and benchmarks/RESULTS.md. `report` alone
rewrites RESULTS.md from the results files, measuring nothing.

EDGEKD_BENCH_MAIN=slice runs the same parts on the Pareto part's training slice (12,000 rows, its 1-epoch
teacher; benchmarks/pareto.py `main_steps`), about half an hour after that part instead of hours: the
speed verdicts of a new machine. Its results file records the scale, and RESULTS.md marks its accuracy
verdicts as the slice's.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# PyTorch's OpenMP threads busy-wait after each call (libgomp's default policy) and so slow the edgekd
# call interleaved after them; passive waiting is read once, when torch loads, so it is set here before
# anything imports torch. The pipeline steps (each in its own process) run without it (steps.step_env).
if "OMP_WAIT_POLICY" not in os.environ:
    os.environ["OMP_WAIT_POLICY"] = "PASSIVE"
    os.environ["EDGEKD_BENCH_SET_OMP_WAIT_POLICY"] = "1"

from benchmarks import speed  # noqa: E402
from benchmarks.steps import ROOT, Step, ag_news, out_dir, pipeline, read_json, run_step, test_texts  # noqa: E402

RESULTS = ROOT / "benchmarks" / "results"
PARTS = ["baseline", "teacher", "students", "export", "speed", "small", "fairness", "report"]
# Parts with their own results file and RESULTS.md section, run only when named (not by `all`).
SEPARATE = ["firstrun", "serve", "vocab", "embeddings", "rounding", "adapt", "pareto", "diffattn", "imbalance"]


def scale() -> str:
    """The main benchmark's data: "full" (all of AG News), or "slice" (EDGEKD_BENCH_MAIN=slice: the Pareto
    slice's 12,000 rows and 1-epoch teacher, for the speed parts on a machine without hours to train)."""
    name = os.environ.get("EDGEKD_BENCH_MAIN", "") or "full"
    if name not in ("full", "slice"):
        raise SystemExit(f"EDGEKD_BENCH_MAIN={name}: use full or slice (or leave it unset)")
    return name


def main_steps() -> dict[str, Step]:
    """The main benchmark's steps at `scale()`: benchmarks/steps.py `pipeline`, or the same on the slice."""
    if scale() == "full":
        return pipeline()
    from benchmarks import pareto

    return pareto.main_steps(pareto.SLICE)


def log(msg: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


def _step(results: dict[str, Any], name: str) -> Step:
    step = main_steps()[name]
    ran = run_step(step, log)
    results.setdefault("steps", {})[name] = {"command": ran["command"], "wall_time_s": ran["wall_time_s"]}
    return step


def baseline(results: dict[str, Any]) -> None:
    step = _step(results, "baseline")
    results["steps"]["baseline"]["metrics"] = _headline(read_json(out_dir(step) / "metrics.json"))


def teacher(results: dict[str, Any]) -> None:
    step = _step(results, "teacher")
    results["steps"]["teacher"]["metrics"] = _headline(read_json(out_dir(step) / "metrics.json"))
    results["steps"]["teacher"]["card"] = read_json(out_dir(step) / "edgekd-model.json")
    log("teacher on the test texts its max_length truncates")
    results["steps"]["teacher"]["truncation"] = _truncation(out_dir(step))


def _truncation(teacher_dir: Path) -> dict[str, Any]:
    """The teacher's accuracy on the test texts longer than its max_length, truncated there and at
    twice that: how much the truncation costs it."""
    import numpy as np

    from edgekd.data import DataSpec, load_splits
    from edgekd.train.infer import load_checkpoint, torch_logits

    max_length = read_json(teacher_dir / "edgekd-model.json")["max_length"]
    splits = load_splits(DataSpec(ag_news()))
    test = splits.test
    model, tokenizer = load_checkpoint(teacher_dir)
    # The data's label ids index splits.labels; the logits' columns follow the checkpoint's label2id.
    to_model = np.array([model.config.label2id[name] for name in splits.labels])
    long = [i for i, ids in enumerate(tokenizer(test.texts)["input_ids"]) if len(ids) > max_length]
    texts, y = [test.texts[i] for i in long], to_model[test.labels[long]]
    acc = {m: float(np.mean(torch_logits(model, tokenizer, texts, m, batch_size=64).argmax(1) == y))
           for m in (max_length, 2 * max_length)}
    return {"max_length": max_length, "n_test": len(test.texts), "n_longer": len(long),
            "accuracy_by_max_length": {str(m): round(a, 4) for m, a in acc.items()}}


def students(results: dict[str, Any]) -> None:
    for name in ("students", "no_teacher"):
        step = _step(results, name)
        entry = results["steps"][name]
        out = out_dir(step)
        entry["comparison"] = read_json(out / "comparison.json")
        entry["distillation"] = {d.name: read_json(d / "distillation.json")
                                 for d in [out, *sorted(out.iterdir())] if (d / "distillation.json").is_file()}


def _verify(verify: Step) -> dict[str, Any]:
    """Run (unless cached) a verify step of `main_steps()`; {command, wall_time_s, report}. A failed gate does
    not stop the benchmark: it is in the report (its `passed` and gates), which the results keep."""
    ran = run_step(verify, log)
    report = next(iter(sorted(out_dir(verify).glob("*.json"))), None)  # the report, <device-id>.json
    return {"command": ran["command"], "wall_time_s": ran["wall_time_s"], "report": read_json(report) if report else None}


def export(results: dict[str, Any]) -> None:
    steps = main_steps()
    bundle = steps["bundle"]
    ran = run_step(bundle, log)
    verified = _verify(steps["verify"])
    results["export"] = {"command": ran["command"], "wall_time_s": ran["wall_time_s"],
                         "manifest": read_json(out_dir(bundle) / "edgekd.json"), "verify": verified}


def small(results: dict[str, Any]) -> None:
    """The 2-layer student as an ONNX int8 bundle: accuracy on the full test set (verify, ONNX only)
    and the same teacher-pipeline comparison as the 3-layer bundle."""
    steps = main_steps()
    bundle = steps["bundle_small"]
    ran = run_step(bundle, log)
    bundle_dir = out_dir(bundle)
    verified = _verify(steps["verify_small"])
    if not any(a["precision"] == "int8" for a in read_json(bundle_dir / "edgekd.json")["artifacts"]):
        log("accuracy control kept no int8 artifact for the 2-layer student: nothing to compare")
        results["small"] = {"command": ran["command"], "wall_time_s": ran["wall_time_s"], "int8": None}
        return
    texts = test_texts(500)
    log("teacher transformers.pipeline vs edgekd int8 2-layer student")
    results["small"] = {
        "command": ran["command"], "wall_time_s": ran["wall_time_s"], "verify": verified,
        "teacher_pipeline_vs_edgekd_int8": speed.pipeline_vs_edgekd(out_dir(steps["teacher"]), bundle_dir, texts,
                                                                    "onnx"),
    }
    # The ONNX int8 rows again on the smallest student (and the only ONNX int8 rows when accuracy control
    # keeps no onnx-int8 for the 3-layer one).
    log("bare engine vs edgekd and fp32 vs int8: onnx, 2-layer student")
    results["small"]["bare_vs_edgekd_onnx_int8"] = speed.bare_vs_edgekd(bundle_dir, texts, "onnx", "int8")
    results["small"]["fp32_vs_int8_onnx"] = speed.fp32_vs_int8(bundle_dir, texts, "onnx")


def fairness_part(results: dict[str, Any]) -> None:
    """The teacher-pipeline comparison of the 2-layer student under each thread-waiting setting."""
    from benchmarks import fairness

    steps = main_steps()
    run_step(steps["bundle_small"], log)
    results["fairness"] = fairness.study(out_dir(steps["teacher"]), out_dir(steps["bundle_small"]), log)


def speed_part(results: dict[str, Any]) -> None:
    steps = main_steps()
    bundle, teacher = out_dir(steps["bundle"]), out_dir(steps["teacher"])
    student = out_dir(steps["students"]) / "layers-3"
    texts = test_texts(500)
    have = {(a["backend"], a["precision"]) for a in read_json(bundle / "edgekd.json")["artifacts"]}
    # The int8 student the comparisons use: ONNX when accuracy control kept one, else OpenVINO.
    int8 = next((b for b in ("onnx", "openvino") if (b, "int8") in have), None)
    out: dict[str, Any] = {"threads": speed.THREADS, "runs": speed.RUNS, "texts": len(texts), "int8_backend": int8,
                           "missing": sorted(f"{b}-{p}" for b in ("onnx", "openvino") for p in ("fp32", "int8")
                                             if (b, p) not in have)}
    if int8:
        log(f"teacher transformers.pipeline vs edgekd int8 student ({int8})")
        out["teacher_pipeline_vs_edgekd_int8"] = speed.pipeline_vs_edgekd(teacher, bundle, texts, int8)
    log("PyTorch teacher vs PyTorch 3-layer student, batch 1")
    out["torch_student_vs_teacher"] = speed.torch_student_vs_teacher(teacher, student, texts)
    log("optimum ORTModel pipeline vs edgekd (same ONNX file)")
    out["optimum_vs_edgekd"] = speed.optimum_vs_edgekd(student, bundle, texts)
    for backend in ("onnx", "openvino"):
        for precision in ("fp32", "int8"):
            if (backend, precision) in have:
                log(f"bare engine vs edgekd: {backend}-{precision}")
                out[f"bare_vs_edgekd_{backend}_{precision}"] = speed.bare_vs_edgekd(bundle, texts, backend, precision)
        if (backend, "int8") in have:
            log(f"fp32 vs int8: {backend}")
            out[f"fp32_vs_int8_{backend}"] = speed.fp32_vs_int8(bundle, texts, backend)
    log("achieved GFLOP/s")
    out["gflops"] = speed.achieved_gflops(bundle, read_json(student / "config.json"))
    log("scaling by sequence length and batch size")
    out["scaling"] = speed.scaling(bundle, "fp32")
    if ("onnx", "int8") in have:
        out["scaling"]["int8"] = speed.scaling(bundle, "int8")
    from edgekd.verify.latency import cold_start

    out["cold_start"] = {p: cold_start(str(bundle), int8 or "onnx", p, texts[0]) | {"backend": int8 or "onnx"}
                         for p in (["int8"] if int8 else []) + ["fp32"]}
    results["speed"] = out


def _study(device: dict[str, Any], study: Callable[[], dict[str, Any]]) -> dict[str, Any]:
    """A separate part's result: the device, what `study()` returns, its wall time and when it was written
    (UTC; a checkout's file times say nothing, so parts that read earlier results order them by it)."""
    import datetime

    started = time.perf_counter()
    result = {"device": device, **study()}
    result["wall_time_s"] = round(time.perf_counter() - started, 1)
    result["written"] = datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")
    return result


def _publish(tag: str, result: dict[str, Any], lines: list[str], section: str | None,
             smoke_dir: Path | None = None) -> None:
    """Write a separate part's result: results/<tag>-<device-id>.json and its RESULTS.md `section`
    (None: no section); a smoke setting (`smoke_dir`) writes only <smoke_dir>/<tag>.{json,md}."""
    text = json.dumps(result, indent=2, default=str, ensure_ascii=False) + "\n"
    if smoke_dir is not None:
        smoke_dir.mkdir(parents=True, exist_ok=True)
        (smoke_dir / f"{tag}.json").write_text(text, encoding="utf-8")
        (smoke_dir / f"{tag}.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        log(f"wrote {smoke_dir}/{tag}.{{json,md}} (smoke: RESULTS.md untouched)")
        return
    path = RESULTS / f"{tag}-{result['device']['device_id']}.json"
    RESULTS.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    if section is not None:
        _section(section, lines)
    log(f"wrote {path.relative_to(ROOT)}" + (f" and the {section} section of benchmarks/RESULTS.md" if section else ""))


def first_run(device: dict[str, Any]) -> None:
    """The first-run matrix: results/first-run-<device-id>.json and its section of RESULTS.md."""
    from benchmarks import firstrun

    result = _study(device, lambda: firstrun.study(log))
    _publish("first-run", result, firstrun.markdown(result, device["device_id"]), firstrun.SECTION)


def serve_load(device: dict[str, Any]) -> None:
    """The `edgekd serve` loopback load test: results/serve-<device-id>.json; fails on any error or label
    that differs from direct predict."""
    from benchmarks import serve

    result = _study(device, lambda: serve.study(serve.bundle_path(), log))
    _publish("serve", result, serve.markdown(result, device["device_id"]), serve.SECTION)
    if serve.failures(result):
        raise SystemExit("serve load test failed: " + "; ".join(serve.failures(result)))


def vocab_pruning(device: dict[str, Any]) -> None:
    """Vocabulary pruning on AG News at each min-count: results/vocab-<device-id>.json and its section."""
    from benchmarks import vocab

    result = _study(device, lambda: vocab.study(log))
    _publish("vocab", result, vocab.markdown(result, device["device_id"]), vocab.SECTION)


def embeddings_part(device: dict[str, Any]) -> None:
    """4-bit word-embedding rows on AG News: results/embeddings-<device-id>.json and its section."""
    from benchmarks import embeddings

    result = _study(device, lambda: embeddings.study(log))
    _publish("embeddings", result, embeddings.markdown(result, device["device_id"]), embeddings.SECTION)


def rounding_part(device: dict[str, Any]) -> None:
    """Word-row rounding in the vocab part's int8 graph: results/rounding-<device-id>.json and its section."""
    from benchmarks import rounding

    result = _study(device, lambda: rounding.study(log))
    _publish("rounding", result, rounding.markdown(result, device["device_id"]), rounding.SECTION)


def pareto_part(device: dict[str, Any]) -> None:
    """Accuracy vs batch-1 latency vs size of a student grid (benchmarks/pareto.py): the full grid or the
    stated slice (EDGEKD_BENCH_PARETO=slice) publish results files and the pareto section; the smoke grid
    (EDGEKD_BENCH_PARETO=smoke) writes only into its cache folder."""
    from benchmarks import pareto

    result = _study(device, lambda: pareto.study(log))
    data, png = pareto.write(result, device["device_id"], RESULTS)  # the JSON and the chart
    published = result["grid"]["name"] != "smoke"
    if published:
        _section(pareto.SECTION, pareto.markdown(result, device["device_id"], f"results/{png.name}"))
    log(f"wrote {data} and {png}" + (" and the pareto section of benchmarks/RESULTS.md" if published else ""))


def diffattn_part(device: dict[str, Any], run: bool = True) -> None:
    """Differential-attention hybrids vs plain (benchmarks/diffattn.py): results/diffattn-<device-id>.{json,png}
    and its RESULTS.md section; the smoke scale (EDGEKD_BENCH_DIFFATTN=smoke) writes diffattn-smoke-<device-id>.json
    only. `run=False` (`python -m benchmarks.diffattn`) runs no step and publishes the finished seeds."""
    from benchmarks import diffattn

    scale = diffattn.scale()
    result = _study(device, lambda: diffattn.study(log, scale, run=run))
    full = scale.name == "full"
    png = None
    if full and result["rows"]:
        png = diffattn.chart(result, RESULTS / f"diffattn-{device['device_id']}.png")
    _publish("diffattn" if full else f"diffattn-{scale.name}", result,
             diffattn.markdown(result, device["device_id"], f"results/{png.name}" if png else None),
             diffattn.SECTION if full else None)


def settings_part(tag: str, device: dict[str, Any], run: bool = True) -> None:
    """A part with settings (`benchmarks.<tag>`: `study(log, run)`, `markdown`, `SECTION`, `folder`,
    `setting`): results/<tag>-<device-id>.json and its RESULTS.md section, or (smoke) only
    <its cache folder>/<tag>.{json,md}. `run=False` runs no step and publishes what the cache holds."""
    import importlib

    part = importlib.import_module(f"benchmarks.{tag}")
    result = _study(device, lambda: part.study(log, run=run))
    smoke = part.folder(part.setting()) if result["setting"] == "smoke" else None
    name = part.results_tag(result) if hasattr(part, "results_tag") else tag  # adapt: one file per setting
    _publish(name, result, part.markdown(result, device["device_id"]), part.SECTION, smoke)


def adapt_part(device: dict[str, Any]) -> None:
    """English vs adapted vocabulary on arabic_news_ant (EDGEKD_BENCH_ADAPT=slice|smoke)."""
    settings_part("adapt", device)


def imbalance_part(device: dict[str, Any]) -> None:
    """Class weights on imbalanced data (EDGEKD_BENCH_IMBALANCE=slice|smoke)."""
    settings_part("imbalance", device)


def _section(name: str, lines: list[str]) -> None:
    """Replace one separate part's section of RESULTS.md."""
    from benchmarks.sections import splice

    md = ROOT / "benchmarks" / "RESULTS.md"
    md.write_text(splice(md.read_text() if md.is_file() else "", name, lines))


def _results_so_far(path: Path) -> dict[str, Any]:
    """This device's results file, to add the parts run now to; a run at another scale is started afresh
    (one results file per device, of one scale: a slice's parts never mix with a full run's)."""
    results: dict[str, Any] = read_json(path) if path.is_file() else {}
    was = (results.get("scale") or {}).get("name", "full")
    if results and was != scale():
        log(f"{path.name} holds the {was} run: starting it afresh at scale {scale()}")
        results = {}
    return results | {"scale": _scale_record()}


def _scale_record() -> dict[str, Any]:
    """What the results were trained on: {"name": "full"}, or the slice's rows and teacher."""
    if scale() == "full":
        return {"name": "full"}
    from benchmarks import pareto

    g = pareto.SLICE
    return {"name": "slice", "train_rows": g.train_rows, "epochs": g.epochs, "teacher_epochs": 1,
            "teacher_max_length": g.teacher_max_length, "env": "EDGEKD_BENCH_MAIN=slice"}


def _headline(m: dict[str, Any]) -> dict[str, Any]:
    return {k: m[k] for k in ("accuracy", "f1_macro", "f1_weighted") if k in m} | {"n": m.get("n")}


def report_only() -> int:
    """RESULTS.md from the results files as they are: this device's results when it has some, else
    another device's (the verdicts of every device are side by side either way). Writes no results."""
    from benchmarks.results import device_results, write_results_md
    from edgekd.verify.device import fingerprint

    found = {r["device"]["device_id"]: r for r in device_results(RESULTS)}
    if not found:
        raise SystemExit(f"python -m benchmarks report: no results in {RESULTS.relative_to(ROOT)}; run: python -m benchmarks")
    here = fingerprint()["device_id"]
    device = here if here in found else sorted(found)[0]
    write_results_md(found[device], ROOT / "benchmarks" / "RESULTS.md", RESULTS)
    log(f"wrote benchmarks/RESULTS.md from the results of {len(found)} device(s), detailed: {device}")
    return 0


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks", description=__doc__.splitlines()[0])
    p.add_argument("parts", nargs="*", default=["all"], help=f"any of {PARTS + SEPARATE} or all (default: {PARTS})")
    args = p.parse_args(argv)
    unknown = [x for x in args.parts if x not in PARTS + SEPARATE + ["all"]]
    if unknown:
        raise SystemExit(f"python -m benchmarks: unknown part {unknown[0]!r}; parts: all, {', '.join(PARTS + SEPARATE)}")
    if args.parts == ["report"]:
        return report_only()
    parts = PARTS if "all" in args.parts else args.parts
    from edgekd.verify.device import fingerprint

    device = fingerprint()
    # Separate parts: each writes its own results file and RESULTS.md section, in the order named.
    runners = {"firstrun": first_run, "serve": serve_load, "vocab": vocab_pruning, "embeddings": embeddings_part,
               "rounding": rounding_part, "adapt": adapt_part,
               "pareto": pareto_part, "diffattn": diffattn_part, "imbalance": imbalance_part}
    assert set(runners) == set(SEPARATE), "every separate part needs its runner here"
    for name in [x for x in parts if x in SEPARATE]:
        runners[name](device)
    parts = [x for x in parts if x not in SEPARATE]
    if not parts:
        return 0
    path = RESULTS / f"{device['device_id']}.json"
    results = _results_so_far(path)
    results["device"] = device
    for part in parts:
        fn = {"baseline": baseline, "teacher": teacher, "students": students, "export": export,
              "speed": speed_part, "small": small, "fairness": fairness_part, "report": lambda r: None}[part]
        started = time.perf_counter()
        fn(results)
        results.setdefault("timings", {})[part] = round(time.perf_counter() - started, 1)
        RESULTS.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(results, indent=2, default=str) + "\n")
    from benchmarks.results import write_results_md

    write_results_md(results, ROOT / "benchmarks" / "RESULTS.md", RESULTS)
    log(f"wrote {path.relative_to(ROOT)} and benchmarks/RESULTS.md")
    return 0


if __name__ == "__main__":
    sys.exit(main())
