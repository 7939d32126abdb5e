"""PyTorch reference inference for a sequence-classification checkpoint: the ground truth that
evaluate, distill, the export check and verify all compare against.

Texts are tokenized exactly as the runtime does (truncate to max_length, no padding to
max_length), batched in the given order, each batch padded to its own longest sequence.
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import numpy as np

# Building a transformers model is not thread-safe: from_pretrained swaps torch.nn functions for the
# whole process while it builds (meta-device init), and torch.onnx.export keeps process-wide state.
# Every edgekd path that builds or exports a model (load_checkpoint, the ONNX export, the torch
# reference runtime) takes this lock, so exports in two threads of one process take turns there.
MODEL_BUILD_LOCK = threading.RLock()


def load_checkpoint(model_dir: str | Path) -> tuple[Any, Any]:
    """(model in eval mode on CPU, tokenizer) of a Hugging Face checkpoint directory."""
    from transformers import AutoTokenizer

    with MODEL_BUILD_LOCK:
        tokenizer = AutoTokenizer.from_pretrained(str(model_dir))
    return load_model(model_dir), tokenizer


def load_model(model_dir: str | Path) -> Any:
    """The sequence classifier of a checkpoint directory, in eval mode on CPU. A checkpoint whose card
    records differential-attention layers (`train.diff_attention`) is rebuilt with them; any other
    loads with `from_pretrained`."""
    from transformers import AutoModelForSequenceClassification

    from edgekd.train.diff_attention import rebuild

    with MODEL_BUILD_LOCK:
        model = rebuild(model_dir) or AutoModelForSequenceClassification.from_pretrained(str(model_dir))
    return model.eval()


def torch_logits(model: Any, tokenizer: Any, texts: list[str], max_length: int, batch_size: int = 32) -> np.ndarray:
    """logits: [len(texts), num_labels] float32, rows in the order of `texts`."""
    import torch

    device = next(model.parameters()).device
    out = []
    with torch.inference_mode():
        for i in range(0, len(texts), batch_size):
            enc = tokenizer(list(texts[i : i + batch_size]), truncation=True, max_length=max_length,
                            padding=True, return_tensors="pt")
            enc = {k: v.to(device) for k, v in enc.items()}
            out.append(model(**enc).logits.float().cpu().numpy())
    if not out:
        return np.zeros((0, model.config.num_labels), dtype=np.float32)
    return np.concatenate(out).astype(np.float32)
