"""4-bit word-embedding rows (`edgekd export --int8 --embedding-bits 4`) on AG News, issue 16's size target:
a 2-layer student pruned at min-count 1 and 2 (and unpruned), each exported to ONNX with --int8 twice, with
8-bit and with 4-bit embedding rows (every bundle with --trim-positions); every ONNX artifact runs the whole
7,600-text test split through `edgekd.load`, and each int8 artifact is compared with the unpruned student's
8-bit int8 (the artifact a user has without these options).

The stated slice is `make demo`'s training scale (a 1,500-row stratified sample of the training split, a 1-epoch
MiniLM-L6 teacher at max_length 64, a 2-layer student distilled for 2 epochs), so the whole part runs in well under
an hour on 2 cores. The vocab part has the same 4-bit bundles on its better-trained 12,000-row students (17 min of
training on linux-x86_64-amd-epyc-6caba820 before the first prune, 73 min on an older machine).

`python -m benchmarks embeddings`: results/embeddings-<device-id>.json and the `embeddings` section of RESULTS.md.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from benchmarks import vocab
from benchmarks.steps import (
    CACHE,
    Step,
    data,
    distill,
    export,
    out_dir,
    prune_vocab,
    read_json,
    run_step,
    step,
    train,
)

SECTION = "embeddings"
TEACHER_ROWS = 1500  # make demo's slice (recipes/demo.yaml)
TEACHER_EPOCHS, STUDENT_EPOCHS, MAX_LENGTH = "1", "2", 64
MIN_COUNTS = (1, 2)  # the two smallest prunes: min-count 5 already loses 1% agreement at 8 bits (vocab part)
BITS = (8, 4)
TARGET = vocab.TARGET  # at most 9 MB, <= 0.1 pt below and >= 99.5% agreement with the unpruned student


def folder() -> Path:
    return CACHE / "ag_news-embeddings"


def steps() -> dict[str, Step]:
    """teacher, student, the prunes, then per (min-count or unpruned, bits) an ONNX bundle."""
    c = folder()
    sliced, whole = data(vocab._data(), max_train_samples=TEACHER_ROWS), data(vocab._data())
    teacher = step(train(sliced, c / "teacher", epochs=TEACHER_EPOCHS, max_length=MAX_LENGTH, lr=1e-4), c / "teacher")
    student = step(distill(c / "teacher", sliced, ["layers=2"], c / "student", epochs=STUDENT_EPOCHS, lr=2e-4),
                   c / "student", after=[teacher])
    out = {"teacher": teacher, "student": student}
    checkpoints = {None: student}
    for m in MIN_COUNTS:
        checkpoints[m] = out[f"prune_{m}"] = step(prune_vocab(c / "student", whole, c / f"pruned-{m}", m), c / f"pruned-{m}",
                                              after=[student])
    for m, source in checkpoints.items():
        for bits in BITS:
            bundle = c / "bundles" / f"{_variant(m)}-e{bits}"
            out[f"bundle_{_variant(m)}_e{bits}"] = step(
                export(out_dir(source), bundle, "onnx", whole, embedding_bits=bits, trim_positions=True), bundle, after=[source])
    return out


def _variant(m: int | None) -> str:
    return "unpruned" if m is None else f"min-{m}"


def study(log: Any) -> dict[str, Any]:
    """Every step, then every bundle's ONNX artifacts on the whole test split (vocab.evaluate, cached by
    sha256); rows with size, accuracy and agreement against the unpruned 8-bit int8."""
    all_steps, commands = steps(), []
    for name, s in all_steps.items():
        done = run_step(s, log)
        commands.append({"step": name, "command": done["command"], "wall_time_s": done["wall_time_s"]})
    evals, started = {}, time.perf_counter()
    for name, s in all_steps.items():
        if name.startswith("bundle_"):
            evals[name] = vocab.evaluate(out_dir(s), log)
    # the evaluations' own times (cached by sha256 with the predictions), as a cached step counts its first run
    commands.append({"step": "eval", "command": "edgekd.load(bundle, 'onnx', precision).logits(test texts) for every "
                     "bundle", "wall_time_s": round(sum(a.get("seconds", 0) for e in evals.values() for a in e.values()), 1),
                     "wall_time_this_run_s": round(time.perf_counter() - started, 1)})
    reference = evals["bundle_unpruned_e8"]
    # what --trim-positions kept, as the reference bundle's manifest records it ({module, rows, of} per table)
    position_rows = read_json(out_dir(all_steps["bundle_unpruned_e8"]) / "edgekd.json")["provenance"].get("position_rows")
    rows = []
    for m in (None, *MIN_COUNTS):
        card = read_json(out_dir(all_steps[f"prune_{m}"]) / "edgekd-model.json")["vocab_pruning"] if m else None
        for bits in BITS:
            name = f"bundle_{_variant(m)}_e{bits}"
            manifest = read_json(out_dir(all_steps[name]) / "edgekd.json")
            int8 = next(a for a in manifest["artifacts"] if a["precision"] == "int8")
            rows.append({"min_count": m, "vocab_size": card["vocab_size"] if card else 30522, "embedding_bits": bits,
                         "embedding_rows": int8["quantization"].get("embedding_rows"),
                         "variant": int8["quantization"]["variant"],
                         "artifacts": {a: _compare(evals[name][a], reference[a], reference["onnx-int8"])
                                       for a in ("onnx-fp32", "onnx-int8")}})
    return {"teacher_rows": TEACHER_ROWS, "teacher_epochs": TEACHER_EPOCHS, "student_epochs": STUDENT_EPOCHS,
            "max_length": MAX_LENGTH, "teacher": vocab._metrics(out_dir(all_steps["teacher"])),
            "student": vocab._metrics(out_dir(all_steps["student"])), "rows": rows, "position_rows": position_rows,
            "sources": vocab.sources({(m, b): evals[f"bundle_{_variant(m)}_e{b}"] for m in (None, *MIN_COUNTS) for b in BITS}),
            "target": TARGET | {"verdict": verdict(rows)}, "commands": commands}


def _compare(e: dict[str, Any], same: dict[str, Any], int8: dict[str, Any]) -> dict[str, Any]:
    """An artifact's size and accuracy; agreement and accuracy drop against the unpruned 8-bit bundle's same
    artifact and (the target's reference) its int8 artifact."""
    import numpy as np

    pred = np.asarray(e["predictions"])
    return {"mb": round(e["bytes"] / 1e6, 2), "accuracy": round(e["accuracy"], 4),
            "agreement_with_same": round(float(np.mean(pred == np.asarray(same["predictions"]))), 4),
            "agreement_with_int8": round(float(np.mean(pred == np.asarray(int8["predictions"]))), 4),
            "drop_points_vs_int8": round((int8["accuracy"] - e["accuracy"]) * 100, 2)}


def holds(row: dict[str, Any]) -> bool:
    """The target on one row's ONNX int8: size, accuracy drop and agreement against the unpruned int8."""
    a = row["artifacts"]["onnx-int8"]
    return (a["mb"] <= TARGET["max_mb"] and a["drop_points_vs_int8"] <= TARGET["max_drop_points"]
            and a["agreement_with_int8"] >= TARGET["min_agreement"])


def verdict(rows: list[dict[str, Any]]) -> dict[str, Any]:
    ok = [f"{_variant(r['min_count'])}, {r['embedding_bits']}-bit rows" for r in rows if holds(r)]
    return {"holding": ok, "met": bool(ok)}


def _positions(result: dict[str, Any]) -> str:
    """What --trim-positions kept, from the reference bundle's manifest."""
    kept = result.get("position_rows")
    if kept is None:  # a result written before the manifest's record was read
        return f"the position table keeps the {result['max_length']} rows max_length reads"
    if not kept:
        return "no position table to cut"
    return "; ".join(f"the position table keeps the {p['rows']} rows max_length reads, of {p['of']}" for p in kept)


def markdown(result: dict[str, Any], device_id: str) -> list[str]:
    t, tm, sm = result["target"], result.get("teacher") or {}, result.get("student") or {}
    lines = ["## 4-bit word-embedding rows (issue 16, `--embedding-bits 4`)", "",
             f"`python -m benchmarks embeddings` on `{device_id}`. Stated slice (`make demo`'s scale): MiniLM-L6 "
             f"teacher, {result['teacher_epochs']} epoch at max_length {result['max_length']} on a stratified "
             f"{result['teacher_rows']:,}-row sample of the AG News training split (test accuracy "
             f"{tm.get('accuracy', float('nan')):.4f}); a 2-layer student distilled from it for "
             f"{result['student_epochs']} epochs on the same rows ({sm.get('accuracy', float('nan')):.4f}); pruned at "
             "min-count " + ", ".join(str(r["min_count"]) for r in result["rows"] if r["min_count"] and
                                      r["embedding_bits"] == 8) + ", and exported to ONNX with `--int8` and "
             "`--embedding-bits 8` or `4`, each with `--trim-positions` (" + _positions(result) + "). With 4, accuracy control tries 4-bit rows in blocks of 128, 64, 32 over the "
             "int8 setting it chose and keeps the first that passes the int8 gates, else the 8-bit rows stay (the "
             "row says which). Every artifact on all 7,600 test texts through `edgekd.load`; agreement and drop "
             "against the unpruned student's 8-bit int8 artifact. MB = 10^6 bytes.", "",
             "| min-count | vocab | requested rows | artifact | shipped rows | MB | accuracy | drop vs unpruned int8 (pt) "
             "| agreement with unpruned int8 |", "|---|---|---|---|---|---|---|---|---|"]
    for r in result["rows"]:
        rows = r["embedding_rows"] or {"bits": 8}
        shipped = f"{rows['bits']}-bit" + (f", block {rows['block_size']}" if rows.get("block_size") else "")
        if rows.get("requested_bits"):
            shipped += " (4-bit rejected by accuracy control)"
        for name, a in r["artifacts"].items():
            lines.append(f"| {r['min_count'] or 'unpruned'} | {r['vocab_size']:,} | {r['embedding_bits']}-bit | {name} | "
                         f"{shipped if name.endswith('int8') else 'fp32'} | {a['mb']:.2f} | {a['accuracy']:.4f} | "
                         f"{a['drop_points_vs_int8']:+.2f} | {a['agreement_with_int8']:.4f} |")
    v = t["verdict"]
    if result.get("sources"):
        lines += ["", "Where the flips come from (test-split agreement of two artifacts that differ in one change only): "
                  + "; ".join(f"{x['change']}: {x['agreement']:.4f}" for x in result["sources"]) + "."]
    lines += ["", f"Target: a {t['layers']}-layer int8 student of at most {t['max_mb']:g} MB within {t['max_drop_points']:g} "
              f"point of the unpruned student's accuracy and >= {t['min_agreement']:.1%} agreement with it (here: the "
              "ONNX int8 artifact; OpenVINO and Core ML keep 8-bit rows): "
              + (f"**met** by {'; '.join(v['holding'])}." if v["met"] else "**not met** by any row above."),
              "", "| step | command | wall time |", "|---|---|---|"]
    lines += [f"| {c['step']} | `{c['command']}` | {c['wall_time_s']:.1f} s |" for c in result["commands"]]
    lines += ["", f"Total wall time of this run: {result.get('wall_time_s', 0):.0f} s (cached steps count their first "
              "run's time in the table)."]
    return lines
