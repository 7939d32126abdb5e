"""Teacher fine-tuning: a Hugging Face sequence classifier trained with the `Trainer` (dynamic
padding, class-weighted cross-entropy, evaluation each epoch, best checkpoint and early stopping on
the validation selection metric, fixed seeds, device auto; `auto` settings from `train.imbalance`).

Because it is the stock `Trainer`, `torchrun` / `accelerate launch` run it on several GPUs or
machines unchanged. The output directory is a plain HF checkpoint plus its card
(`edgekd.checkpoint.write_card`), `metrics.json` (test split) and PNG plots.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.checkpoint import write_card
from edgekd.errors import ModelError
from edgekd.train.adapt import inherit as inherit_adaptation
from edgekd.train.common import (
    PaddingCollator,
    TrainConfig,
    cross_entropy,
    device_description,
    early_stopping,
    evaluate_checkpoint,
    label_maps,
    save_final,
    selection_metrics,
    set_seed,
    text_dataset,
    training_arguments,
)
from edgekd.train.imbalance import best_epoch, validation_history

if TYPE_CHECKING:
    from edgekd.data import DataSpec, Splits


try:  # torch is the train extra; this module is only imported where it is installed
    from transformers import Trainer as _Trainer
except ImportError:  # pragma: no cover - exercised only without the train extra
    _Trainer = object


class EmbeddingRateTrainer(_Trainer):
    """`Trainer` whose word-embedding matrix may train at a rate of its own (`embedding_lr`; see
    `train.adapt.embedding_lr_for`). A decoder tied to that matrix (masked LM) is the same parameter."""

    def __init__(self, *args: Any, embedding_lr: float | None = None, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.embedding_lr = embedding_lr  # None or the body's rate: one rate for every parameter

    def create_optimizer(self) -> Any:
        """The Trainer's optimizer, with the word-embedding matrix moved to a group of its own at
        `embedding_lr` (no weight decay) when that differs from the body's rate. The scheduler, built after
        this, warms up and decays each group from its own peak."""
        optimizer = super().create_optimizer()
        if self.embedding_lr is None or self.embedding_lr == self.args.learning_rate:
            return optimizer
        weight = self.model.get_input_embeddings().weight
        for group in optimizer.param_groups:
            group["params"] = [p for p in group["params"] if p is not weight]
        optimizer.add_param_group({"params": [weight], "lr": self.embedding_lr, "weight_decay": 0.0})
        return optimizer


class ClassWeightedTrainer(EmbeddingRateTrainer):
    """`Trainer` whose loss is the (optionally class-weighted) cross-entropy of the logits."""

    def __init__(self, *args: Any, class_weights: Any = None, **kwargs: Any) -> None:
        import torch

        super().__init__(*args, **kwargs)
        # [num_labels] float32, or None (plain cross-entropy)
        self.class_weights = None if class_weights is None else torch.tensor(class_weights, dtype=torch.float32)
        self.model_accepts_loss_kwargs = False

    def compute_loss(self, model: Any, inputs: dict[str, Any], return_outputs: bool = False,
                     num_items_in_batch: Any = None) -> Any:
        inputs = dict(inputs)
        labels = inputs.pop("labels")
        outputs = model(**inputs)
        loss = cross_entropy(outputs.logits, labels, self.class_weights)
        return (loss, outputs) if return_outputs else loss


def load_base_model(model_ref: str, labels: list[str]) -> tuple[Any, Any, str]:
    """(model with a fresh `len(labels)`-way head, tokenizer, resolved path) of a model reference
    (hub id, local directory or packaged offline model)."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    from edgekd.models import resolve_model

    path = str(resolve_model(model_ref))
    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(
            path, ignore_mismatched_sizes=True, **label_maps(labels))
    except (OSError, ValueError, KeyError) as exc:
        raise ModelError(f"cannot load '{model_ref}' ({path}) as a sequence classifier: "
                         f"{str(exc).splitlines()[0]}; pass a BERT-family checkpoint directory or hub id") from exc
    return model, tokenizer, path


def train_teacher(splits: Splits, data_spec: DataSpec | None, model_ref: str, out: Path,
                  config: TrainConfig | None = None, diff_attention: str | None = None,
                  warn: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Fine-tune `model_ref` on `splits` (a `data.Splits`) and write the teacher checkpoint to `out`;
    `diff_attention` (a `train.diff_attention` VALUE) converts those layers first. How the model's
    vocabulary reads the training texts is measured first (`vocab_fit`), recorded in the card and, when
    it does not fit them, given to `warn` before training starts.

    Returns the test-split metrics (also written to `out/metrics.json`).
    """
    config, plan = (config or TrainConfig()).resolved(splits.train.labels, list(splits.labels))
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    set_seed(config.seed)
    from edgekd.train import diff_attention as diff

    model, tokenizer, path = load_base_model(model_ref, splits.labels)
    from edgekd.train.vocab_fit import fit_warning, vocabulary_fit

    fit = vocabulary_fit(tokenizer, splits.train.texts, config.max_length)
    fit["warning"] = fit_warning(fit)
    if fit["warning"] and warn is not None:
        warn(fit["warning"])
    model = diff.prepare(model, diff_attention)
    from edgekd.train.adapt import embedding_lr_for

    embedding_lr, why = embedding_lr_for(config.lr, config.embedding_lr, path)
    config = dataclasses.replace(config, embedding_lr=embedding_lr)
    trainer = build_trainer(model, tokenizer, splits, out, config, class_weights=plan.weights)
    diff.attach_ramp(trainer)
    start = time.perf_counter()
    trainer.train()
    wall = time.perf_counter() - start
    save_final(trainer, tokenizer, out)
    best = trainer.state.best_metric
    selected = best_epoch(trainer.state.log_history, config.select_metric)
    if not trainer.is_world_process_zero():  # under torchrun only rank 0 evaluates and writes
        return {}
    metrics, _ = finish_checkpoint(trainer.model, tokenizer, splits, out, config.max_length)
    write_card(out, {
        "role": "teacher",
        "max_length": config.max_length,
        "labels": list(splits.labels),
        "data": _spec_dict(data_spec),
        "dataset_fingerprint": splits.fingerprint,
        "base_model": model_ref,
        "base_model_path": path,
        "training": dataclasses.asdict(config),
        "train_samples": len(splits.train.texts),
        "vocabulary_fit": fit,
        "decisions": decisions(plan, embedding_lr, why),
        "select_metric": config.select_metric,
        "best_validation": selected,
        "validation_history": validation_history(trainer.state.log_history),
        "best_validation_accuracy": (selected or {}).get("validation", {}).get("accuracy", best),
        "epochs_run": trainer.state.epoch,
        "test_accuracy": metrics["accuracy"],
        "test_f1_macro": metrics["f1_macro"],
        "wall_time_s": round(wall, 2),
        "device": device_description(),
        "versions": library_versions(),
    })
    diff.record(out, trainer.model, diff_attention)
    inherit_adaptation(out, Path(path))  # a base model from `edgekd adapt-vocab`: its record follows
    return metrics


def decisions(plan: Any, embedding_lr: float, why: str) -> dict[str, Any]:
    """The card's `decisions`: the training plan's record plus the word embeddings' rate and its reason."""
    record = plan.record()
    return {**record, "embedding_lr": embedding_lr, "reasons": {**record["reasons"], "embedding_lr": why}}


def build_trainer(model: Any, tokenizer: Any, splits: Splits, out: Path, config: TrainConfig,
                  trainer_cls: Any = None, **extra: Any) -> Any:
    """A `ClassWeightedTrainer` (or `trainer_cls`, a subclass) over the train / validation splits with
    dynamic padding, selecting and stopping early on `config.select_metric` (`auto` settings left in
    `config` are decided here from the training labels, as `TrainConfig.resolved` does).

    `extra` may hold `train_logits` / `validation_logits` (teacher soft targets), `class_weights`
    ([num_labels] or None) and keyword arguments for `trainer_cls`.
    """
    if config.epochs is None or config.warmup_ratio is None or "auto" in (config.class_weight, config.select_metric):
        config, plan = config.resolved(splits.train.labels, list(splits.labels))
        extra.setdefault("class_weights", plan.weights)
    train_logits = extra.pop("train_logits", None)
    validation_logits = extra.pop("validation_logits", None)
    train = text_dataset(tokenizer, splits.train.texts, splits.train.labels, config.max_length, train_logits)
    validation = text_dataset(tokenizer, splits.validation.texts, splits.validation.labels,
                              config.max_length, validation_logits)
    extra.setdefault("embedding_lr", config.embedding_lr)
    return (trainer_cls or ClassWeightedTrainer)(
        model=model, args=training_arguments(out, config), train_dataset=train, eval_dataset=validation,
        data_collator=PaddingCollator(tokenizer), processing_class=tokenizer,
        compute_metrics=selection_metrics, callbacks=early_stopping(config), **extra,
    )


def finish_checkpoint(model: Any, tokenizer: Any, splits: Splits, out: Path,
                      max_length: int) -> tuple[dict[str, Any], Any]:
    """Evaluate `model` on the test split; write `metrics.json`, the confusion matrix and class
    distribution PNGs into `out`. Returns (metrics, test logits [n_test, num_labels])."""
    from edgekd.metrics import split_counts, write_metrics

    metrics, logits = evaluate_checkpoint(model, tokenizer, splits.test.texts, splits.test.labels,
                                          list(splits.labels), max_length)
    write_metrics(metrics, out, class_counts=split_counts(splits.report), title=out.name)
    return metrics, logits


def library_versions() -> dict[str, str]:
    """Versions of the libraries that shaped the checkpoint."""
    import torch
    import transformers

    import edgekd

    return {"edgekd": getattr(edgekd, "__version__", "unknown"), "torch": torch.__version__,
            "transformers": transformers.__version__}


def _spec_dict(spec: Any) -> Any:
    return spec.to_dict() if hasattr(spec, "to_dict") else spec
