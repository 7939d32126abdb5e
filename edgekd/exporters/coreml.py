"""Core ML: an ML Program `.mlpackage` converted from a traced wrapper module we own, with
enumerated sequence-length buckets (the Neural Engine wants fixed shapes, not an open range),
fp16 compute by default, and int8 weights via coremltools.optimize. Converts on any OS."""

from __future__ import annotations

import json
import shutil
import sys
from typing import Any

import numpy as np

from edgekd.backends import COREML_COMPUTE_UNITS
from edgekd.bundle import CONTRACT_KEY, Artifact
from edgekd.calibration.accuracy import Int8Candidate
from edgekd.exporters.base import Exporter, ExportJob

# Core ML input: token ids only. Before iOS 18 a model may have just ONE enumerated-shape input,
# so the attention mask is derived in-graph (input_ids != pad_id); tokenizers never emit the pad
# id inside real text. token_type_ids are 0 for single-sentence classification.
INPUTS = ["input_ids"]
# Fill for masked attention scores: finfo(float32).min overflows to -inf in fp16 and yields NaN
# after softmax of an all-masked row; -1e4 is far below any real score and exact in fp16.
MASK_FILL = -1e4
# Bucket edges are quantiles of the data's token lengths, rounded up to a multiple of 16.
BUCKET_QUANTILES = (0.1, 0.5, 0.9, 0.99)
BUCKET_STEP = 16
INT8_WEIGHT_THRESHOLD = 2048  # smaller tensors (biases, LayerNorm) stay fp16


def sequence_buckets(lengths: list[int], max_length: int) -> list[int]:
    """Enumerated sequence lengths: data quantiles rounded up to BUCKET_STEP, plus max_length; at
    least two (Core ML's EnumeratedShapes needs two, and when every text reaches max_length, as IMDB
    reviews do at 128 tokens, the quantiles collapse onto it: then half of max_length is added)."""
    edges = {max_length}
    if lengths:
        for q in np.quantile(np.asarray(lengths), BUCKET_QUANTILES):
            edges.add(int(min(max_length, max(BUCKET_STEP, -(-int(q) // BUCKET_STEP) * BUCKET_STEP))))
    if len(edges) == 1:
        edges.add(max(1, max_length // 2))
    return sorted(edges)


def logits_module(model: Any, pad_id: int) -> Any:
    """A torch module input_ids [batch, seq] -> logits [batch, num_labels] to trace.

    BERT-family checkpoints get an explicit forward with an fp16-safe additive mask; other
    architectures call the model and keep only the logits."""
    import torch

    base = getattr(model, "base_model", None)
    bert_like = all(hasattr(x, a) for x, a in [(base, "embeddings"), (base, "encoder"), (base, "pooler"),
                                                (model, "classifier")]) and base.pooler is not None

    class LogitsOnly(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids: torch.Tensor) -> torch.Tensor:
            attention_mask = (input_ids != pad_id).int()
            if not bert_like:
                return self.model(input_ids=input_ids.long(), attention_mask=attention_mask.long()).logits
            ids = input_ids.long()
            hidden = base.embeddings(input_ids=ids, token_type_ids=torch.zeros_like(ids))
            # additive mask: [batch, 1, 1, seq], 0 where attended, MASK_FILL where padded
            additive = (1.0 - attention_mask.float()[:, None, None, :]) * MASK_FILL
            hidden = base.encoder(hidden, attention_mask=additive)[0]
            return self.model.classifier(base.pooler(hidden))  # dropout is identity in eval

    return LogitsOnly().eval()


class CoreMLExporter(Exporter):
    name = "coreml"
    extra = "coreml"
    modules = ("coremltools",)

    def _export(self, job: ExportJob) -> list[Artifact]:
        units = job.options.get("compute_units", "ALL")
        if units not in COREML_COMPUTE_UNITS:
            raise ValueError(f"compute units {units!r} not in {COREML_COMPUTE_UNITS}")
        precision = job.options.get("coreml_precision", "fp16")
        pool = job.calibration.texts if job.calibration else [t for s in job.check_sets.values() for t in s]
        buckets = sequence_buckets(job.token_lengths(pool), job.max_length)  # as tokenizer.json counts
        mlmodel = self._convert(job, buckets, precision)
        self._metadata(mlmodel, job)
        (job.bundle / "coreml").mkdir(exist_ok=True)
        mlmodel.save(str(job.bundle / "coreml" / "model.mlpackage"))
        extra = {"sequence_buckets": buckets, "batch": 1, "compute_units": units, "compute_precision": precision,
                 "inputs": INPUTS, "input_dtype": "int32", "mask_fill": MASK_FILL,
                 "attention_mask": "derived in-graph: input_ids != pad_id",
                 "minimum_deployment_target": "iOS16/macOS13", "bucket_quantiles": list(BUCKET_QUANTILES)}
        self._float = (mlmodel, extra, precision)  # int8 quantizes the weights of this program
        return [Artifact("coreml", precision, "coreml/model.mlpackage", extra=extra)]

    def _export_int8(self, job: ExportJob) -> Artifact | None:
        """int8 weights (activations stay at the float program's precision), kept only when the
        program, run by the engine that checks Core ML here (Core ML on macOS, else the MIL
        reference evaluator), passes the int8 gates on the decision texts."""
        import coremltools as ct

        mlmodel, extra, precision = self._float
        artifact = Artifact(
            "coreml", "int8", "coreml/model.int8.mlpackage", extra=dict(extra),
            quantization={"mode": "weights-only", "tool": "coremltools.optimize.coreml.linear_quantize_weights",
                          "scheme": "linear_symmetric", "weight_threshold": INT8_WEIGHT_THRESHOLD,
                          "activations": precision},
            float_ops=[f"weights under {INT8_WEIGHT_THRESHOLD} elements", f"all activations ({precision})"])

        def build() -> np.ndarray:
            config = ct.optimize.coreml.OptimizationConfig(global_config=ct.optimize.coreml.OpLinearQuantizerConfig(
                mode="linear_symmetric", weight_threshold=INT8_WEIGHT_THRESHOLD))
            int8 = ct.optimize.coreml.linear_quantize_weights(mlmodel, config=config)
            self._metadata(int8, job)
            int8.save(str(job.bundle / artifact.path))
            return self.session_logits(job, artifact, job.int8_eval_texts()[0])

        decision = job.decide_int8("coreml", [Int8Candidate("weights-linear-symmetric", artifact.quantization, build)])
        if decision.chosen is None:
            shutil.rmtree(job.bundle / artifact.path, ignore_errors=True)
            return None
        artifact.quantization = dict(artifact.quantization, variant=decision.chosen.name,
                                     validation_accuracy=decision.chosen_row["accuracy"],
                                     source_validation_accuracy=decision.reference_accuracy)
        return artifact

    def _convert(self, job: ExportJob, buckets: list[int], precision: str) -> Any:
        import coremltools as ct
        import torch

        # any real held-out text: the short and medium classes are empty when every text is longer
        # than max_length (IMDB reviews at 128 tokens); the shapes are enumerated, not traced
        example = job.encode([next(t for texts in job.check_sets.values() for t in texts)], dtype=np.int32)
        with torch.no_grad():
            traced = torch.jit.trace(logits_module(job.model, job.settings.pad_id),
                                     tuple(torch.from_numpy(example[n]) for n in INPUTS), strict=False)
        shapes = ct.EnumeratedShapes(shapes=[[1, s] for s in buckets], default=[1, buckets[-1]])
        inputs = [ct.TensorType(name="input_ids", shape=shapes, dtype=np.int32)]
        return ct.convert(traced, inputs=inputs, outputs=[ct.TensorType(name="logits")], convert_to="mlprogram",
                          compute_precision=ct.precision.FLOAT16 if precision == "fp16" else ct.precision.FLOAT32,
                          minimum_deployment_target=ct.target.iOS16, skip_model_load=sys.platform != "darwin")

    @staticmethod
    def _metadata(mlmodel: Any, job: ExportJob) -> None:
        meta = mlmodel.user_defined_metadata
        meta[CONTRACT_KEY] = job.contract
        meta["edgekd.labels"] = json.dumps(job.labels, ensure_ascii=False)
        mlmodel.short_description = f"edgekd text classifier ({len(job.labels)} labels), logits output"
