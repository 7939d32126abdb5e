"""OpenVINO: IR converted from optimum's ONNX graph, fp32 and fp16-compressed weights, and int8
with NNCF post-training quantization (TRANSFORMER preset); when plain int8 exceeds the accuracy
budget, NNCF's accuracy control returns the most sensitive ops to float."""

from __future__ import annotations

from typing import Any

from edgekd.bundle import Artifact
from edgekd.calibration.accuracy import Int8Candidate, accuracy
from edgekd.exporters.base import Exporter, ExportJob
from edgekd.exporters.onnx import raw_onnx
from edgekd.runtimes.openvino import RT_INFO_PATH  # where the session reads the contract back

VALIDATION_BATCH = 32


class OpenVinoExporter(Exporter):
    name = "openvino"
    extra = "openvino"
    modules = ("openvino", "nncf", "optimum.exporters.onnx")

    def _export(self, job: ExportJob) -> list[Artifact]:
        import openvino as ov

        (job.bundle / "openvino").mkdir(exist_ok=True)
        model = ov.convert_model(str(raw_onnx(job)))
        model.set_rt_info(job.contract, RT_INFO_PATH)
        ov.save_model(model, str(job.bundle / "openvino" / "model.xml"), compress_to_fp16=False)
        ov.save_model(model, str(job.bundle / "openvino" / "model.fp16.xml"), compress_to_fp16=True)
        extra = {"converted_from": "onnx (optimum export)", "device": "CPU"}
        self._model = model  # the converted float model; int8 quantizes a clone of it
        return [Artifact("openvino", "fp32", "openvino/model.xml", extra=dict(extra)),
                Artifact("openvino", "fp16", "openvino/model.fp16.xml", extra=dict(extra, weights="fp16-compressed"))]

    def _export_int8(self, job: ExportJob) -> Artifact | None:
        """NNCF's TRANSFORMER preset, then NNCF's own accuracy control (sensitive ops back to float);
        the first that passes the int8 gates is kept."""
        import nncf
        import openvino as ov

        model = self._model
        max_drop = job.gates.threshold("int8", "accuracy_drop")

        calib = nncf.Dataset([job.encode([t]) for t in job.calibration.texts])
        texts, labels = job.validation
        batches = [(job.encode(texts[i : i + VALIDATION_BATCH]), labels[i : i + VALIDATION_BATCH])
                   for i in range(0, len(texts), VALIDATION_BATCH)]
        # accuracy control also checks top-1 agreement on unlabelled extra texts (rows after validation)
        extra = job.agreement_texts
        eval_batches = batches + [(job.encode(extra[i : i + VALIDATION_BATCH]), [])
                                  for i in range(0, len(extra), VALIDATION_BATCH)]
        common = {"model_type": nncf.ModelType.TRANSFORMER, "subset_size": len(job.calibration.texts)}
        result: dict[str, Any] = {}

        def plain() -> Any:
            result["model"] = nncf.quantize(model.clone(), calib, **common)
            return _logits(ov.Core().compile_model(result["model"], "CPU", _F32), eval_batches)

        def controlled() -> Any:
            result["model"] = nncf.quantize_with_accuracy_control(
                model.clone(), calib, nncf.Dataset(batches), _validate, max_drop=max_drop,
                drop_type=nncf.DropType.ABSOLUTE, **common)
            return _logits(ov.Core().compile_model(result["model"], "CPU", _F32), eval_batches)

        preset = {"mode": "static", "tool": "nncf.quantize", "model_type": "TRANSFORMER",
                  "subset_size": common["subset_size"]}
        decision = job.decide_int8("openvino", [
            Int8Candidate("nncf-transformer", preset, plain),
            Int8Candidate("nncf-accuracy-control", dict(preset, tool="nncf.quantize_with_accuracy_control",
                                                        max_drop=max_drop), controlled),
        ])
        if decision.chosen is None:
            return None
        quantized = result["model"]
        quantized.set_rt_info(job.contract, RT_INFO_PATH)
        ov.save_model(quantized, str(job.bundle / "openvino" / "model.int8.xml"), compress_to_fp16=False)
        settings = dict(decision.chosen.settings, variant=decision.chosen.name,
                        source_validation_accuracy=decision.reference_accuracy,
                        validation_accuracy=decision.chosen_row["accuracy"])
        return Artifact("openvino", "int8", "openvino/model.int8.xml", quantization=settings,
                        float_ops=_float_matmuls(quantized), extra={"device": "CPU"})


# Evaluate in full fp32 so bf16 on CPUs that have it does not blur the comparison.
_F32 = {"INFERENCE_PRECISION_HINT": "f32"}


def _validate(compiled: Any, batches: Any) -> tuple[float, list[float]]:
    """NNCF validation_fn: (accuracy over all texts, accuracy per batch)."""
    import numpy as np

    per_batch, logits, labels = [], [], []
    for feed, batch_labels in batches:
        out = compiled(feed)[compiled.output(0)]
        logits.append(out)
        labels.extend(batch_labels)
        per_batch.append(accuracy(out, batch_labels))
    return accuracy(np.concatenate(logits), labels), per_batch


def _logits(compiled: Any, batches: Any) -> Any:
    import numpy as np

    return np.concatenate([compiled(feed)[compiled.output(0)] for feed, _ in batches])


def _float_matmuls(model: Any) -> list[str]:
    """MatMuls whose activation input is not fed by a FakeQuantize (left in float)."""
    names = []
    for op in model.get_ordered_ops():
        if op.get_type_name() != "MatMul":
            continue
        sources = [op.input_value(i).get_node().get_type_name() for i in range(op.get_input_size())]
        if "FakeQuantize" not in sources:
            names.append(op.get_friendly_name())
    return names

