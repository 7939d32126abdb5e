"""Word-embedding row rounding in the int8 graph (issue 16's agreement bar): how many of the 7,600 test
predictions of the vocab part's 2-layer min-count-1 ONNX int8 student change when only its word-embedding
table is rounded another way, and what each table would weigh.

Every table runs in the shipped 4-bit artifact's own graph (bundle layers-2-min-1-e4, onnx/model.int8.onnx:
static QDQ layers, the word lookup a GatherBlockQuantized with nothing quantized after it), its lookup
replaced by a float Gather of a table fed as a graph input, through edgekd's `Classifier` (the bundle's
tokenizer, length-sorted batches and padding, as `edgekd.load`). Two reproductions check the harness before
any number is kept: the shipped 4-bit table (as ONNX Runtime computes it) must give that bundle's evaluated
predictions, and the 8-bit bundle's table (its per-tensor uint8 rows) the 8-bit bundle's, all 7,600 each.

Tables: fp32 rows; symmetric rows in blocks of 128 at BITS bits (ORT's 4-bit rounding at any width, fp16
scales); the frequent-rows mix that fits the size target (the most frequent training tokens keep the 8-bit
bundle's rows, the rest 4-bit); and the 8-bit bundle's exact codes entropy-coded (a size bound only: no
runtime decodes it). Needs the vocab part's cache (`python -m benchmarks vocab`); about 2 min here.

`python -m benchmarks rounding`: results/rounding-<device-id>.json and the `rounding` section of RESULTS.md.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks import vocab
from benchmarks.steps import CACHE

SECTION = "rounding"
LAYERS, MIN_COUNT = 2, 1  # the target's student at the one prune whose 8-bit rows stay inside the agreement bar
BLOCK = 128  # the block size accuracy control kept for the shipped 4-bit rows
BITS = (8, 6, 5, 4, 3)
TARGET = vocab.TARGET


def bundle(bits: int, min_count: int | None = MIN_COUNT) -> Path:
    return CACHE / "ag_news-vocab" / "bundles" / vocab._variant(LAYERS, min_count, bits)


def block_rows(table: np.ndarray, bits: int, block: int = BLOCK) -> np.ndarray:
    """`table` rounded as ONNX Runtime's weight-only quantizer rounds 4-bit rows, at `bits` bits: per block of
    `block` along the hidden axis, scale = the block's value of largest magnitude (with its sign) over
    -2^(bits-1), codes round-half-even of value / scale clipped to [-2^(bits-1), 2^(bits-1) - 1]; the scales
    then stored in fp16 and the product taken in fp16 (what GatherBlockQuantized yields with fp16 scales)."""
    rows, width = table.shape
    x = table.reshape(rows, width // block, block).astype(np.float32)
    hi, lo = x.max(-1, keepdims=True), x.min(-1, keepdims=True)
    low = -(2 ** (bits - 1))
    scale = np.where(np.abs(hi) > np.abs(lo), hi, lo) / np.float32(low)
    with np.errstate(invalid="ignore", divide="ignore"):
        codes = np.where(scale == 0, 0, x / scale).round().clip(low, -low - 1)
    return (codes.astype(np.float16) * scale.astype(np.float16)).astype(np.float32).reshape(rows, width)


def _nodes_output(model: Any, nodes: list[Any], output: str, feeds: dict[str, np.ndarray]) -> np.ndarray:
    """Run `nodes` of `model` (with the initializers they read) alone and return `output`."""
    import onnxruntime as ort
    from onnx import TensorProto, helper

    read = {i for n in nodes for i in n.input}
    inits = [t for t in model.graph.initializer if t.name in read]
    inputs = [helper.make_tensor_value_info(k, TensorProto.INT64, list(v.shape)) for k, v in feeds.items()]
    graph = helper.make_graph(nodes, "table", inputs, [helper.make_tensor_value_info(output, TensorProto.FLOAT, None)],
                              initializer=inits)
    small = helper.make_model(graph, opset_imports=list(model.opset_import))
    small.ir_version = model.ir_version
    so = ort.SessionOptions()
    so.log_severity_level = 3
    return ort.InferenceSession(small.SerializeToString(), so, providers=["CPUExecutionProvider"]).run(
        [output], feeds)[0]


def _four_bit_lookup(model: Any) -> tuple[Any, Any | None]:
    """The GatherBlockQuantized word lookup and the Cast of its fp16 rows to fp32 (None with fp32 scales)."""
    found = [n for n in model.graph.node if n.op_type == "GatherBlockQuantized"]
    if len(found) != 1:
        raise ValueError(f"expected one GatherBlockQuantized word lookup, found {len(found)}")
    cast = next((n for n in model.graph.node if n.op_type == "Cast" and list(n.input) == list(found[0].output)), None)
    return found[0], cast


def shipped_table(model: Any) -> np.ndarray:
    """The 4-bit artifact's word table as ONNX Runtime computes it: its lookup (and Cast) on every row id."""
    node, cast = _four_bit_lookup(model)
    rows = next(t for t in model.graph.initializer if t.name == node.input[0]).dims[0]
    nodes = [node] + ([cast] if cast is not None else [])
    return _nodes_output(model, nodes, nodes[-1].output[0], {node.input[1]: np.arange(rows, dtype=np.int64)})


def eight_bit_table(model: Any) -> tuple[np.ndarray, np.ndarray]:
    """The 8-bit int8 artifact's word table (its DequantizeLinear run alone) and its uint8/int8 codes."""
    import onnx

    gather = next(n for n in model.graph.node if n.op_type == "Gather" and n.input[1] == "input_ids")
    dq = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.output[0] == gather.input[0])
    codes = onnx.numpy_helper.to_array(next(t for t in model.graph.initializer if t.name == dq.input[0]))
    return _nodes_output(model, [dq], dq.output[0], {}), codes


TABLE = "edgekd_word_rows"


def table_graph(model: Any) -> Any:
    """A copy of the 4-bit artifact's graph whose word lookup is a float Gather of the graph input TABLE
    ([rows, hidden] float32), writing the tensor the lookup (or its Cast) wrote; nothing else changes."""
    import onnx
    from onnx import TensorProto, helper

    out = onnx.ModelProto()
    out.CopyFrom(model)
    node, cast = _four_bit_lookup(out)
    q = next(t for t in out.graph.initializer if t.name == node.input[0])
    written = (cast or node).output[0]
    at = list(out.graph.node).index(node)
    for n in [node] + ([cast] if cast is not None else []):
        out.graph.node.remove(n)
    out.graph.node.insert(at, helper.make_node("Gather", [TABLE, node.input[1]], [written], name=f"{node.name}_float"))
    for name in node.input[0:1] + node.input[2:]:
        if not any(name in n.input for n in out.graph.node):
            out.graph.initializer.remove(next(t for t in out.graph.initializer if t.name == name))
    out.graph.input.append(helper.make_tensor_value_info(TABLE, TensorProto.FLOAT, [q.dims[0], q.dims[1]]))
    return out


class TableSession:
    """An ONNX Runtime session of `table_graph`, with edgekd's Session interface: `table` is fed with every
    batch (set it before each run of the test split)."""

    input_dtype = np.int64

    def __init__(self, model: Any, input_names: list[str]) -> None:
        import onnxruntime as ort

        so = ort.SessionOptions()
        so.log_severity_level = 3
        self._session = ort.InferenceSession(model.SerializeToString(), so, providers=["CPUExecutionProvider"])
        self.input_names = input_names
        self.engine = f"onnxruntime {ort.__version__} CPUExecutionProvider (word table fed)"
        self.table: np.ndarray | None = None

    def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
        feed = {n: np.asarray(inputs[n], dtype=np.int64) for n in self.input_names}
        return self._session.run(None, feed | {TABLE: self.table})[0]


def _entropy_bits(codes: np.ndarray) -> float:
    counts = np.bincount(codes.astype(np.int64).ravel() - int(codes.min()))
    p = counts[counts > 0] / codes.size
    return float(-(p * np.log2(p)).sum())


def _wilson(agree: int, n: int) -> list[float]:
    from edgekd.verify.parity import wilson_interval

    return [round(v, 4) for v in wilson_interval(agree, n)]


def study(log: Callable[[str], None]) -> dict[str, Any]:
    """The reproductions, then every table's predictions against the 8-bit bundle and the reference."""
    import time

    import onnx

    import edgekd
    from edgekd.data import DataSpec, load_splits
    from edgekd.exporters.onnx import word_embedding_gather
    from edgekd.runtimes.classifier import Classifier

    started = time.perf_counter()
    b4, b8, ref = bundle(4), bundle(8), bundle(8, None)
    missing = [str(p) for p in (b4, b8, ref) if not (p / "edgekd.json").is_file()]
    if missing:
        raise SystemExit(f"python -m benchmarks rounding: needs the vocab part's bundles ({', '.join(missing)} missing); "
                         "run `python -m benchmarks vocab` first")
    ev4, ev8 = (vocab.evaluate(b, log)["onnx-int8"] for b in (b4, b8))
    evaluated_ref = vocab.evaluate(ref, log)
    evref = evaluated_ref["onnx-int8"]
    unpruned_fp32 = np.asarray(evaluated_ref["onnx-fp32"]["predictions"])  # = the PyTorch student's
    model4 = onnx.load(str(b4 / "onnx" / "model.int8.onnx"))
    shipped = shipped_table(model4)
    rows8, codes = eight_bit_table(onnx.load(str(b8 / "onnx" / "model.int8.onnx")))
    float_graph = onnx.load(str(b8 / "onnx" / "model.onnx")).graph
    word = word_embedding_gather(float_graph).input[0]
    fp32 = onnx.numpy_helper.to_array(next(t for t in float_graph.initializer if t.name == word))
    vocab_size, hidden = fp32.shape
    base = edgekd.load(str(b4), backend="onnx", precision="int8")
    session = TableSession(table_graph(model4), list(base.session.input_names))
    clf = Classifier(session, base.tokenizer, base.manifest, "onnx", "int8", base.bundle)
    splits = load_splits(DataSpec(vocab._data()), labels=base.labels)
    test = splits.test
    y = np.asarray(test.labels)
    own, reference = np.asarray(ev8["predictions"]), np.asarray(evref["predictions"])

    def predict(table: np.ndarray) -> np.ndarray:
        session.table = np.ascontiguousarray(table, dtype=np.float32)
        return clf.logits(test.texts, batch_size=64).argmax(1)

    checks = {}
    for name, table, expected in (("shipped 4-bit", shipped, ev4), ("8-bit bundle", rows8, ev8)):
        differ = int((predict(table) != np.asarray(expected["predictions"])).sum())
        checks[name] = {"differing_predictions": differ}
        if differ:
            raise SystemExit(f"python -m benchmarks rounding: the harness with the {name} table differs from that "
                             f"artifact on {differ} of {len(y)} test texts; its numbers would not be the artifact's")
    ours = block_rows(fp32, 4)
    checks["block_rows(fp32, 4) vs shipped 4-bit"] = {"differing_values": int((ours != shipped).sum()),
                                                       "max_abs": float(np.abs(ours - shipped).max())}
    log(f"rounding: the harness reproduces both bundles ({time.perf_counter() - started:.0f} s so far)")

    # sizes: the rest of the 4-bit artifact (everything but its word table) + each table
    lookup = _four_bit_lookup(model4)[0]
    q, scales = (next(t for t in model4.graph.initializer if t.name == lookup.input[i]) for i in (0, 2))
    table4 = len(q.raw_data) + len(scales.raw_data)
    rest = ev4["bytes"] - table4
    blocks = hidden // BLOCK

    def block_bytes(bits: int, rows: int = vocab_size) -> int:
        return rows * hidden * bits // 8 + rows * blocks * 2  # codes + fp16 scales

    # token counts over the training split as the model sees it (the bundle's tokenizer, truncated)
    counts = np.bincount(np.concatenate([np.asarray(ids, np.int64) for ids in base.tokenizer.encode(splits.train.texts)]),
                         minlength=vocab_size)
    # mixed rows: K rows at 8 bits (hidden bytes), the others 4-bit, and an int16 row map per token
    step = hidden - block_bytes(4, 1)
    keep = max(0, int((TARGET["max_mb"] * 1e6 - rest - block_bytes(4) - 2 * vocab_size) // step))
    top = np.argsort(-counts, kind="stable")[:keep]
    mixed = shipped.copy()
    mixed[top] = rows8[top]
    entropy = _entropy_bits(codes)
    tables: list[tuple[str, float, int, np.ndarray | None, bool]] = [
        ("8-bit bundle's rows (per-tensor uint8, shipped)", 8, ev8["bytes"] - rest, rows8, True),
        ("fp32 rows", 32, vocab_size * hidden * 4, fp32, False),
        *((f"int{b} blocks of {BLOCK}" + (" (shipped)" if b == 4 else ""), b + 16 / BLOCK, block_bytes(b),
           shipped if b == 4 else block_rows(fp32, b), b == 4) for b in BITS),
        (f"{keep:,} most frequent rows 8-bit, the rest int4 blocks of {BLOCK}",
         (keep * hidden * 8 + (vocab_size - keep) * (hidden * 4 + 16 * blocks)) / (vocab_size * hidden),
         keep * hidden + block_bytes(4, vocab_size - keep) + 2 * vocab_size, mixed, False),
        ("8-bit bundle's codes entropy-coded (size bound)", entropy, int(np.ceil(vocab_size * hidden * entropy / 8)),
         None, False)]
    variants = []
    for name, bits, table_bytes, table, shipped_as in tables:
        t = time.perf_counter()
        pred = own if table is None else predict(table)
        flips = int((pred != reference).sum())
        variants.append({"table": name, "bits_per_value": round(bits, 3), "table_mb": round(table_bytes / 1e6, 2),
                         "artifact_mb": round((rest + table_bytes) / 1e6, 2), "shipped": shipped_as,
                         "runnable": table is not None,
                         "rmse": None if table is None else float(np.sqrt(((table - fp32) ** 2).mean())),
                         "flips_vs_own_8bit": int((pred != own).sum()), "flips_vs_reference": flips,
                         "flips_vs_unpruned_fp32": int((pred != unpruned_fp32).sum()),
                         "agreement": round(1 - flips / len(y), 4), "agreement_ci": _wilson(len(y) - flips, len(y)),
                         "accuracy": round(float((pred == y).mean()), 4),
                         "drop_points": round((evref["accuracy"] - float((pred == y).mean())) * 100, 2),
                         "seconds": round(time.perf_counter() - t, 1)})
        log(f"rounding: {name}: {flips} flips vs the unpruned 8-bit int8 ({variants[-1]['seconds']:.0f} s)")
    return {"bundle": b4.name, "own_8bit": b8.name, "reference": ref.name, "n": len(y), "vocab_size": vocab_size,
            "reference_vs_fp32": int((reference != unpruned_fp32).sum()),
            "hidden": hidden, "rest_mb": round(rest / 1e6, 2), "entropy_bits": round(entropy, 3), "mixed_rows": keep,
            "max_flips": int(np.floor(len(y) * (1 - TARGET["min_agreement"]) + 1e-9)), "checks": checks,
            "variants": variants, "target": TARGET,
            "commands": [{"step": "rounding", "command": "python -m benchmarks rounding",
                          "wall_time_s": round(time.perf_counter() - started, 1)}]}


def holds(v: dict[str, Any]) -> bool:
    """A table meets the whole size target (and a runtime can run it: not the entropy bound)."""
    return (v["runnable"] and v["artifact_mb"] <= TARGET["max_mb"]
            and v["agreement"] >= TARGET["min_agreement"] and v["drop_points"] <= TARGET["max_drop_points"])


def markdown(result: dict[str, Any], device_id: str) -> list[str]:
    """The rounding section of RESULTS.md."""
    lines = ["## Word-row rounding in the int8 graph (issue 16's agreement bar)", "",
             f"`python -m benchmarks rounding` on `{device_id}`, from the vocab part's cache. One graph, many word "
             f"tables: the {result['bundle']} ONNX int8 artifact (static QDQ layers, 4-bit word lookup) with its "
             "lookup replaced by a float Gather of each table, run on all "
             f"{result['n']:,} test texts through edgekd's `Classifier` (the bundle's tokenizer and batching). The "
             "harness first reproduces both shipped bundles prediction for prediction (the 4-bit table gives the 4-bit "
             "bundle's predictions, the 8-bit bundle's per-tensor uint8 table the 8-bit bundle's); numpy's "
             "`block_rows(fp32, 4)` differs from ONNX Runtime's shipped 4-bit table in "
             f"{result['checks']['block_rows(fp32, 4) vs shipped 4-bit']['differing_values']:,} values. Flips and "
             f"agreement against the target's reference, the unpruned student's 8-bit int8 ({result['reference']}); "
             f"the bar (>= {TARGET['min_agreement']:.1%}) allows at most {result['max_flips']} flips. Flips against the "
             "unpruned student's fp32 artifact (its PyTorch predictions; the reference itself flips "
             f"{result['reference_vs_fp32']} of them) read the bar the other way. Artifact MB = "
             f"the 4-bit artifact without its word table ({result['rest_mb']:.2f} MB) + the table "
             "(fp16 block scales; the mix adds an int16 row map), so estimated except for the shipped rows.", "",
             "| word table | bits per value | table MB | artifact MB | RMSE vs fp32 | flips vs own 8-bit | "
             "flips vs unpruned fp32 | flips vs reference | agreement (95% CI) | accuracy | drop (pt) | holds the target |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for v in result["variants"]:
        rmse = "-" if v["rmse"] is None else f"{v['rmse']:.5f}"
        lo, hi = v["agreement_ci"]
        lines.append(f"| {v['table']} | {v['bits_per_value']:.2f} | {v['table_mb']:.2f} | {v['artifact_mb']:.2f} | "
                     f"{rmse} | {v['flips_vs_own_8bit']} | {v['flips_vs_unpruned_fp32']} | {v['flips_vs_reference']} | {v['agreement']:.4f} "
                     f"({lo:.4f}-{hi:.4f}) | {v['accuracy']:.4f} | {v['drop_points']:+.2f} | "
                     f"{'yes' if holds(v) else 'no'} |")
    others = [v for v in result["variants"] if not v["table"].startswith("8-bit bundle")]
    best = min(others, key=lambda v: v["flips_vs_reference"])
    own = next(v for v in result["variants"] if v["table"].startswith("8-bit bundle's rows"))
    bound = next(v for v in result["variants"] if "bound" in v["table"])
    lines += ["", f"Read: pruning alone (the 8-bit bundle's own rows) costs {own['flips_vs_reference']} of the "
              f"{result['max_flips']} flips the bar allows. Every other table lands at {best['flips_vs_reference']} "
              f"flips or more (the fewest: {best['table']}, {best['table_mb']:.2f} MB of table). Storing the 8-bit "
              f"bundle's exact codes needs {result['entropy_bits']:.2f} bits a value even entropy-coded, so an artifact "
              f"that keeps them weighs at least {bound['artifact_mb']:.2f} MB. "
              + ("**Some table holds the whole target.**" if any(holds(v) for v in result["variants"]) else
                 f"**No table holds the whole target** (<= {TARGET['max_mb']:g} MB, <= {TARGET['max_drop_points']:g} "
                 f"pt, >= {TARGET['min_agreement']:.1%} agreement) on this student."), "",
              "| step | command | wall time |", "|---|---|---|"]
    lines += [f"| {c['step']} | `{c['command']}` | {c['wall_time_s']:.1f} s |" for c in result["commands"]]
    return lines
