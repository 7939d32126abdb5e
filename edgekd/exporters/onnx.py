"""ONNX: optimum's exporter (dynamic batch and sequence axes), ORT transformer graph fusions,
then int8 chosen by accuracy control among static QDQ (calibrated) and dynamic quantization."""

from __future__ import annotations

import functools
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from edgekd.bundle import CONTRACT_KEY, Artifact
from edgekd.calibration.accuracy import Int8Candidate
from edgekd.exporters.base import Exporter, ExportJob

OPSET = 17
# Transformer fusions for the fp32 model. Embedding + LayerNorm fusion stays off so the word
# embedding remains a Gather that int8 can quantize (it is ~half of a small BERT's weights).
FUSION_MODEL_TYPE = {"bert": "bert", "distilbert": "bert", "roberta": "bert", "xlm-roberta": "bert",
                     "mpnet": "bert", "electra": "bert", "minilm": "bert"}
# Static int8: quantize the matrix products and the embedding lookup; LayerNorm, GELU, Softmax and the
# residual Adds are not quantized ops, because their outlier activations break BERT-like models at int8. (A
# residual Add still reads the dequantized LayerNorm output that feeds the next projections: ORT shares one
# QDQ pair. Rewiring it to the float tensor measured no better, 0.9959, and 2.6x slower.)
# Their inputs only: ORT's default also puts a QDQ pair on each one's OUTPUT, which rounds the logits
# themselves (the classifier Gemm's output: a step of ~1/16 logit at a range of +-8, enough to flip
# near-ties) and every projection before its bias Add. Measured on a 2-layer AG News student, the whole test
# split (7,600): agreement with fp32 0.9918-0.9941 with output QDQ, 0.9962-0.9968 without, max |logit
# error| 0.51-0.63 -> 0.19, batch-1 latency unchanged.
STATIC_OPS = ["MatMul", "Gemm", "Gather"]
DYNAMIC_OPS = ["MatMul", "Gemm", "Gather", "Attention"]
KEPT_FLOAT_BY_DESIGN = ["LayerNormalization", "SkipLayerNormalization", "Gelu", "BiasGelu", "FastGelu",
                        "Softmax", "Add"]
COMPUTE_OPS = {"MatMul", "Gemm", "Gather", "Attention"}
# FFN down-projection pattern (static int8 "ffn-float"): GELU's own op or, decomposed (opset < 20),
# its Erf; Tanh is left out because the pooler's Tanh sits between the pooler and classifier Gemms.
GELU_OPS = {"Erf", "Gelu", "BiasGelu", "FastGelu", "QuickGelu"}
# Ops allowed between an FFN up-projection's MatMul and its down-projection: the bias Add and GELU.
FFN_ELEMENTWISE_OPS = GELU_OPS | {"Add", "Mul", "Div", "Sub", "Pow", "Cast"}
FFN_MAX_HOPS = 8  # elementwise ops walked back from a down-projection (opset-17 Erf GELU + bias Add: 6)
CALIBRATION_BATCH = 8
# `--embedding-bits 4`: after the int8 decision, the word-embedding table (most of a small student's
# weights) is stored as symmetric int4 rows in blocks along the hidden axis, one fp16 scale per block
# (ORT's weight-only quantizer: Gather -> com.microsoft GatherBlockQuantized; its fp32 scales are then cast
# to fp16, and the rows back to fp32 after the lookup: 0.56 MB less for a 23k x 384 table at block 32). Tried from the largest
# block (smallest file) to the smallest (closest to the float rows); accuracy control keeps the first
# that passes the int8 gates, else the 8-bit rows stay.
EMBEDDING_BLOCK_SIZES = (128, 64, 32)
INT4_OPSET = 21  # int4 initializers need default-domain opset 21 and IR version 10
INT4_IR_VERSION = 10


def embed_contract(path: Path, contract: str) -> None:
    """Write the contract hash into the ONNX model's metadata_props (key edgekd.contract)."""
    import onnx

    model = onnx.load(str(path))
    for prop in list(model.metadata_props):
        if prop.key == CONTRACT_KEY:
            model.metadata_props.remove(prop)
    entry = model.metadata_props.add()
    entry.key, entry.value = CONTRACT_KEY, contract
    onnx.save(model, str(path))


def raw_onnx(job: ExportJob) -> Path:
    """optimum's plain ONNX export of the checkpoint (cached per job; OpenVINO may reuse it)."""
    if "onnx_raw" not in job.shared:
        from optimum.exporters.onnx import main_export, onnx_export_from_model

        from edgekd.train.diff_attention import card_of
        from edgekd.train.infer import MODEL_BUILD_LOCK

        out = job.workdir / "onnx-raw"
        # torch.onnx.export keeps process-wide state (GLOBALS.in_onnx_export): one export at a time
        with MODEL_BUILD_LOCK:
            # differential-attention layers (from_pretrained would drop them) or trimmed position tables:
            # the loaded model itself is exported (same optimum ONNX config)
            if card_of(job.model_dir) is not None or job.options.get("positions_trimmed"):
                onnx_export_from_model(job.model, out, opset=OPSET, task="text-classification", do_validation=False)
            else:
                main_export(str(job.model_dir), out, task="text-classification", opset=OPSET, do_validation=False,
                            library_name="transformers", local_files_only=True)
        job.shared["onnx_raw"] = out / "model.onnx"
    return job.shared["onnx_raw"]


class OnnxExporter(Exporter):
    name = "onnx"
    extra = "train"
    modules = ("onnx", "onnxruntime", "optimum.exporters.onnx")

    def _export(self, job: ExportJob) -> list[Artifact]:
        (job.bundle / "onnx").mkdir(exist_ok=True)
        fp32 = job.bundle / "onnx" / "model.onnx"
        fused = self._optimize(job, raw_onnx(job), fp32)
        embed_contract(fp32, job.contract)
        return [Artifact("onnx", "fp32", "onnx/model.onnx",
                         extra={"opset": OPSET, "optimizer": "onnxruntime.transformers (python fusions)",
                                "fused_ops": fused})]

    def _export_int8(self, job: ExportJob) -> Artifact | None:
        return self._int8(job, job.bundle / "onnx" / "model.onnx")

    def _optimize(self, job: ExportJob, src: Path, dst: Path) -> dict[str, int]:
        from onnxruntime.transformers.fusion_options import FusionOptions
        from onnxruntime.transformers.optimizer import optimize_model

        model_type = FUSION_MODEL_TYPE.get(job.model.config.model_type)
        if model_type is None:  # unknown architecture: keep optimum's graph, ORT optimises at load
            shutil.copyfile(src, dst)
            return {}
        options = FusionOptions(model_type)
        options.enable_embed_layer_norm = False
        optimized = optimize_model(str(src), model_type=model_type, optimization_options=options, opt_level=0)
        optimized.save_model_to_file(str(dst))
        return {k: int(v) for k, v in optimized.get_fused_operator_statistics().items() if v}

    def _int8(self, job: ExportJob, fp32: Path) -> Artifact | None:
        """Try static QDQ, static QDQ with the FFN down-projections float, then dynamic; keep the
        first that passes the int8 gates (accuracy control), else None (the base records the drop)."""
        texts, _ = job.int8_eval_texts()
        work = job.workdir / "onnx-int8"
        work.mkdir(exist_ok=True)
        # Static QDQ works on optimum's unfused graph (shape inference cannot see through the fused
        # com.microsoft ops); dynamic quantization understands the fused Attention, so it uses fp32.
        source = _preprocess(raw_onnx(job), work / "preprocessed.onnx")
        sensitive = _sensitive_nodes(source)
        not_weights = _activation_only_ops(source)
        ffn_float = sensitive + not_weights  # passed to the quantizer and recorded: one list

        def quantizer(name: str, word: bool = False) -> tuple[Any, Path]:
            """The candidate `name`'s quantize(src, dst) and the model it reads; `word`: the word-embedding
            lookup left float too (the 4-bit embedding pass rebuilds the chosen setting so)."""
            if name == "dynamic":
                return functools.partial(_dynamic, word=word), fp32
            return _static(job, {"static-qdq": not_weights, "static-qdq-ffn-float": ffn_float}[name], word=word), source

        def build(name: str) -> Any:
            quantize, src = quantizer(name)

            def _build() -> Any:
                quantize(src, work / f"{name}.onnx")
                return _ort_logits(work / f"{name}.onnx", job, texts)
            return _build

        static = {"mode": "static", "format": "QDQ", "ops": STATIC_OPS, "per_channel": True}  # both static records
        candidates = [
            Int8Candidate("static-qdq", dict(static, calibrate_method="MinMax", outputs="float",
                                             nodes_excluded=not_weights), build("static-qdq")),
            Int8Candidate("static-qdq-ffn-float", dict(static, outputs="float", nodes_excluded=ffn_float),
                          build("static-qdq-ffn-float")),
            Int8Candidate("dynamic", {"mode": "dynamic", "ops": DYNAMIC_OPS, "per_channel": True}, build("dynamic")),
        ]
        decision = job.decide_int8("onnx", candidates)
        if decision.chosen is None:
            return None
        chosen, row, extra = work / f"{decision.chosen.name}.onnx", decision.chosen_row, {}
        rows: dict[str, Any] = {"bits": 8}
        if job.options.get("embedding_bits", 8) == 4:
            rebuild = quantizer(decision.chosen.name, word=True)
            rows, four_bit = _embedding_rows(job, decision.chosen.name, *rebuild, work, texts)
            if four_bit is not None:
                chosen, row, extra = four_bit[0], four_bit[1], {"opset": INT4_OPSET}
        out = job.bundle / "onnx" / "model.int8.onnx"
        shutil.copyfile(chosen, out)
        embed_contract(out, job.contract)
        settings = dict(decision.chosen.settings, variant=decision.chosen.name, embedding_rows=rows,
                        calibration_size=len(job.calibration.texts) if job.calibration else 0,
                        validation_accuracy=row["accuracy"], source_validation_accuracy=decision.reference_accuracy)
        float_ops = [f"type:{t}" for t in KEPT_FLOAT_BY_DESIGN] + _float_compute_nodes(out)
        return Artifact("onnx", "int8", "onnx/model.int8.onnx", quantization=settings, float_ops=float_ops,
                        extra=extra)


def _embedding_rows(job: ExportJob, variant: str, quantize: Any, src: Path, work: Path,
                    texts: list[str]) -> tuple[dict[str, Any], tuple[Path, dict[str, Any]] | None]:
    """The 4-bit word-embedding pass over the int8 setting accuracy control chose (`variant`): `quantize`
    rebuilds it with the word-embedding Gather float, then each EMBEDDING_BLOCK_SIZES candidate turns that
    Gather into GatherBlockQuantized and is gated like any int8 candidate (its decision is recorded in the
    manifest under accuracy_control.onnx.embedding_rows). Returns the record for the artifact's
    `quantization.embedding_rows` and (path, decision row) of the kept candidate, or None when every
    block size failed (the 8-bit rows stay; the record says why)."""
    from edgekd.calibration.accuracy import rejection_reason

    base = work / f"{variant}-word-float.onnx"

    def path(block: int) -> Path:
        return work / f"{variant}-embedding-int4-b{block}.onnx"

    scales: dict[int, str] = {}  # per block size: the scales' dtype (fp16 unless it cannot hold them)

    def build(block: int) -> Any:
        def _build() -> Any:
            if not base.is_file():
                quantize(src, base)
            scales[block] = _word_embedding_int4(base, path(block), block)
            return _ort_logits(path(block), job, texts)
        return _build

    settings = {"bits": 4, "symmetric": True, "op": "com.microsoft GatherBlockQuantized", "axis": "hidden"}
    candidates = [Int8Candidate(f"{variant}+embedding-int4-b{b}", dict(settings, block_size=b), build(b))
                  for b in EMBEDDING_BLOCK_SIZES]
    decision = job.decide_int8("onnx", candidates, stage="embedding_rows")
    if decision.chosen is None:
        reason = rejection_reason(decision.record(), what="4-bit embedding setting")
        job.log(f"onnx int8: 8-bit word-embedding rows kept ({reason})")
        return {"bits": 8, "requested_bits": 4, "reason": reason}, None
    block = decision.chosen.settings["block_size"]
    return dict(decision.chosen.settings, scales=scales[block]), (path(block), decision.chosen_row)


def word_embedding_gather(graph: Any) -> Any:
    """The word-embedding lookup: the Gather whose table is a constant and whose indices are the model
    input `input_ids` (one per BERT-like graph, fused or not, float or with other nodes quantized)."""
    weights = _weight_names(graph)
    found = [n for n in graph.node if n.op_type == "Gather" and len(n.input) == 2
             and n.input[1] == "input_ids" and n.input[0] in weights]
    if len(found) != 1 or not found[0].name:
        raise ValueError(f"expected one named word-embedding Gather fed by input_ids, found {len(found)}")
    return found[0]


def _word_embedding_int4(src: Path, dst: Path, block_size: int) -> str:
    """Store the word-embedding table of `src` as 4-bit rows (`EMBEDDING_BLOCK_SIZES`) into `dst`; every
    other node is left as it is; returns the scales' dtype (`_fp16_scales`). The default-domain opset is raised to INT4_OPSET (int4 tensors need it;
    the ops used here mean the same from 17 to 21) before ORT's quantizer would force it with a warning."""
    import numpy as np
    import onnx
    from onnxruntime.quantization import QuantFormat

    model = onnx.load(str(src))
    word = word_embedding_gather(model.graph).name
    for entry in model.opset_import:
        if entry.domain in ("", "ai.onnx") and entry.version < INT4_OPSET:
            entry.version = INT4_OPSET
    model.ir_version = max(model.ir_version, INT4_IR_VERSION)
    nbits = _nbits_quantizer()
    config = nbits.DefaultWeightOnlyQuantConfig(block_size=block_size, is_symmetric=True,
                                                quant_format=QuantFormat.QOperator, op_types_to_quantize=("Gather",),
                                                quant_axes=(("Gather", 1),))
    others = [n.name for n in model.graph.node if n.op_type == "Gather" and n.name != word]
    quantizer = nbits.MatMulNBitsQuantizer(model, nodes_to_exclude=others, algo_config=config)
    # An all-zero row (the padding token's) has scale 0: ORT divides by it, then maps it to 0 (np.where), so
    # numpy's "invalid value" warning is noise; errstate is thread-local and restored on exit.
    with np.errstate(invalid="ignore", divide="ignore"):
        quantizer.process()
    converted = [n for n in quantizer.model.model.graph.node if n.op_type == "GatherBlockQuantized"]
    names = [n.name for n in converted]
    if names != [f"{word}_Q4"]:
        raise ValueError(f"the 4-bit pass converted {names}, expected only the word embedding {word}")
    half = _fp16_scales(quantizer.model.model.graph, converted[0])
    quantizer.model.save_model_to_file(str(dst), use_external_data_format=False)
    return "fp16" if half else "fp32"


def _fp16_scales(graph: Any, node: Any) -> bool:
    """Store `node`'s block scales (one per block of every row: a fifth of a 4-bit table at block 32) in fp16
    when each survives the cast to 1/1000 (relative): GatherBlockQuantized then yields fp16 rows, cast back
    to fp32 by a Cast node under the old output name, so the graph after it is unchanged. False (fp32 scales
    kept) for a table whose scales fp16 cannot hold."""
    import numpy as np
    import onnx

    init = next(i for i in graph.initializer if i.name == node.input[2])
    scales = onnx.numpy_helper.to_array(init)
    with np.errstate(over="ignore"):
        half = scales.astype(np.float16).astype(np.float32)
    nonzero = scales != 0
    if not np.all(np.isfinite(half)) or np.any(np.abs(half - scales)[nonzero] > 1e-3 * np.abs(scales)[nonzero]):
        return False
    init.CopyFrom(onnx.numpy_helper.from_array(scales.astype(np.float16), init.name))
    out = node.output[0]
    node.output[0] = f"{out}_fp16"
    cast = onnx.helper.make_node("Cast", [node.output[0]], [out], to=onnx.TensorProto.FLOAT, name=f"{node.name}_to_fp32")
    graph.node.insert(list(graph.node).index(node) + 1, cast)
    return True


def _nbits_quantizer() -> Any:
    """onnxruntime.quantization.matmul_nbits_quantizer, imported without its side effect: the module
    calls logging.basicConfig(level=INFO) on import, which would give the host process's root logger a
    handler and an INFO level. The root logger's handlers and level are put back as they were."""
    import logging

    root = logging.getLogger()
    handlers, level = list(root.handlers), root.level
    try:
        from onnxruntime.quantization import matmul_nbits_quantizer
    finally:
        for handler in [h for h in root.handlers if h not in handlers]:
            root.removeHandler(handler)
        root.setLevel(level)
    return matmul_nbits_quantizer


# Where ORT's quantizers write scratch files (read in onnxruntime 1.32's source and traced: nothing
# goes to the current directory unless a model path is a bare file name, and nothing chdirs):
# - `<model stem>-inferred.onnx` next to the model they read (quant_utils.load_model_with_shape_infer):
#   both quantizers read a model inside the export's work dir, so it lands there;
# - the calibration's augmented model, and a ModelProto's `<uuid>.data` external data, in a
#   `tempfile.TemporaryDirectory` (system temp dir; only TMPDIR, process-wide, would move it);
# - quant_pre_process: its temps in a TemporaryDirectory too; external data only when
#   `save_as_external_data` (models over 2 GB, not a student), at `external_data_location`.


def _static(job: ExportJob, exclude: list[str], word: bool = False) -> Any:
    """A quantize(src, dst) for static QDQ int8 that keeps exactly the nodes `exclude` float (and,
    with `word`, the word-embedding lookup too: the 4-bit embedding pass quantizes it)."""
    def quantize(src: Path, dst: Path) -> None:
        from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

        # A copy of the list: the caller records `exclude` as is, whatever ORT does to its argument.
        excluded = list(exclude) + ([_word_gather_name(src)] if word else [])
        quantize_static(str(src), str(dst), _Reader(job), quant_format=QuantFormat.QDQ,
                        op_types_to_quantize=STATIC_OPS, per_channel=True, activation_type=QuantType.QUInt8,
                        weight_type=QuantType.QInt8, nodes_to_exclude=excluded,
                        calibrate_method=CalibrationMethod.MinMax,
                        extra_options={"ActivationSymmetric": False, "WeightSymmetric": True,
                                       "OpTypesToExcludeOutputQuantization": list(STATIC_OPS)})
    return quantize


def _word_gather_name(path: Path) -> str:
    import onnx

    return str(word_embedding_gather(onnx.load(str(path), load_external_data=False).graph).name)


def _dynamic(src: Path, dst: Path, word: bool = False) -> None:
    """Dynamic int8 of `src` into `dst` (with `word`, the word-embedding lookup left float)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # ORT writes `<stem>-inferred.onnx` beside the model it reads: read a copy in the work dir
    # (dst's folder), not the fp32 model in the bundle's staging directory.
    staged = dst.with_name(f"{dst.stem}-input.onnx")
    shutil.copyfile(src, staged)
    # Fused com.microsoft ops hide tensor types from ONNX shape inference; they are all float.
    quantize_dynamic(str(staged), str(dst), op_types_to_quantize=DYNAMIC_OPS, per_channel=True,
                     weight_type=QuantType.QInt8, nodes_to_exclude=[_word_gather_name(src)] if word else [],
                     extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT})
    staged.unlink()


class _Reader:
    """onnxruntime CalibrationDataReader over the calibration set, in small padded batches."""

    def __init__(self, job: ExportJob) -> None:
        self._batches: Iterator[dict[str, Any]] = iter(self._make(job))

    @staticmethod
    def _make(job: ExportJob) -> list[dict[str, Any]]:
        texts = job.calibration.texts
        return [job.encode(texts[i : i + CALIBRATION_BATCH]) for i in range(0, len(texts), CALIBRATION_BATCH)]

    def get_next(self) -> dict[str, Any] | None:
        return next(self._batches, None)

    def rewind(self) -> None:  # the quantizer may call it; the batches are cheap to rebuild
        pass


def _ort_logits(path: Path, job: ExportJob, texts: list[str]) -> Any:
    import numpy as np
    import onnxruntime as ort

    sess = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    names = [i.name for i in sess.get_inputs()]
    out = []
    for i in range(0, len(texts), 32):
        feed = job.encode(texts[i : i + 32])
        out.append(sess.run(None, {n: feed[n] for n in names})[0])
    return np.concatenate(out)


def _preprocess(src: Path, dst: Path) -> Path:
    """Shape inference (incl. com.microsoft fused ops) so the quantizer knows every tensor type."""
    from onnxruntime.quantization.shape_inference import quant_pre_process

    quant_pre_process(str(src), str(dst), skip_optimization=True, skip_symbolic_shape=True)
    return dst


def _activation_only_ops(path: Path) -> list[str]:
    """Nodes static int8 leaves float because no weight is involved: attention's Q.K^T and
    softmax.V MatMuls (softmax probabilities lose most of their range at 8 bits) and Gathers that
    index activations (the pooler's [CLS] pick) rather than an embedding table."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    weights = _weight_names(graph)
    out = []
    for n in graph.node:
        if n.op_type == "Gather" and n.input[0] not in weights:
            out.append(n.name)
        elif n.op_type == "MatMul" and not any(i in weights for i in n.input):
            out.append(n.name)
    return out


def _sensitive_nodes(path: Path) -> list[str]:
    """The FFN down-projections (their input is GELU's output: large outliers) and the classifier
    head (its output is the logits themselves), in graph order: what the ffn-float candidate
    keeps float besides the activation-only ops."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    names = _ffn_down_projections(graph)
    matmuls = [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm")]
    if matmuls and matmuls[-1] not in names:
        names.append(matmuls[-1])  # the classifier
    return names


def _ffn_down_projections(graph: Any) -> list[str]:
    """Weight MatMuls/Gemms whose activation input comes from another weight MatMul (the FFN
    up-projection) through elementwise ops only, a GELU among them: optimum's opset-17 graph spells
    GELU as Div, Erf, Add, Mul, Mul; ORT's fusions as Gelu/BiasGelu/FastGelu. LayerNorm, Softmax and
    Reshape end the walk, so attention and residual paths never match."""
    producer = {o: n for n in graph.node for o in n.output}
    weights = _weight_names(graph)

    def up_projection_behind(tensor: str, hops: int, gelu_seen: bool) -> bool:
        node = producer.get(tensor)
        if node is None:
            return False
        if node.op_type in ("MatMul", "Gemm"):
            return gelu_seen and any(i in weights for i in node.input)
        if node.op_type not in FFN_ELEMENTWISE_OPS or hops == FFN_MAX_HOPS:
            return False
        gelu_seen = gelu_seen or node.op_type in GELU_OPS
        return any(up_projection_behind(i, hops + 1, gelu_seen) for i in node.input if i not in weights)

    return [n.name for n in graph.node if n.op_type in ("MatMul", "Gemm") and any(i in weights for i in n.input)
            and any(up_projection_behind(i, 0, False) for i in n.input if i not in weights)]


def _weight_names(graph: Any) -> set[str]:
    """Tensors that are constants of the graph: initializers and Constant node outputs."""
    return {i.name for i in graph.initializer} | {o for n in graph.node if n.op_type == "Constant" for o in n.output}


def _float_compute_nodes(path: Path) -> list[str]:
    """Compute nodes of a quantized model that still run in float (no DequantizeLinear input)."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph
    producer = {o: n.op_type for n in graph.node for o in n.output}
    return [n.name for n in graph.node if n.op_type in COMPUTE_OPS
            and not any(producer.get(i) == "DequantizeLinear" for i in n.input)]
