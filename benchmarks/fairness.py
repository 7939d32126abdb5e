"""Why the teacher-pipeline comparison runs ORT without spinning and PyTorch with a passive OpenMP
wait policy: the same batch-1 comparison (teacher `transformers.pipeline` vs the 2-layer ONNX int8
student) under each thread-waiting setting, each in a fresh process (libgomp reads its policy once,
when torch loads). Interleaved vs back to back, and interleaved with a pause before every call.

`python -m benchmarks fairness` (part of `make bench`); the child is `python -m benchmarks.fairness
SETTING` and prints one JSON object.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

# name: (ORT spin for the student; None = ORT's default, which spins), OMP_WAIT_POLICY (None = unset)
SETTINGS: dict[str, tuple[bool | None, str | None]] = {
    "defaults": (None, None),
    "ort_no_spin": (False, None),
    "ort_no_spin_omp_passive": (False, "PASSIVE"),  # what the published comparisons use
}
PAUSES_S = (0.002, 0.01)
RUNS = 100


def measure(setting: str, teacher: Path, bundle: Path, texts: list[str]) -> dict[str, Any]:
    from benchmarks import speed
    from benchmarks.timing import back_to_back, interleaved

    single, _ = speed.pipeline_systems(teacher, bundle, texts, "onnx", spin=SETTINGS[setting][0])
    runs = {"interleaved": interleaved(single, RUNS), "back_to_back": back_to_back(single, RUNS)}
    if setting == "ort_no_spin_omp_passive":
        runs |= {f"interleaved_pause_{p * 1000:g}ms": interleaved(single, RUNS, pause_s=p) for p in PAUSES_S}
    out: dict[str, Any] = {}
    for name, t in runs.items():
        teach, stud = t["teacher_transformers_pipeline"].p50_ms, t["edgekd_int8_student"].p50_ms
        out[name] = {"teacher_p50_ms": round(teach, 3), "student_p50_ms": round(stud, 3),
                     "speedup": round(teach / stud, 3)}
    return out


def study(teacher: Path, bundle: Path, log: Any = print) -> dict[str, Any]:
    """Each setting in its own process, with the environment it names; returns {setting: result}."""
    root = Path(__file__).resolve().parents[1]
    out: dict[str, Any] = {"runs": RUNS, "student": str(bundle.name), "settings": {}}
    for name, (spin, policy) in SETTINGS.items():
        env = {k: v for k, v in os.environ.items() if k not in ("OMP_WAIT_POLICY", "EDGEKD_BENCH_SET_OMP_WAIT_POLICY")}
        if policy:
            env["OMP_WAIT_POLICY"] = policy
        log(f"fairness: {name} (ORT spin {'default' if spin is None else spin}, OMP_WAIT_POLICY {policy or 'unset'})")
        proc = subprocess.run([sys.executable, "-m", "benchmarks.fairness", name, str(teacher), str(bundle)],
                              cwd=root, env=env, capture_output=True, text=True)
        if proc.returncode != 0:
            raise SystemExit(f"fairness child {name} failed: {proc.stderr.strip().splitlines()[-1:]}")
        out["settings"][name] = {"ort_spin": spin, "omp_wait_policy": policy} | json.loads(proc.stdout.splitlines()[-1])
    return out


if __name__ == "__main__":
    from benchmarks.steps import test_texts

    setting, teacher_dir, bundle_dir = sys.argv[1:4]
    print(json.dumps(measure(setting, Path(teacher_dir), Path(bundle_dir), test_texts(500))))
