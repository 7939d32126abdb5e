"""Side-by-side speed measurements, on the same model files and the same real texts, interleaved.

Every comparison pins the same thread count for both systems (THREADS) and reports medians, spread
and the ratio. Nothing here is a unit test: these are the numbers RESULTS.md publishes.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.timing import back_to_back, interleaved, ratio, summarize
from edgekd.runtimes.onnx import set_spinning

THREADS = int(os.environ.get("EDGEKD_BENCH_THREADS", os.cpu_count() or 1))
RUNS = int(os.environ.get("EDGEKD_BENCH_RUNS", 300))


def _load(bundle: Path, backend: str, precision: str, spin: bool | None = False) -> Any:
    """`edgekd.load` with the pinned threads. Every ONNX Runtime session in a side-by-side comparison
    runs with its pool threads sleeping between calls (spin=False; None: ORT's default, spinning): a
    spinning pool steals the cores from the system interleaved after it (another ORT session as much
    as PyTorch), which the back-to-back cross-check catches as a disagreement."""
    import edgekd

    options = {"spin": spin} if backend == "onnx" and spin is not None else {}
    return edgekd.load(bundle, backend=backend, precision=precision, threads=THREADS, **options)


def _texts_cycle(texts: list[str]):
    return lambda i: texts[i % len(texts)]


def _result(timings: dict[str, Any], slow: str, fast: str) -> dict[str, Any]:
    return {name: t.to_dict() for name, t in timings.items()} | {
        "speedup": round(ratio(timings[slow], timings[fast]), 3), "slow": slow, "fast": fast}


def compare(systems: dict[str, Any], slow: str, fast: str, runs: int) -> dict[str, Any]:
    """Batch-1 latency of two systems interleaved call by call (the published ratio), then the same
    calls back to back (the cross-check): `consistent` records whether the two speed-ups agree
    within 20%. They disagree when one system's threads keep the cores busy after its call
    (busy-waiting thread pools) and so slow the other's next call; such a ratio is not trusted."""
    out = _result(interleaved(systems, runs=runs), slow, fast)
    alone = _result(back_to_back(systems, runs=runs), slow, fast)
    out["back_to_back"] = alone
    out["consistent"] = abs(alone["speedup"] / out["speedup"] - 1) <= 0.2
    return out


def teacher_pipeline(teacher_dir: Path) -> Any:
    """The PyTorch teacher in `transformers.pipeline` on THREADS threads, truncating where it was trained
    to (its edgekd-model.json), as the student's bundle does: the reference every speed-up is against."""
    import torch
    from transformers import pipeline

    torch.set_num_threads(THREADS)
    max_length = json.loads((Path(teacher_dir) / "edgekd-model.json").read_text())["max_length"]
    return pipeline("text-classification", model=str(teacher_dir), device=-1, truncation=True, max_length=max_length)


def pipeline_systems(teacher_dir: Path, bundle: Path, texts: list[str], backend: str = "onnx",
                     spin: bool | None = False) -> tuple[dict[str, Any], dict[str, Any]]:
    """The PyTorch teacher in `transformers.pipeline` and the edgekd int8 student (`backend`, ORT
    spinning as `spin` says), as batch-1 systems and as batch-32 systems over a list of texts."""
    pipe = teacher_pipeline(teacher_dir)
    clf = _load(bundle, backend, "int8", spin)
    text = _texts_cycle(texts)
    single = {"teacher_transformers_pipeline": lambda i: pipe(text(i)),
              "edgekd_int8_student": lambda i: clf.predict(text(i))}
    batched = {"teacher_transformers_pipeline": lambda b: pipe(b, batch_size=32),
               "edgekd_int8_student": lambda b: clf.predict(b, batch_size=32)}
    return single, batched


def pipeline_vs_edgekd(teacher_dir: Path, bundle: Path, texts: list[str], backend: str = "onnx") -> dict[str, Any]:
    """PyTorch teacher in `transformers.pipeline` vs the edgekd int8 student (`backend`): batch-1
    latency interleaved, the same back to back as a cross-check, then batch-32 throughput.

    Both thread pools busy-wait after a call by default and, interleaved on the same cores, slow the
    other system's next call (`python -m benchmarks fairness` measures it). So the student runs with
    `spin=False` and the benchmark process sets OMP_WAIT_POLICY=PASSIVE for PyTorch's OpenMP pool
    (see __main__)."""
    single, batched = pipeline_systems(teacher_dir, bundle, texts, backend, spin=False)
    out = compare(single, "teacher_transformers_pipeline", "edgekd_int8_student", runs=max(RUNS // 3, 60))
    out["student_spin"] = False if backend == "onnx" else None
    out["omp_wait_policy"] = os.environ.get("OMP_WAIT_POLICY")
    out["throughput"] = batch_throughput(batched, texts)
    return out


def torch_student_vs_teacher(teacher_dir: Path, student_dir: Path, texts: list[str]) -> dict[str, Any]:
    """The PyTorch teacher vs a PyTorch student checkpoint, batch 1 on CPU, the model's forward pass
    only (texts tokenized beforehand at each checkpoint's max_length, as distill's own timing does),
    interleaved with the back-to-back cross-check like every speed row (distill's comparison table
    times each model once, 50 runs, minutes apart: not a comparison)."""
    import torch

    from edgekd.train.infer import load_checkpoint

    torch.set_num_threads(THREADS)

    def system(model_dir: Path) -> Any:
        model, tokenizer = load_checkpoint(model_dir)
        card = Path(model_dir) / "edgekd-model.json"
        max_length = json.loads(card.read_text()).get("max_length", 128) if card.is_file() else 128
        encoded = [tokenizer(t, truncation=True, max_length=max_length, return_tensors="pt") for t in texts]

        def forward(i: int) -> Any:
            with torch.inference_mode():
                return model(**encoded[i % len(encoded)]).logits

        return forward

    systems = {"teacher_torch": system(teacher_dir), "student_torch": system(student_dir)}
    return compare(systems, "teacher_torch", "student_torch", runs=RUNS)


def batch_throughput(systems: dict[str, Any], texts: list[str], batch: int = 32, rounds: int = 5) -> dict[str, Any]:
    """texts/s of each system over the same chunk of texts, interleaved, median of `rounds`."""
    chunk = texts[: batch * 8]
    t = interleaved({n: (lambda i, f=f: f(chunk)) for n, f in systems.items()}, runs=rounds, warmup=1)
    return {n: {"texts_per_s": round(len(chunk) / (v.p50_ms / 1000), 1), "batch": batch, "texts": len(chunk)}
            for n, v in t.items()}


def optimum_vs_edgekd(student_dir: Path, bundle: Path, texts: list[str]) -> dict[str, Any]:
    """optimum's ORTModelForSequenceClassification in a transformers pipeline vs edgekd, on the
    bundle's own fp32 ONNX file (copied next to the student's config and tokenizer)."""
    import onnxruntime as ort
    from optimum.onnxruntime import ORTModelForSequenceClassification
    from transformers import AutoTokenizer, pipeline

    tmp = Path(tempfile.mkdtemp(prefix="edgekd-optimum-"))
    try:
        for f in Path(student_dir).iterdir():
            if f.is_file() and not f.name.endswith((".safetensors", ".bin", ".png")):
                shutil.copy(f, tmp / f.name)
        shutil.copy(Path(bundle) / "onnx" / "model.onnx", tmp / "model.onnx")
        so = ort.SessionOptions()
        so.intra_op_num_threads = THREADS
        so.inter_op_num_threads = 1
        set_spinning(so, False)
        model = ORTModelForSequenceClassification.from_pretrained(tmp, session_options=so, use_io_binding=False)
        tok = AutoTokenizer.from_pretrained(tmp)
        max_length = json.loads((Path(bundle) / "edgekd.json").read_text())["tokenizer"]["max_length"]
        pipe = pipeline("text-classification", model=model, tokenizer=tok, truncation=True, max_length=max_length)
        clf = _load(bundle, "onnx", "fp32")
        text = _texts_cycle(texts)
        return compare({
            "optimum_ort_pipeline": lambda i: pipe(text(i)),
            "edgekd_onnx_fp32": lambda i: clf.predict(text(i)),
        }, "optimum_ort_pipeline", "edgekd_onnx_fp32", runs=RUNS)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def _bare_tokenizer(bundle: Path, max_length: int):
    from tokenizers import Tokenizer

    tok = Tokenizer.from_file(str(Path(bundle) / "tokenizer.json"))
    tok.no_padding()
    tok.enable_truncation(max_length)
    return tok


def bare_vs_edgekd(bundle: Path, texts: list[str], backend: str, precision: str) -> dict[str, Any]:
    """Bare `tokenizers` + the engine's own call (InferenceSession.run / OpenVINO infer) vs
    `edgekd.load(...).predict` on the same artifact: the runtime's overhead."""
    from edgekd.bundle import read_manifest

    manifest = read_manifest(bundle)
    artifact = manifest.artifact(backend, precision)
    tok = _bare_tokenizer(bundle, manifest.tokenizer.max_length)
    run = _bare_engine(Path(bundle) / artifact.path, backend, spin=False)
    names = manifest.tokenizer.inputs

    def bare(i: int) -> Any:
        enc = tok.encode(texts[i % len(texts)])
        ids = np.asarray([enc.ids], dtype=np.int64)
        feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        return run({n: feed[n] for n in names})

    clf = _load(bundle, backend, precision)
    out = compare({"bare": bare, "edgekd": lambda i: clf.predict(texts[i % len(texts)])}, "bare", "edgekd", runs=RUNS)
    out["overhead_pct"] = round((out["edgekd"]["p50_ms"] / out["bare"]["p50_ms"] - 1) * 100, 2)
    return out


def _bare_engine(path: Path, backend: str, spin: bool | None = None):
    if backend == "onnx":
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.intra_op_num_threads = THREADS
        so.inter_op_num_threads = 1
        if spin is not None:
            set_spinning(so, spin)
        sess = ort.InferenceSession(str(path), so, providers=["CPUExecutionProvider"])
        return lambda feed: sess.run(None, feed)[0]
    import openvino as ov

    from edgekd.runtimes.openvino import compile_config

    # The properties edgekd compiles with (f32 precision, latency hint): OpenVINO's default on a CPU with
    # AVX512_BF16 runs an fp32 model in bf16, so a bare default session is another computation, not the
    # same one without edgekd's overhead (it measured edgekd's "overhead" at +34% there).
    core = ov.Core()
    compiled = core.compile_model(str(path), "CPU", compile_config({"threads": THREADS}))
    request = compiled.create_infer_request()
    return lambda feed: request.infer(feed)[compiled.output(0)]


def fp32_vs_int8(bundle: Path, texts: list[str], backend: str) -> dict[str, Any]:
    """Batch-1 latency and batch-32 throughput of the fp32 and int8 artifacts of one backend."""
    fp32, int8 = _load(bundle, backend, "fp32"), _load(bundle, backend, "int8")
    text = _texts_cycle(texts)
    out = compare({"fp32": lambda i: fp32.predict(text(i)), "int8": lambda i: int8.predict(text(i))},
                  "fp32", "int8", runs=RUNS)
    out["throughput"] = batch_throughput({"fp32": lambda b: fp32.logits(b, batch_size=32),
                                          "int8": lambda b: int8.logits(b, batch_size=32)}, texts)
    return out


def encoder_flops(config: dict[str, Any], batch: int, seq: int) -> float:
    """Multiply-adds x 2 of a BERT encoder forward pass (dense layers + attention products), the
    classifier head included; embeddings lookups and element-wise ops are not counted."""
    h, i, n = config["hidden_size"], config["intermediate_size"], config["num_hidden_layers"]
    tokens = batch * seq
    per_layer = 2 * tokens * (4 * h * h + 2 * h * i) + 2 * 2 * batch * seq * seq * h
    head = 2 * batch * (h * h + h * config.get("num_labels", len(config.get("id2label", {})) or 2))
    return float(n * per_layer + head)


SYS_CPU = Path("/sys/devices/system/cpu")


def cpu_peak_gflops(sys_cpu: Path = SYS_CPU, lscpu: str | None = None, cpuinfo: str | None = None) -> dict[str, Any]:
    """An estimate of the fp32 peak: physical cores x maximum clock x FLOP per cycle of the widest vector
    FMA this CPU has (2 FMA pipes x lanes x 2 FLOP: AVX-512 64, AVX2 32, else 16). An estimate: some
    AVX-512 parts have one FMA pipe, and all-core turbo and AVX clocks sit below the maximum clock.
    `lscpu` / `cpuinfo`: their text (default: run lscpu, read /proc/cpuinfo), for tests."""
    from edgekd.verify.device import fingerprint

    isa = fingerprint().get("isa", {})
    per_cycle = 64 if isa.get("avx512f") or isa.get("avx512") else 32 if isa.get("avx2") else 16
    ghz, clock_source = max_clock_ghz(sys_cpu, lscpu, cpuinfo)
    cores, cores_source = physical_cores(sys_cpu)
    return {"cores": cores, "cores_source": cores_source, "ghz": ghz, "clock_source": clock_source,
            "flop_per_cycle": per_cycle, "peak_gflops": round(cores * ghz * per_cycle, 1), "estimate": True,
            "formula": f"{cores} physical cores x {ghz} GHz max clock x {per_cycle} FLOP/cycle "
                       "(2 FMA pipes x vector lanes x 2): an estimate"}


def max_clock_ghz(sys_cpu: Path = SYS_CPU, lscpu: str | None = None, cpuinfo: str | None = None) -> tuple[float, str]:
    """(GHz, where it came from): the highest cpufreq cpuinfo_max_freq, else lscpu's 'CPU max MHz', else
    the highest current 'cpu MHz' in /proc/cpuinfo (a note says so: below the maximum when the CPU
    boosts, so the peak is underestimated and the achieved fraction flattered)."""
    khz = [int(f.read_text()) for f in sys_cpu.glob("cpu[0-9]*/cpufreq/cpuinfo_max_freq") if f.read_text().strip()]
    if khz:
        return round(max(khz) / 1e6, 3), "cpufreq cpuinfo_max_freq"
    if lscpu is None:
        try:
            lscpu = subprocess.run(["lscpu"], capture_output=True, text=True, timeout=10).stdout
        except (OSError, subprocess.TimeoutExpired):
            lscpu = ""
    mhz = [float(line.split(":", 1)[1]) for line in lscpu.splitlines() if line.strip().startswith("CPU max MHz:")]
    if mhz and mhz[0] > 0:
        return round(mhz[0] / 1000, 3), "lscpu CPU max MHz"
    if cpuinfo is None:
        try:
            cpuinfo = Path("/proc/cpuinfo").read_text()
        except OSError:
            cpuinfo = ""
    now = [float(line.split(":", 1)[1]) for line in cpuinfo.splitlines() if line.startswith("cpu MHz")]
    if now:
        return round(max(now) / 1000, 3), ("current cpu MHz from /proc/cpuinfo (no maximum clock exposed here: "
                                           "the peak is underestimated if the CPU boosts)")
    return 0.0, "no clock found"


def physical_cores(sys_cpu: Path = SYS_CPU) -> tuple[int, str]:
    """(physical cores among the CPUs this process may use, where it came from): distinct (package,
    core) pairs of sysfs topology, else the usable logical CPUs (SMT siblings counted: an overestimate)."""
    usable = sorted(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else list(range(os.cpu_count() or 1))
    pairs = set()
    for cpu in usable:
        topo = sys_cpu / f"cpu{cpu}" / "topology"
        try:
            pairs.add(((topo / "physical_package_id").read_text().strip(), (topo / "core_id").read_text().strip()))
        except OSError:
            return len(usable), "usable logical CPUs (no sysfs topology: SMT siblings would count twice)"
    return len(pairs), "sysfs topology (distinct package, core pairs of the usable CPUs)"


def achieved_gflops(bundle: Path, student_config: dict[str, Any], batch: int = 32, seq: int = 128) -> dict[str, Any]:
    """Achieved GFLOP/s of the fp32 ONNX student on random token ids [batch, seq] vs the CPU's peak."""
    manifest_inputs = json.loads((Path(bundle) / "edgekd.json").read_text())["tokenizer"]["inputs"]
    run = _bare_engine(Path(bundle) / "onnx" / "model.onnx", "onnx")
    rng = np.random.default_rng(0)
    ids = rng.integers(1000, 20000, size=(batch, seq), dtype=np.int64)
    feed = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
    feed = {n: feed[n] for n in manifest_inputs}
    t = interleaved({"fp32": lambda i: run(feed)}, runs=20, warmup=3)["fp32"]
    flops = encoder_flops(student_config, batch, seq)
    peak = cpu_peak_gflops()
    got = flops / (t.p50_ms / 1000) / 1e9
    return {"batch": batch, "seq": seq, "gflop_per_forward": round(flops / 1e9, 3), "p50_ms": round(t.p50_ms, 2),
            "achieved_gflops": round(got, 1), "peak": peak, "fraction_of_peak": round(got / peak["peak_gflops"], 3)
            if peak["peak_gflops"] else None}


def scaling(bundle: Path, precision: str = "fp32") -> dict[str, Any]:
    """Latency of the ONNX artifact by sequence length (batch 1) and by batch size (seq 64), on
    random ids (the model accepts up to its position table, beyond the bundle's max_length)."""
    manifest = json.loads((Path(bundle) / "edgekd.json").read_text())
    artifact = next(a for a in manifest["artifacts"] if a["backend"] == "onnx" and a["precision"] == precision)
    run = _bare_engine(Path(bundle) / artifact["path"], "onnx")
    names = manifest["tokenizer"]["inputs"]
    rng = np.random.default_rng(0)

    def feed(b: int, s: int) -> dict[str, np.ndarray]:
        ids = rng.integers(1000, 20000, size=(b, s), dtype=np.int64)
        f = {"input_ids": ids, "attention_mask": np.ones_like(ids), "token_type_ids": np.zeros_like(ids)}
        return {n: f[n] for n in names}

    def measure(b: int, s: int) -> dict[str, float]:
        f = feed(b, s)
        for _ in range(2):
            run(f)
        import time

        samples = []
        for _ in range(max(3, min(30, 2000 // (b * s // 16 + 1)))):
            t0 = time.perf_counter()
            run(f)
            samples.append((time.perf_counter() - t0) * 1000)
        t = summarize(samples)
        return {"p50_ms": round(t.p50_ms, 3), "texts_per_s": round(b / (t.p50_ms / 1000), 1)}

    return {"precision": precision,
            "by_seq_len": {s: measure(1, s) for s in (16, 32, 64, 128, 256, 512)},
            "by_batch": {b: measure(b, 64) for b in (1, 2, 4, 8, 16, 32, 64)}}
