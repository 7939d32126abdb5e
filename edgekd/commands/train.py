"""`edgekd train`: fine-tune a teacher sequence classifier with the Hugging Face Trainer."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from edgekd.commands._common import Stage, add_data_arguments, data_flags, data_spec_from_args, field_default
from edgekd.data import DataSpec
from edgekd.errors import RecipeError
from edgekd.train.common import TrainConfig

HELP = "fine-tune a teacher transformer (HF Trainer; best checkpoint on validation accuracy or macro F1)"


@dataclass
class TrainStage(Stage):
    """Fine-tune `model` on `data` into the teacher checkpoint `out`."""

    VERB: ClassVar[str] = "train"
    data: DataSpec
    out: Path
    model: str = "sentence-transformers/all-MiniLM-L6-v2"
    train: TrainConfig = field(default_factory=TrainConfig)
    diff_attention: str | None = None  # differential-attention layers (see --diff-attention); None = plain

    def command(self) -> list[str]:
        return ["train", *data_flags(self.data), "--model", self.model, "--out", str(self.out),
                *training_flags(self.train),
                *([] if self.diff_attention is None else ["--diff-attention", str(self.diff_attention)])]


def training_flags(config: TrainConfig, max_length: bool = True) -> list[str]:
    """The optimisation flags that give `config` (--epochs and --warmup-ratio when set, --max-length
    unless `max_length` is False, --no-progress when off); the seed is a data flag."""
    return [*([] if config.epochs is None else ["--epochs", str(config.epochs)]),
            "--class-weight", config.class_weight, "--select-metric", config.select_metric,
            "--patience", str(config.patience), "--lr", str(config.lr), "--batch-size", str(config.batch_size),
            *(["--max-length", str(config.max_length)] if max_length else []),
            *([] if config.warmup_ratio is None else ["--warmup-ratio", str(config.warmup_ratio)]),
            *([] if config.embedding_lr is None else ["--embedding-lr", str(config.embedding_lr)]),
            *([] if config.progress else ["--no-progress"])]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Data, model and optimisation flags of `edgekd train`."""
    add_data_arguments(parser)
    model = field_default(TrainStage, "model")
    parser.add_argument("--model", default=model,
                        help=f"base model: hub id, local checkpoint dir or offline package id (default: {model})")
    parser.add_argument("--out", required=True, type=Path, help="output checkpoint directory")
    parser.add_argument("--diff-attention", metavar="VALUE", default=None,
                        help="convert layers to differential attention: a share (0.5), upper:N, lower:N, "
                             "explicit layers (0+2) or all, optionally /norm or /zeros (default: none)")
    add_optimisation_arguments(parser, lr=field_default(TrainConfig, "lr"))


def add_optimisation_arguments(parser: argparse.ArgumentParser, lr: float) -> None:
    """--epochs, --warmup-ratio, --lr, --batch-size, --max-length, --class-weight, --select-metric,
    --patience, --no-progress (shared with `distill`)."""
    from edgekd.train.imbalance import CLASS_WEIGHTS, EPOCHS_CAP, EPOCHS_FLOOR, IMBALANCE_RATIO, MIN_STEPS

    default = TrainConfig()
    group = parser.add_argument_group("optimisation")
    group.add_argument("--epochs", type=float, default=None,
                       help=f"training epochs (default: from the training rows: >= {MIN_STEPS} steps, "
                            f"{EPOCHS_FLOOR}-{EPOCHS_CAP} epochs)")
    group.add_argument("--warmup-ratio", type=float, default=None,
                       help="share of steps spent warming up (default: 0.1 under 10,000 training rows, else 0.06)")
    group.add_argument("--lr", type=float, default=lr, help=f"peak learning rate (default: {lr:g})")
    from edgekd.train.adapt import ADAPTED_EMBEDDING_LR

    group.add_argument("--embedding-lr", type=float, default=None,
                       help="peak learning rate of the word-embedding matrix (default: auto = "
                            f"{ADAPTED_EMBEDDING_LR:g} on a fresh `edgekd adapt-vocab` base, whose rows are FVT "
                            "estimates, else --lr)")
    group.add_argument("--batch-size", type=int, default=default.batch_size,
                       help=f"per-device batch size (default: {default.batch_size})")
    group.add_argument("--max-length", type=int, default=None,
                       help=f"truncate texts to this many tokens (default: {default.max_length}; distill: the teacher's)")
    group.add_argument("--class-weight", choices=CLASS_WEIGHTS, default=default.class_weight,
                       help="weights of the cross-entropy term per class (default: auto = balanced when the "
                            f"largest/smallest class ratio exceeds {IMBALANCE_RATIO:g}, else none)")
    group.add_argument("--select-metric", choices=("auto", "accuracy", "f1_macro"), default=default.select_metric,
                       help="validation metric that keeps the best epoch and stops early (default: auto = "
                            "f1_macro on imbalanced classes, else accuracy)")
    group.add_argument("--patience", type=int, default=default.patience,
                       help=f"stop after N epochs without a better validation score; 0 = never (default: {default.patience})")
    group.add_argument("--no-progress", action="store_true", help="hide progress bars")


def train_config_from_args(args: argparse.Namespace) -> TrainConfig:
    """The `TrainConfig` of the optimisation flags (--max-length unset: TrainConfig's default; distill
    replaces it with the teacher's). Checked by `check_train_config`, which the stage functions call."""
    return TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, warmup_ratio=args.warmup_ratio,
                       max_length=field_default(TrainConfig, "max_length") if args.max_length is None else args.max_length,
                       seed=args.seed, progress=not args.no_progress, class_weight=args.class_weight,
                       select_metric=args.select_metric, patience=args.patience, embedding_lr=args.embedding_lr)


def check_train_config(config: TrainConfig) -> None:
    """RecipeError naming the flag for an optimisation setting out of range, before anything heavy loads."""
    from edgekd.train.imbalance import check_choices

    for flag, value, low in (("--epochs", config.epochs, 0.0), ("--lr", config.lr, 0.0),
                             ("--embedding-lr", config.embedding_lr, 0.0),
                             ("--batch-size", config.batch_size, 0), ("--max-length", config.max_length, 0)):
        if value is not None and value <= low:
            raise RecipeError(f"{flag} must be > {low:g}, got {value}")
    if config.max_length > 8192:
        raise RecipeError(f"--max-length {config.max_length} is beyond any supported encoder; use 512 or less")
    if config.warmup_ratio is not None and not 0.0 <= config.warmup_ratio < 1.0:
        raise RecipeError(f"--warmup-ratio must be in [0, 1), got {config.warmup_ratio}")
    check_choices(config.class_weight, config.select_metric, config.patience)


def run_stage(stage: TrainStage) -> dict[str, Any]:
    """Check the settings, load and report the data, fine-tune, print the test metrics; the metrics
    (empty on the other ranks under torchrun)."""
    from edgekd.console import make_console
    from edgekd.data import load_splits, print_data_report

    check_train_config(stage.train)
    if stage.diff_attention:
        from edgekd.train.diff_attention import parse_diff

        parse_diff(stage.diff_attention)
    splits = load_splits(stage.data)
    print_data_report(splits, make_console(stderr=True))

    from edgekd.metrics import print_decisions, print_metrics, print_warnings
    from edgekd.train.teacher import train_teacher

    metrics = train_teacher(splits, stage.data, stage.model, stage.out, stage.train,
                            diff_attention=stage.diff_attention,
                            warn=lambda line: print_warnings([line], make_console(stderr=True)))
    if metrics:  # empty on the other ranks under torchrun: rank 0 evaluates and reports
        console = make_console()
        print_metrics(metrics, title=f"teacher {stage.out} test", console=console)
        print_decisions(stage.out, console)
        print(f"teacher checkpoint: {stage.out}")
    return metrics


def stage_from_args(args: argparse.Namespace) -> TrainStage:
    """The stage config of the flags."""
    return TrainStage(data_spec_from_args(args), args.out, args.model, train_config_from_args(args),
                      args.diff_attention)


def run(args: argparse.Namespace) -> int:
    run_stage(stage_from_args(args))
    return 0
