"""Activation outliers (issue 15, item 5): the largest activation magnitude per encoder layer, where static
int8 meets it, and the static int8 (calibrated QDQ) agreement the export measured.

Static QDQ int8 gives each activation tensor one scale from its calibrated min/max, so a single
outlier stretches the scale and rounds every ordinary value coarser. The inputs of the quantized
MatMuls are what matter: the attention block's input (a layer's input hidden state, feeding Q/K/V),
the attention context (feeding the output projection) and the FFN intermediate after GELU (feeding
the down-projection, where BERT's largest outliers sit)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

# Tensor per layer -> which quantized MatMul reads it.
POINTS = {"hidden": "layer output (next layer's Q/K/V input)", "context": "attention context (output projection input)",
          "ffn": "FFN intermediate after GELU (down-projection input)"}


def activation_peaks(model: Any, tokenizer: Any, texts: list[str], max_length: int,
                     batch_size: int = 16) -> list[dict[str, float]]:
    """Per encoder layer, max |activation| over the real (non-padding) tokens of `texts` at each of
    POINTS, plus the ratio of the peak to the 99.9th percentile of |hidden| (how far the outlier
    sticks out). A forward pass with hooks; the model is left as it was."""
    import torch

    from edgekd.train.students import encoder_layer_path

    blocks = model.get_submodule(encoder_layer_path(model))
    peaks = [{k: 0.0 for k in POINTS} | {"hidden_p999": 0.0} for _ in blocks]
    mask_now: dict[str, Any] = {}

    def record(i: int, key: str) -> Any:
        def hook(_module: Any, _inputs: Any, output: Any) -> None:
            x = output[0] if isinstance(output, tuple) else output  # [batch, seq, width]
            real = x[mask_now["mask"]].abs()  # [real tokens, width]
            peaks[i][key] = max(peaks[i][key], float(real.max()))
            if key == "hidden":
                peaks[i]["hidden_p999"] = max(peaks[i]["hidden_p999"], float(torch.quantile(
                    real.flatten().float()[:1_000_000], 0.999)))
        return hook

    handles = []
    for i, block in enumerate(blocks):
        handles += [block.register_forward_hook(record(i, "hidden")),
                    block.attention.self.register_forward_hook(record(i, "context")),
                    block.intermediate.register_forward_hook(record(i, "ffn"))]
    try:
        with torch.inference_mode():
            for start in range(0, len(texts), batch_size):
                enc = tokenizer(list(texts[start:start + batch_size]), truncation=True, max_length=max_length,
                                padding=True, return_tensors="pt")
                mask_now["mask"] = enc["attention_mask"].bool()
                model(**enc)
    finally:
        for h in handles:
            h.remove()
    return [{k: round(v, 4) for k, v in p.items()} | {"outlier_ratio": round(p["hidden"] / max(p["hidden_p999"], 1e-12), 2)}
            for p in peaks]


def static_int8_agreement(bundle: Path) -> dict[str, Any] | None:
    """The static QDQ candidate's numbers from an ONNX export's accuracy control (always its first try):
    top-1 agreement with the PyTorch fp32 model, flips, n, Wilson 95% interval, accuracy drop; and
    whether it was kept. None when the bundle has no ONNX int8 decision."""
    import json

    manifest = json.loads((Path(bundle) / "edgekd.json").read_text())
    record = ((manifest.get("calibration") or {}).get("accuracy_control") or {}).get("onnx")
    if not record:
        return None
    static = next((t for t in record["tried"] if t["name"] == "static-qdq"), None)
    if static is None:
        return None
    return {"agreement": static.get("agreement"), "flips": static.get("flips"), "n": record.get("n_agreement"),
            "agreement_ci": static.get("agreement_ci"), "accuracy_drop": static.get("accuracy_drop"),
            "kept": record.get("chosen") == "static-qdq", "chosen": record.get("chosen"), "error": static.get("error")}


def summary(peaks: list[dict[str, float]]) -> dict[str, float]:
    """The largest value of each point over all layers (one row of the results table)."""
    return {k: float(np.max([p[k] for p in peaks])) for k in (*POINTS, "outlier_ratio")}
