"""`python -m benchmarks serve`: a bounded loopback load test of `edgekd serve`.

The server runs in a child process (`edgekd serve BUNDLE --port 0`, as a user starts it); N client
threads in this process each send M `POST /predict` requests of real AG News test texts (one text per
request, keep-alive connections), then stop. Every answer must be a 200 whose label equals
`edgekd.load(bundle).predict(text).label` computed here; the same texts through `predict` in one
thread are the baseline. Clients and server share this machine's cores, as on a laptop demo.

Bundle: $EDGEKD_BENCH_SERVE_BUNDLE, else the benchmark's 2-layer ONNX bundle (`python -m benchmarks
small` builds it). Results: benchmarks/results/serve-<device-id>.json.
"""

from __future__ import annotations

import csv
import gzip
import os
import statistics
import threading
import time
from pathlib import Path
from typing import Any

from benchmarks.steps import CACHE, DATA, out_dir, pipeline, stamp

SECTION = "serve"  # its RESULTS.md section (benchmarks/sections.py)
# Targets (issue 17): the service adds at most 1 ms p50 over a direct predict at batch 1, and keeps more
# than one core busy under concurrent load.
MAX_ADDED_P50_MS = 1.0
MIN_CORES_BUSY = 1.0
# (clients, requests per client): one client shows the HTTP overhead per call, eight the concurrency.
LOADS = ((1, 200), (8, 50))
REQUEST_TIMEOUT_S = 30.0


def bundle_path() -> Path:
    """$EDGEKD_BENCH_SERVE_BUNDLE, else the cached 2-layer ONNX bundle; SystemExit naming the fix."""
    env = os.environ.get("EDGEKD_BENCH_SERVE_BUNDLE")
    if env:
        return Path(env)
    step = pipeline()["bundle_small"]
    small = out_dir(step)
    # Built: the step finished once (its stamp in $CACHE/.steps) and its bundle manifest is there.
    if stamp(step) is None or not (small / "edgekd.json").is_file():
        raise SystemExit(f"no bundle to serve: {small} is not built (run: python -m benchmarks small) and "
                         "EDGEKD_BENCH_SERVE_BUNDLE is not set")
    return small


def ag_news_test_texts(n: int) -> list[str]:
    """The first n AG News test texts, in file order."""
    texts = []
    with gzip.open(DATA / "ag_news" / "test.csv.gz", "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            texts.append(row["text"])
            if len(texts) == n:
                break
    return texts


def direct(clf: Any, texts: list[str]) -> dict[str, Any]:
    """`clf.predict(text)` one text at a time in one thread: latency per call, texts/s, labels."""
    clf.predict(texts[0])  # warm-up
    times, labels = [], []
    started = time.perf_counter()
    for text in texts:
        t0 = time.perf_counter()
        labels.append(clf.predict(text).label)
        times.append(time.perf_counter() - t0)
    wall = time.perf_counter() - started
    return _summary(times, wall) | {"labels": labels}


def load(url: str, texts: list[str], clients: int, per_client: int, expected: list[str]) -> dict[str, Any]:
    """`clients` threads x `per_client` requests; client i sends texts[i*per_client : (i+1)*per_client]."""
    import httpx

    times: list[float] = []
    model_ms: list[float] = []
    errors: list[str] = []
    mismatches: list[int] = []
    lock = threading.Lock()

    def client(i: int) -> None:
        with httpx.Client(base_url=url, timeout=REQUEST_TIMEOUT_S) as http:
            for k in range(i * per_client, (i + 1) * per_client):
                t0 = time.perf_counter()
                try:
                    r = http.post("/predict", json={"inputs": texts[k]})
                except httpx.HTTPError as exc:
                    with lock:
                        errors.append(f"{type(exc).__name__}: {exc}")
                    continue
                elapsed = time.perf_counter() - t0
                with lock:
                    if r.status_code != 200:
                        errors.append(f"{r.status_code}: {r.text[:200]}")
                        continue
                    times.append(elapsed)
                    model_ms.append(float(r.headers["server-timing"].split("dur=")[1]))
                    if r.json()[0]["label"] != expected[k]:
                        mismatches.append(k)

    threads = [threading.Thread(target=client, args=(i,)) for i in range(clients)]
    started = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    wall = time.perf_counter() - started
    return {"clients": clients, "requests_per_client": per_client, "requests": clients * per_client,
            "errors": len(errors), "error_examples": errors[:5], "label_mismatches": len(mismatches),
            **_summary(times, wall), "server_model_p50_ms": _round(statistics.median(model_ms)) if model_ms else None}


def study(bundle: Path, log: Any, backend: str = "auto", precision: str = "auto") -> dict[str, Any]:
    """Direct predict, then each of LOADS against one `edgekd serve` child process."""
    import edgekd
    from edgekd.serve.server import Background

    n = max(c * m for c, m in LOADS)
    texts = ag_news_test_texts(n)
    clf = edgekd.load(bundle, backend=backend, precision=precision)
    log(f"serve: direct predict, {n} texts, one thread ({clf.backend}-{clf.precision})")
    baseline = direct(clf, texts)
    expected = baseline.pop("labels")
    out: dict[str, Any] = {"bundle": str(bundle).replace(str(CACHE), "$CACHE"), "artifact": f"{clf.backend}-{clf.precision}",
                           "engine": clf.engine, "texts": n, "loadavg_before": _loadavg(), "direct": baseline, "loads": []}
    del clf  # its engine threads would compete with the server's
    import psutil

    with Background(bundle, "--backend", backend, "--precision", precision) as server:
        proc = psutil.Process(server.pid)
        for clients, per_client in LOADS:
            log(f"serve: {clients} client(s) x {per_client} requests on {server.url}")
            load(server.url, texts, 1, 5, expected)  # warm-up: first calls pay for allocations
            before = sum(proc.cpu_times()[:2])  # user + system seconds of the server process
            result = load(server.url, texts, clients, per_client, expected)
            cpu = sum(proc.cpu_times()[:2]) - before
            # CPU seconds per wall second of the load: above 1 means the server kept more than one core busy
            result |= {"server_cpu_s": _round(cpu), "server_cores_busy": _round(cpu / result["wall_s"])}
            out["loads"].append(result)
    out["server_exit_code"] = server.returncode
    # Direct predict again, after the server stopped: the machine may have changed under the loads, so
    # the added-latency target compares the served p50 with both direct runs (the larger gap counts).
    clf = edgekd.load(bundle, backend=backend, precision=precision)
    log("serve: direct predict again, after the loads")
    out["direct_after"] = direct(clf, texts)
    out["direct_after"].pop("labels")
    out["command"] = f"edgekd serve {out['bundle']} --port 0 --backend {backend} --precision {precision}"
    return out


def failures(result: dict[str, Any]) -> list[str]:
    """What makes the load test fail: any error, any label that differs from direct predict, an unclean stop."""
    bad = [f"{r['clients']} clients: {r['errors']} errors, {r['label_mismatches']} labels differ"
           for r in result["loads"] if r["errors"] or r["label_mismatches"]]
    if result["server_exit_code"] != 0:
        bad.append(f"the server exited with {result['server_exit_code']} on Ctrl-C")
    return bad


def _summary(times: list[float], wall: float) -> dict[str, Any]:
    ms = sorted(t * 1000 for t in times)
    if not ms:
        return {"p50_ms": None, "p99_ms": None, "per_s": 0.0, "wall_s": _round(wall)}
    return {"p50_ms": _round(statistics.median(ms)), "p99_ms": _round(ms[min(len(ms) - 1, int(0.99 * len(ms)))]),
            "per_s": _round(len(ms) / wall), "wall_s": _round(wall)}


def _round(x: float) -> float:
    return round(x, 2)


def _loadavg() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def markdown(result: dict[str, Any], device_id: str) -> list[str]:
    """The serve section of RESULTS.md: the load table and the two targets with their verdicts."""
    d, after = result["direct"], result.get("direct_after") or result["direct"]
    one = next(r for r in result["loads"] if r["clients"] == 1)
    many = max(result["loads"], key=lambda r: r["clients"])
    base = min(d["p50_ms"], after["p50_ms"])
    added = one["p50_ms"] - base
    lines = ["## `edgekd serve` load test", "",
             f"`python -m benchmarks serve` on `{device_id}`: `{result['command']}` ({result['artifact']}, "
             f"{result['engine']}); clients are threads in the benchmark process on the same cores, one text per "
             f"request, keep-alive; load average before: {result.get('loadavg_before')}.", "",
             "| load | requests | errors | labels differing from predict | p50 ms | p99 ms | requests/s | "
             "server CPU s per wall s |", "|---|---|---|---|---|---|---|---|",
             f"| direct `predict`, one thread | {result['texts']} | - | - | {d['p50_ms']} | {d['p99_ms']} | "
             f"{d['per_s']} | - |",
             f"| direct `predict` again, after the loads | {result['texts']} | - | - | {after['p50_ms']} | "
             f"{after['p99_ms']} | {after['per_s']} | - |"]
    lines += [f"| {r['clients']} client(s) x {r['requests_per_client']} | {r['requests']} | {r['errors']} | "
              f"{r['label_mismatches']} | {r['p50_ms']} | {r['p99_ms']} | {r['per_s']} | "
              f"{r.get('server_cores_busy', '-')} |" for r in result["loads"]]
    ok_added = added <= MAX_ADDED_P50_MS
    busy = many.get("server_cores_busy")
    lines += ["", "| target | measured | verdict |", "|---|---|---|",
              f"| service adds <= {MAX_ADDED_P50_MS:g} ms p50 over direct predict, batch 1 | {added:+.2f} ms "
              f"({one['p50_ms']} vs the faster direct run's {base} ms) | **{'met' if ok_added else 'not met'}** |",
              f"| uses more than one core under concurrent load ({many['clients']} clients) | "
              f"{busy} CPU s per wall s | **{'met' if busy is not None and busy > MIN_CORES_BUSY else 'not met'}** |",
              f"| zero errors, labels identical to predict | "
              f"{sum(r['errors'] for r in result['loads'])} errors, "
              f"{sum(r['label_mismatches'] for r in result['loads'])} differing | "
              f"**{'met' if not failures(result) else 'not met'}** |"]
    return lines
