"""Continued masked-LM pre-training of an adapted base model on the dataset's own training texts
(`edgekd adapt-vocab --mlm-epochs N`, recipe `teacher.mlm_epochs`).

After a vocabulary swap, FVT gives each new token the mean of the base embeddings of its old pieces: for a
script the base model never learned (Arabic in an English MiniLM) those pieces are single characters, so
the new embeddings start out nearly indistinguishable and the encoder has never read the language. A few
epochs of masked-LM training on the unlabelled training texts (15% of tokens masked, BERT's 80/10/10
rule, `DataCollatorForLanguageModeling`) teach the embeddings and layers the language before the
labelled fine-tune sees it (as in de Vries & Nissim 2021 and WECHSEL, Minixhofer et al. 2022, where
embedding re-learning after a swap is what recovers the model). Only the training split is read (never
validation or test texts), so nothing of the evaluation leaks in.

The masked-LM head is new (its decoder tied to the word embeddings, as BERT's); it is dropped afterwards:
the encoder's trained weights are copied into the base model (pooler included, which masked-LM does not
train) and saved in place of the untrained ones, so `edgekd train --model DIR` loads it as before."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.errors import ModelError

MASK_PROBABILITY = 0.15
HELD_OUT_TEXTS = 256  # validation texts the held-out masked-LM loss and accuracy are measured on


@dataclass(frozen=True)
class MlmConfig:
    """Settings of the continued pre-training (epochs 0: none); its seed is the data's (`--seed`)."""

    epochs: float = 0.0
    lr: float = 1e-4
    max_length: int = 128
    batch_size: int = 32


def _dataset(tokenizer: Any, texts: list[str], max_length: int) -> list[dict[str, Any]]:
    enc = tokenizer(list(texts), truncation=True, max_length=max_length, return_special_tokens_mask=True)
    keys = [k for k in ("input_ids", "token_type_ids", "attention_mask", "special_tokens_mask") if k in enc]
    return [{k: enc[k][i] for k in keys} for i in range(len(texts))]


def held_out_scores(model: Any, tokenizer: Any, texts: list[str], max_length: int, seed: int,
                    batch_size: int = 32) -> dict[str, float]:
    """Masked-LM loss and top-1 accuracy over the masked tokens of `texts`, with the same masks for every
    call with this seed (so a before/after pair compares the same positions)."""
    import torch
    from transformers import DataCollatorForLanguageModeling

    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=MASK_PROBABILITY, return_tensors="pt")
    rows = _dataset(tokenizer, texts, max_length)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)  # the collator masks with torch's global generator; restored below
    try:
        batches = [collator(rows[i:i + batch_size]) for i in range(0, len(rows), batch_size)]
    finally:
        torch.random.set_rng_state(state)
    total, correct, count = 0.0, 0, 0
    was_training = model.training
    model.eval()
    with torch.no_grad():
        for b in batches:
            labels = b.pop("labels")
            logits = model(**b).logits
            masked = labels != -100
            n = int(masked.sum())
            if n == 0:
                continue
            loss = torch.nn.functional.cross_entropy(logits[masked], labels[masked], reduction="sum")
            total += float(loss)
            correct += int((logits[masked].argmax(-1) == labels[masked]).sum())
            count += n
    model.train(was_training)
    return {"loss": round(total / max(count, 1), 4), "accuracy": round(correct / max(count, 1), 4),
            "masked_tokens": count}


def continue_pretraining(base: Path, train_texts: list[str], held_out: list[str], config: MlmConfig, seed: int,
                         log: Callable[[str], None] = print) -> dict[str, Any]:
    """Masked-LM training of the model in `base` (a directory it rewrites in place: the caller stages it)
    on `train_texts`; returns the card record: settings, steps, per-epoch training loss, held-out masked-LM
    loss and masked-token accuracy before and after (before: the FVT model with the new, untrained head),
    wall time."""
    from transformers import (
        AutoModel,
        AutoModelForMaskedLM,
        AutoTokenizer,
        DataCollatorForLanguageModeling,
        TrainingArguments,
    )

    from edgekd.train.adapt import swapped_embedding_lr
    from edgekd.train.common import cpu_only, set_seed
    from edgekd.train.teacher import EmbeddingRateTrainer

    if config.epochs <= 0:
        raise ModelError(f"--mlm-epochs must be above 0, got {config.epochs:g} (leave it out for none)")
    if not train_texts:
        raise ModelError("masked-LM pre-training needs training texts; the training split is empty")
    started = time.perf_counter()
    set_seed(seed)
    tokenizer = AutoTokenizer.from_pretrained(str(base))
    mlm = AutoModelForMaskedLM.from_pretrained(str(base))
    held = list(held_out[:HELD_OUT_TEXTS]) or list(train_texts[:HELD_OUT_TEXTS])
    before = held_out_scores(mlm, tokenizer, held, config.max_length, seed)
    scratch = base / ".mlm-checkpoints"
    args = TrainingArguments(
        output_dir=str(scratch), use_cpu=cpu_only(), num_train_epochs=config.epochs, learning_rate=config.lr,
        per_device_train_batch_size=config.batch_size, warmup_ratio=0.06, weight_decay=0.01,
        save_strategy="no", eval_strategy="no", logging_strategy="epoch", seed=seed,
        data_seed=seed, report_to="none", push_to_hub=False, disable_tqdm=True,
        dataloader_num_workers=0, remove_unused_columns=False)
    collator = DataCollatorForLanguageModeling(tokenizer, mlm_probability=MASK_PROBABILITY)
    # Masked LM always starts from a fresh swap: the FVT rows (and the decoder tied to them) get the rate the
    # fine-tune would give them, not the body's.
    embedding_lr = swapped_embedding_lr(config.lr)
    log(f"masked-LM pre-training on {len(train_texts):,} training texts, {config.epochs:g} epochs "
        f"(max_length {config.max_length}, lr {config.lr:g}, word embeddings {embedding_lr:g})")
    trainer = EmbeddingRateTrainer(model=mlm, args=args, train_dataset=_dataset(tokenizer, train_texts, config.max_length),
                                   data_collator=collator, embedding_lr=embedding_lr)
    trainer.train()
    after = held_out_scores(mlm, tokenizer, held, config.max_length, seed)
    if not np.isfinite(after["loss"]):
        raise ModelError("masked-LM pre-training diverged (held-out loss not finite); lower --mlm-lr")
    losses = [round(float(h["loss"]), 4) for h in trainer.state.log_history if "loss" in h]

    encoder = AutoModel.from_pretrained(str(base))
    result = encoder.load_state_dict(getattr(mlm, mlm.base_model_prefix).state_dict(), strict=False)
    untrained = [k for k in result.missing_keys if not k.startswith("pooler.")]
    if untrained or result.unexpected_keys:
        raise ModelError(f"the masked-LM encoder does not match the base model ({(untrained + result.unexpected_keys)[:3]}"
                         "); use a BERT-family base model")
    encoder.save_pretrained(str(base))
    shutil.rmtree(scratch, ignore_errors=True)
    log(f"masked-LM held-out loss {before['loss']:.3f} -> {after['loss']:.3f}, "
        f"masked-token accuracy {before['accuracy']:.3f} -> {after['accuracy']:.3f}")
    return {"objective": f"masked LM, {MASK_PROBABILITY:.0%} of tokens (BERT 80/10/10), training split only",
            "epochs": config.epochs, "lr": config.lr, "embedding_lr": embedding_lr, "max_length": config.max_length,
            "batch_size": config.batch_size, "seed": seed, "texts": len(train_texts),
            "steps": int(trainer.state.global_step), "train_loss_per_epoch": losses,
            "held_out": {"texts": len(held), "before": before, "after": after},
            "seconds": round(time.perf_counter() - started, 1)}
