"""Shared Trainer pieces for teacher fine-tuning and distillation: a plain torch text dataset,
a dynamic-padding collator that carries extra per-example tensors (teacher logits), seeds, the
device description, the `TrainingArguments` builder and the files every checkpoint gets.

No `datasets` library in the training path: a plain `torch.utils.data.Dataset` keeps the code
portable to any box with torch + transformers.
"""

from __future__ import annotations

import json
import platform
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from edgekd.train.imbalance import PATIENCE

CHECKPOINTS_SUBDIR = "checkpoints"  # intermediate Trainer checkpoints; removed at the end


@dataclass
class TrainConfig:
    """Optimisation settings shared by `train` and `distill`. `None` / `"auto"` are decided from the
    training data (`train.imbalance.plan_training`) and recorded in the model card."""

    epochs: float | None = None  # None: from the number of training rows (imbalance.schedule)
    lr: float = 5e-5
    batch_size: int = 32
    max_length: int = 128
    seed: int = 42
    warmup_ratio: float | None = None  # None: from the number of training rows
    weight_decay: float = 0.01
    progress: bool = True
    class_weight: str = "auto"  # auto | none | balanced | sqrt: weights of the cross-entropy term
    select_metric: str = "auto"  # auto | accuracy | f1_macro: picks the best validation checkpoint
    patience: int = PATIENCE  # evaluations without improvement before stopping early; 0 = never
    # peak learning rate of the word-embedding matrix; None: auto (`embedding_lr_for`: a higher one for the
    # FVT rows of a fresh `adapt-vocab` base, else `lr`)
    embedding_lr: float | None = None

    def resolved(self, train_labels: np.ndarray, labels: list[str]) -> tuple[TrainConfig, Any]:
        """(this config with every auto setting decided from the training labels, the TrainingPlan)."""
        import dataclasses

        from edgekd.train.imbalance import plan_training

        plan = plan_training(train_labels, labels, self.batch_size, self.class_weight, self.select_metric,
                             self.epochs, self.warmup_ratio, self.patience)
        return dataclasses.replace(self, epochs=plan.epochs, warmup_ratio=plan.warmup_ratio,
                                   class_weight=plan.class_weight, select_metric=plan.select_metric), plan



@dataclass
class DistillConfig:
    """Loss and optimisation settings of one distillation run (defaults work on AG News). Here, not in
    `train.distill` (which imports torch), so the recipe and `edgekd run --dry-run` read its defaults."""

    train: TrainConfig = field(default_factory=lambda: TrainConfig(lr=1e-4))
    temperature: float = 2.0
    alpha: float = 0.5
    hidden_weight: float = 0.0
    attention_weight: float = 0.0
    use_teacher: bool = True  # False: plain fine-tuning of the same student init (no soft targets)


def text_dataset(tokenizer: Any, texts: list[str], labels: np.ndarray, max_length: int,
                 teacher_logits: np.ndarray | None = None) -> Any:
    """A torch `Dataset` of tokenized examples (truncated to `max_length`, not padded), with
    `labels` and, when given, the row of `teacher_logits` ([n, num_labels]) for each example."""
    import torch

    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    keys = [k for k in enc.keys() if k in tokenizer.model_input_names]

    class _TextDataset(torch.utils.data.Dataset):
        def __len__(self) -> int:
            return len(texts)

        def __getitem__(self, i: int) -> dict[str, Any]:
            item = {k: enc[k][i] for k in keys}
            item["labels"] = int(labels[i])
            if teacher_logits is not None:
                item["teacher_logits"] = np.asarray(teacher_logits[i], dtype=np.float32)
            return item

    return _TextDataset()


class PaddingCollator:
    """`DataCollatorWithPadding` (pad each batch to its own longest sequence) that also stacks
    `teacher_logits` rows into a float tensor [batch, num_labels]."""

    def __init__(self, tokenizer: Any) -> None:
        from transformers import DataCollatorWithPadding

        self._pad = DataCollatorWithPadding(tokenizer)

    def __call__(self, features: list[dict[str, Any]]) -> dict[str, Any]:
        import torch

        soft = [f.pop("teacher_logits") for f in features if "teacher_logits" in f]
        batch = self._pad(features)
        if soft:
            batch["teacher_logits"] = torch.from_numpy(np.stack(soft))
        return batch


def set_seed(seed: int) -> None:
    """Seed Python, NumPy and torch (all devices) for a reproducible run."""
    from transformers import set_seed as hf_set_seed

    hf_set_seed(seed)


def cpu_only() -> bool:
    """True when neither CUDA nor MPS is there. The Trainer must then be told (`use_cpu`), or a
    `torchrun` launch on CPUs runs N independent copies instead of one gloo data-parallel job
    (accelerate only picks MULTI_CPU when asked for the CPU)."""
    import torch

    mps = getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available()
    return not torch.cuda.is_available() and not mps


def device_description() -> str:
    """The device the Trainer will pick (cuda / mps / cpu), in words."""
    import torch

    if torch.cuda.is_available():
        return f"cuda:{torch.cuda.get_device_name(0)} x{torch.cuda.device_count()}"
    if getattr(torch.backends, "mps", None) is not None and torch.backends.mps.is_available():
        return "mps"
    return f"cpu:{platform.processor() or platform.machine()} ({torch.get_num_threads()} threads)"


def training_arguments(out: Path, config: TrainConfig) -> Any:
    """`TrainingArguments`: evaluate and save each epoch into `out/checkpoints`, keep the best on
    validation `config.select_metric` (a resolved config: see `TrainConfig.resolved`), fixed seed,
    bf16/fp16 on CUDA when supported, no hub, no report_to."""
    import torch
    from transformers import TrainingArguments

    cuda = torch.cuda.is_available()
    bf16 = cuda and torch.cuda.is_bf16_supported()
    return TrainingArguments(
        output_dir=str(out / CHECKPOINTS_SUBDIR),
        use_cpu=cpu_only(),
        num_train_epochs=config.epochs,
        learning_rate=config.lr,
        per_device_train_batch_size=config.batch_size,
        per_device_eval_batch_size=max(config.batch_size, 64),
        warmup_ratio=config.warmup_ratio,
        weight_decay=config.weight_decay,
        eval_strategy="epoch",
        save_strategy="epoch",
        save_total_limit=2,
        load_best_model_at_end=True,
        metric_for_best_model=config.select_metric,
        greater_is_better=True,
        logging_strategy="epoch",
        seed=config.seed,
        data_seed=config.seed,
        bf16=bf16,
        fp16=cuda and not bf16,
        report_to="none",
        push_to_hub=False,
        disable_tqdm=not config.progress,
        label_names=["labels"],
        # The Trainer otherwise wraps the collator to drop every feature key that is not a forward()
        # argument, which silently removes `teacher_logits` and turns distillation into plain CE.
        remove_unused_columns=False,
        save_safetensors=True,
        dataloader_num_workers=0,
        dataloader_pin_memory=cuda,
    )


def selection_metrics(eval_pred: Any) -> dict[str, float]:
    """`compute_metrics` for the Trainer: validation accuracy and macro F1 from (logits, labels), the
    metrics a checkpoint can be selected on (`--select-metric`)."""
    from edgekd.verify.parity import accuracy, f1_scores

    logits, labels = eval_pred
    if isinstance(logits, tuple):
        logits = logits[0]
    logits = np.asarray(logits)
    return {"accuracy": accuracy(logits, labels),
            "f1_macro": f1_scores(labels, logits.argmax(axis=-1), logits.shape[-1])["f1_macro"]}


def cross_entropy(logits: Any, labels: Any, class_weights: Any = None) -> Any:
    """Cross-entropy of logits [batch, num_labels] against label ids [batch], at least float32.
    With `class_weights` [num_labels] it is PyTorch's weighted mean: sum_i w[y_i] * ce_i / sum_i w[y_i]."""
    import torch
    import torch.nn.functional as F

    logits = logits.to(torch.promote_types(logits.dtype, torch.float32))
    weight = None if class_weights is None else class_weights.to(device=logits.device, dtype=logits.dtype)
    return F.cross_entropy(logits, labels, weight=weight)


def early_stopping(config: TrainConfig) -> list[Any]:
    """Trainer callbacks: stop after `config.patience` evaluations without a better selection metric."""
    if config.patience <= 0:
        return []
    from transformers import EarlyStoppingCallback

    return [EarlyStoppingCallback(early_stopping_patience=config.patience)]


def label_maps(labels: list[str]) -> dict[str, Any]:
    """`id2label` / `label2id` keyword arguments for a sequence-classification config."""
    return {"num_labels": len(labels), "id2label": dict(enumerate(labels)),
            "label2id": {name: i for i, name in enumerate(labels)}}


def save_final(trainer: Any, tokenizer: Any, out: Path) -> None:
    """Save the (best) model + tokenizer as a plain HF checkpoint in `out` and remove the
    intermediate Trainer checkpoints."""
    trainer.save_model(str(out))  # rank 0 only under torchrun (the Trainer checks)
    if not trainer.is_world_process_zero():
        return
    tokenizer.save_pretrained(str(out))
    for name in ("training_args.bin",):  # a pickle the Trainer writes: nothing pickled stays
        (out / name).unlink(missing_ok=True)
    shutil.rmtree(out / CHECKPOINTS_SUBDIR, ignore_errors=True)


def write_json(path: Path, payload: dict[str, Any]) -> None:
    """Write `payload` as indented JSON (NumPy scalars converted)."""
    path.write_text(json.dumps(payload, indent=2, default=_to_builtin) + "\n")


def _to_builtin(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, Path):
        return str(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def evaluate_checkpoint(model: Any, tokenizer: Any, texts: list[str], y_true: np.ndarray,
                        labels: list[str], max_length: int) -> tuple[dict[str, Any], np.ndarray]:
    """(metrics dict as metrics.evaluate_logits returns, logits [n, num_labels]) of `model` on
    `texts`, via the one PyTorch reference inference `train.infer.torch_logits`."""
    from edgekd.metrics import evaluate_logits
    from edgekd.train.infer import torch_logits

    model.eval()
    logits = torch_logits(model, tokenizer, texts, max_length, batch_size=64)
    return evaluate_logits(logits, y_true, labels), logits


def count_parameters(model: Any) -> int:
    """Number of parameters of a torch module."""
    return int(sum(p.numel() for p in model.parameters()))
