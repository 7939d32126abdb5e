"""The word-embedding learning rate after a vocabulary swap (issue 16; `edgekd.train.adapt.ADAPTED_EMBEDDING_LR`).

A fresh `edgekd adapt-vocab` base has FVT rows: for Arabic under MiniLM's English vocabulary each new word
starts as the mean of its letters' rows. This sweep fine-tunes such a base on the arabic_news_ant slice the
other Arabic parts use (a stratified 2,400-row training sample, validation carved from it, 8,000-token
vocabulary from `edgekd adapt-vocab --max-train-samples 2400`) with the body at 1e-4 and the word-embedding
matrix at each rate given, and reports test accuracy and macro F1 after each epoch.

To keep each arm cheap it trains the base directly as a 3-layer classifier (layers 0, 2, 5 kept, a plain
AdamW loop: linear warm-up over 6% of the steps then linear decay, batch 32, max_length 128, 3 epochs, seed
42, one torch thread) and scores the first 1,500 test articles; the absolute numbers are therefore not the
teacher's or the distilled student's, only the comparison between rates is. The base's own English vocabulary
at a high rate is one more arm (`english`): its rows are single letters shared by every word, so a high rate
should not help there, which is why the `auto` rule applies only to adapted bases.

    python -m benchmarks.embedding_lr BASE_DIR|english RATE [RATE ...]

prints one JSON line per epoch and arm (run two arms side by side on 2 cores: ~8 min each).
"""

from __future__ import annotations

import json
import math
import sys
import time
from typing import Any

import numpy as np

from benchmarks.steps import BASE, DATA

TRAIN_ROWS, TEST_ROWS, MAX_LENGTH, EPOCHS, LAYERS, BODY_LR, BATCH = 2400, 1500, 128, 3, 3, 1e-4, 32


def sweep_arm(base: str, embedding_lr: float, seed: int = 42) -> list[dict[str, Any]]:
    """Test accuracy and macro F1 after each epoch for one embedding rate (the module docstring's setup)."""
    import torch
    from sklearn.metrics import f1_score
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgekd.data import DataSpec, load_splits
    from edgekd.models import resolve_model

    torch.set_num_threads(1)  # an entry point: two arms share the 2 cores
    torch.manual_seed(seed)
    splits = load_splits(DataSpec(str(DATA / "arabic_news_ant"), text_columns=["title", "text"],
                                  max_train_samples=TRAIN_ROWS, seed=seed))
    path = str(resolve_model(BASE if base == "english" else base))
    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForSequenceClassification.from_pretrained(path, num_labels=len(splits.labels))
    depth = model.config.num_hidden_layers
    keep = [round(i * (depth - 1) / (LAYERS - 1)) for i in range(LAYERS)]
    model.bert.encoder.layer = torch.nn.ModuleList([model.bert.encoder.layer[i] for i in keep])
    model.config.num_hidden_layers = LAYERS
    rows = model.bert.embeddings.word_embeddings.weight
    optimizer = torch.optim.AdamW([
        {"params": [p for p in model.parameters() if p is not rows], "lr": BODY_LR, "weight_decay": 0.01},
        {"params": [rows], "lr": embedding_lr, "weight_decay": 0.0}])
    encoded = tokenizer(splits.train.texts, truncation=True, max_length=MAX_LENGTH)
    labels = torch.tensor(splits.train.labels)
    n = len(labels)
    total = EPOCHS * math.ceil(n / BATCH)
    warm = int(0.06 * total)
    schedule = torch.optim.lr_scheduler.LambdaLR(
        optimizer, lambda s: min((s + 1) / max(warm, 1), max(0.0, (total - s) / (total - warm))))
    texts, truth = splits.test.texts[:TEST_ROWS], splits.test.labels[:TEST_ROWS]
    order = torch.Generator().manual_seed(seed)
    out, start = [], time.perf_counter()
    for epoch in range(EPOCHS):
        model.train()
        perm = torch.randperm(n, generator=order).tolist()
        for i in range(0, n, BATCH):
            idx = perm[i:i + BATCH]
            batch = tokenizer.pad({k: [encoded[k][j] for j in idx] for k in ("input_ids", "attention_mask")},
                                  return_tensors="pt")
            loss = torch.nn.functional.cross_entropy(model(**batch).logits, labels[idx])
            loss.backward()
            optimizer.step()
            schedule.step()
            optimizer.zero_grad()
        model.eval()
        with torch.no_grad():
            predicted = np.concatenate([model(**tokenizer(texts[i:i + 64], truncation=True, max_length=MAX_LENGTH,
                                                          padding=True, return_tensors="pt")).logits.argmax(-1).numpy()
                                        for i in range(0, len(texts), 64)])
        out.append({"vocab": "english" if base == "english" else "adapted", "embedding_lr": embedding_lr,
                    "epoch": epoch + 1, "accuracy": round(float((predicted == truth).mean()), 4),
                    "f1_macro": round(float(f1_score(truth, predicted, average="macro")), 4),
                    "seconds": round(time.perf_counter() - start)})
        print(json.dumps(out[-1]), flush=True)
    return out


def markdown() -> list[str]:
    """The sweep's table for the adapt section of RESULTS.md, from every results/embedding-lr-*.json."""
    from benchmarks.__main__ import RESULTS

    lines = []
    for path in sorted(RESULTS.glob("embedding-lr-*.json")):
        result = json.loads(path.read_text(encoding="utf-8"))
        lines += ["", f"### The word-embedding learning rate after the swap (`{result['device']['device_id']}`)", "",
                  "Why `--embedding-lr` is auto 3e-3 on an adapted base (`edgekd.train.adapt.ADAPTED_EMBEDDING_LR`): "
                  "the base from `edgekd adapt-vocab` on a stratified 2,400-row sample, trained directly as a 3-layer "
                  "classifier (layers 0, 2, 5; body at 1e-4, AdamW, batch 32, max_length 128, seed 42) with the "
                  "word-embedding matrix at each rate; first 1,500 test articles (`benchmarks/embedding_lr.py` has "
                  "the whole setup). Only the comparison between rates counts, not the level.", "",
                  "| vocabulary | embedding lr | epoch 1 acc / F1m | epoch 2 | epoch 3 |", "|---|---|---|---|---|"]
        arms: dict[tuple[str, float], dict[int, dict[str, Any]]] = {}
        for r in result["rows"]:
            arms.setdefault((r["vocab"], r["embedding_lr"]), {})[r["epoch"]] = r
        for (vocab, rate), by_epoch in sorted(arms.items()):
            cells = [f"{by_epoch[e]['accuracy']:.4f} / {by_epoch[e]['f1_macro']:.4f}" if e in by_epoch else "stopped"
                     for e in range(1, EPOCHS + 1)]
            lines.append(f"| {vocab} | {rate:g}{' (= body)' if rate == BODY_LR else ''} | {' | '.join(cells)} |")
        lines += ["", *(f"- {n}" for n in result.get("notes", [])), "", "```", *result["commands"], "```"]
    return lines


if __name__ == "__main__":
    if len(sys.argv) < 3:
        raise SystemExit(__doc__.split("\n\n")[-2].strip())
    for rate in sys.argv[2:]:
        sweep_arm(sys.argv[1], float(rate))
