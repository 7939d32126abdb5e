"""The first-run matrix: what a newcomer gets from each shared dataset with the main job. For each of
ag_news, sst2, imdb and arabic_news_ant: a small stratified slice, a 1-epoch MiniLM teacher, a
2-layer student, `export --target onnx,openvino,coreml --int8`, then `verify`, all through `edgekd run`
on a generated recipe. The table says which artifacts were kept, which dropped and why, and verify's
verdict; a cell that crashes is recorded as a crash with its last error line, never hidden."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import yaml

from benchmarks.steps import CACHE, DATA, ROOT

DATASETS: dict[str, dict[str, Any]] = {
    # name: text columns and the max_length a newcomer would pick for its texts
    "ag_news": {"text_columns": ["text"], "max_length": 64},
    "sst2": {"text_columns": ["text"], "max_length": 64},
    "imdb": {"text_columns": ["text"], "max_length": 128},
    "arabic_news_ant": {"text_columns": ["title", "text"], "max_length": 128},
}
TRAIN_ROWS = 1200
TEST_ROWS = 500
SECTION = "first-run"  # its RESULTS.md section (benchmarks/sections.py)
RERUN = ("export", "verify", "report")  # the steps a cell always redoes


def recipe(name: str) -> dict[str, Any]:
    """The recipe of one cell: demo-sized, every target with int8, verify on the whole test slice."""
    spec = DATASETS[name]
    return {
        "name": f"first-run-{name}", "out": str(CACHE / "first-run" / name),
        "data": {"path": str(DATA / name), "text_columns": spec["text_columns"], "max_train_samples": TRAIN_ROWS,
                 "max_test_samples": TEST_ROWS},
        "baseline": {"enabled": True},
        "teacher": {"model": "sentence-transformers/all-MiniLM-L6-v2", "epochs": 1, "lr": 1.0e-4, "batch_size": 32,
                    "max_length": spec["max_length"]},
        "students": {"specs": ["layers=2"], "epochs": 2, "lr": 2.0e-4, "batch_size": 32},
        "export": {"targets": ["onnx", "openvino", "coreml"], "int8": True, "calibration_samples": 200},
        "verify": {"max_samples": 0, "runs": 10, "cold_start": False},
    }


def run_cell(name: str, log: Any) -> dict[str, Any]:
    """`edgekd run` on the cell's recipe (its own step cache makes a rerun cheap); the outcome."""
    out = CACHE / "first-run" / name
    out.mkdir(parents=True, exist_ok=True)
    path = out / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe(name), sort_keys=False))
    # The cell measures the code under test: export, verify and report always run again (step stamps
    # key on the command line, not the code); data, baseline, teacher and student stay cached.
    for stamp in (out / ".steps").glob("*.json"):
        if stamp.stem.split("_")[0] in RERUN:
            stamp.unlink()
    log(f"first run: {name}")
    started = time.perf_counter()
    proc = subprocess.run([sys.executable, "-m", "edgekd", "run", str(path)], cwd=ROOT, capture_output=True,
                          text=True)
    cell = {"dataset": name, "exit_code": proc.returncode, "wall_time_s": round(time.perf_counter() - started, 1),
            "command": "edgekd run " + str(path).replace(str(CACHE), "$CACHE"),
            "recipe": recipe(name)}
    (out / "run.log").write_text(proc.stdout + "\n--- stderr ---\n" + proc.stderr)
    errors = [line for line in proc.stderr.splitlines() if "error:" in line]
    cell["error"] = errors[-1].strip() if errors else None
    manifest_path = out / "bundles" / "layers-2" / "edgekd.json"
    if manifest_path.is_file():
        manifest = json.loads(manifest_path.read_text())
        cell["kept"] = [f"{a['backend']}-{a['precision']}" for a in manifest["artifacts"]]
        cell["dropped"] = [{k: d[k] for k in ("artifact", "stage", "reason")} for d in manifest.get("dropped", [])]
        control = (manifest.get("calibration") or {}).get("accuracy_control", {})
        cell["int8_decisions"] = {b: {"chosen": r["chosen"], "n": r["n_agreement"],
                                      "tried": [{k: t.get(k) for k in ("name", "agreement", "agreement_ci", "flips",
                                                                       "accuracy_drop", "failed", "error")}
                                                for t in r["tried"]]}
                                  for b, r in control.items()}
    report = _this_device_report(out / "bundles" / "layers-2" / "reports")
    if report is not None:
        cell["verify"] = {"passed": report["passed"], "n": report["data"]["n"],
                          "failed_gates": [f"{g['artifact']} {g['metric']}={g['value']:.4g}"
                                           for g in report["gates"] if not g["passed"]],
                          "inconclusive_gates": [
                              f"{g['artifact']} {g['metric']} {g['value']:.4g} (95% CI {g['interval'][0]:.4g}-"
                              f"{g['interval'][1]:.4g}, gate {g['op']} {g['threshold']:g})"
                              for g in report["gates"] if g.get("verdict") == "INCONCLUSIVE"],
                          "skipped": report.get("skipped", []),
                          "accuracy": {m["name"]: round(m["accuracy"]["accuracy"], 4) for m in report["models"]}}
    return cell


def _this_device_report(folder: Path) -> dict[str, Any] | None:
    from edgekd.verify.device import fingerprint

    path = folder / f"{fingerprint()['device_id']}.json"
    return json.loads(path.read_text()) if path.is_file() else None


def study(log: Any) -> dict[str, Any]:
    return {"train_rows": TRAIN_ROWS, "test_rows": TEST_ROWS,
            "cells": [run_cell(name, log) for name in DATASETS]}


def markdown(first_run: dict[str, Any], device_id: str) -> list[str]:
    """The first-run section of RESULTS.md."""
    lines = ["## First-run matrix", "",
             f"`python -m benchmarks firstrun` on `{device_id}`: per dataset a stratified slice of "
             f"{first_run['train_rows']} training rows (validation carved from it where the data has none) and "
             f"{first_run['test_rows']} test rows, a 1-epoch MiniLM-L6 teacher, a distilled 2-layer student, "
             "`export --target onnx,openvino,coreml --int8`, then `verify` on the whole test slice, all via "
             "`edgekd run` on a generated recipe (kept in the step cache beside each cell's run.log).", "",
             "| dataset | exit | kept | dropped (why) | verify | accuracy: baseline / teacher / student / int8 (onnx) | wall |",
             "|---|---|---|---|---|---|---|"]
    for c in first_run["cells"]:
        v = c.get("verify")
        verdict = "crashed: " + (c.get("error") or "see run.log") if v is None else (
            "PASS" if v["passed"] else "FAIL: " + "; ".join(v["failed_gates"]))
        if v and v.get("inconclusive_gates"):
            verdict += " (INCONCLUSIVE on the test slice: " + "; ".join(v["inconclusive_gates"]) + ")"
        acc = (v or {}).get("accuracy", {})
        accs = " / ".join(f"{acc[k]:.3f}" if k in acc else "-"
                          for k in ("baseline-tfidf", "teacher", "student-torch", "onnx-int8"))
        drops = "; ".join(f"{d['artifact']} ({d['stage']}): {d['reason']}" for d in c.get("dropped", [])) or "none"
        lines.append(f"| {c['dataset']} | {c['exit_code']} | {', '.join(c.get('kept', [])) or '-'} | {drops} | "
                     f"{verdict} | {accs} | {c['wall_time_s']:.0f} s |")
    lines += ["", "int8 decisions (accuracy control on the validation split + held-out train texts; agreement with "
              "the PyTorch student, flips, Wilson 95% interval):", ""]
    for c in first_run["cells"]:
        for backend, d in (c.get("int8_decisions") or {}).items():
            tried = "; ".join(
                f"{t['name']} " + (f"error {t['error']}" if t.get("error") else
                                    f"{t['agreement']:.4f} ({t['flips']} flips of {d['n']}; "
                                    f"{t['agreement_ci'][0]:.4f}-{t['agreement_ci'][1]:.4f}), "
                                    f"drop {t['accuracy_drop'] * 100:+.2f} pt"
                                    + (f" -> rejected: {t['failed']}" if t.get("failed") else " -> kept"))
                for t in d["tried"])
            lines.append(f"- {c['dataset']} / {backend}: {tried}")
    return lines
