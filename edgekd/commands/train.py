"""`edgekd train`: fine-tune a teacher sequence classifier with the Hugging Face Trainer."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from edgekd.commands._common import add_data_arguments, data_spec_from_args
from edgekd.errors import RecipeError

if TYPE_CHECKING:
    from edgekd.train.common import TrainConfig

HELP = "fine-tune a teacher transformer (HF Trainer; best checkpoint on validation accuracy or macro F1)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Data, model and optimisation flags of `edgekd train`."""
    add_data_arguments(parser)
    parser.add_argument("--model", default="sentence-transformers/all-MiniLM-L6-v2",
                        help="base model: hub id, local checkpoint dir or offline package id "
                             "(default: sentence-transformers/all-MiniLM-L6-v2)")
    parser.add_argument("--out", required=True, type=Path, help="output checkpoint directory")
    parser.add_argument("--diff-attention", metavar="VALUE", default=None,
                        help="convert layers to differential attention: a share (0.5), upper:N, lower:N, "
                             "explicit layers (0+2) or all, optionally /norm or /zeros (default: none)")
    add_optimisation_arguments(parser, lr=5e-5)


def add_optimisation_arguments(parser: argparse.ArgumentParser, lr: float) -> None:
    """--epochs, --warmup-ratio, --lr, --batch-size, --max-length, --class-weight, --select-metric,
    --patience, --no-progress (shared with `distill`)."""
    from edgekd.train.imbalance import (
        CLASS_WEIGHTS,
        EPOCHS_CAP,
        EPOCHS_FLOOR,
        IMBALANCE_RATIO,
        MIN_STEPS,
        PATIENCE,
    )

    group = parser.add_argument_group("optimisation")
    group.add_argument("--epochs", type=float, default=None,
                       help=f"training epochs (default: from the training rows: >= {MIN_STEPS} steps, "
                            f"{EPOCHS_FLOOR}-{EPOCHS_CAP} epochs)")
    group.add_argument("--warmup-ratio", type=float, default=None,
                       help="share of steps spent warming up (default: 0.1 under 10,000 training rows, else 0.06)")
    group.add_argument("--lr", type=float, default=lr, help=f"peak learning rate (default: {lr:g})")
    group.add_argument("--batch-size", type=int, default=32, help="per-device batch size (default: 32)")
    group.add_argument("--max-length", type=int, default=None,
                       help="truncate texts to this many tokens (default: 128; distill: the teacher's)")
    group.add_argument("--class-weight", choices=CLASS_WEIGHTS, default="auto",
                       help="weights of the cross-entropy term per class (default: auto = balanced when the "
                            f"largest/smallest class ratio exceeds {IMBALANCE_RATIO:g}, else none)")
    group.add_argument("--select-metric", choices=("auto", "accuracy", "f1_macro"), default="auto",
                       help="validation metric that keeps the best epoch and stops early (default: auto = "
                            "f1_macro on imbalanced classes, else accuracy)")
    group.add_argument("--patience", type=int, default=PATIENCE,
                       help=f"stop after N epochs without a better validation score; 0 = never (default: {PATIENCE})")
    group.add_argument("--no-progress", action="store_true", help="hide progress bars")


def train_config_from_args(args: argparse.Namespace, max_length: int = 128) -> TrainConfig:
    """The `TrainConfig` of the optimisation flags, checked before anything heavy loads."""
    from edgekd.train.common import TrainConfig
    from edgekd.train.imbalance import check_choices

    for flag, value, low in (("--epochs", args.epochs, 0.0), ("--lr", args.lr, 0.0),
                             ("--batch-size", args.batch_size, 0), ("--max-length", args.max_length, 0)):
        if value is not None and value <= low:
            raise RecipeError(f"{flag} must be > {low:g}, got {value}")
    if args.max_length is not None and args.max_length > 8192:
        raise RecipeError(f"--max-length {args.max_length} is beyond any supported encoder; use 512 or less")
    if args.warmup_ratio is not None and not 0.0 <= args.warmup_ratio < 1.0:
        raise RecipeError(f"--warmup-ratio must be in [0, 1), got {args.warmup_ratio}")
    check_choices(args.class_weight, args.select_metric, args.patience)
    return TrainConfig(epochs=args.epochs, lr=args.lr, batch_size=args.batch_size, warmup_ratio=args.warmup_ratio,
                       max_length=args.max_length or max_length, seed=args.seed, progress=not args.no_progress,
                       class_weight=args.class_weight, select_metric=args.select_metric, patience=args.patience)


def run(args: argparse.Namespace) -> int:
    """Load and report the data, fine-tune, print the test metrics."""
    from edgekd.console import make_console
    from edgekd.data import load_splits, print_data_report

    spec = data_spec_from_args(args)
    config = train_config_from_args(args)
    if args.diff_attention:
        from edgekd.train.diff_attention import parse_diff

        parse_diff(args.diff_attention)
    splits = load_splits(spec)
    print_data_report(splits, make_console(stderr=True))

    from edgekd.metrics import print_decisions, print_metrics
    from edgekd.train.teacher import train_teacher

    metrics = train_teacher(splits, spec, args.model, args.out, config, diff_attention=args.diff_attention)
    if metrics:  # empty on the other ranks under torchrun: rank 0 evaluates and reports
        console = make_console()
        print_metrics(metrics, title=f"teacher {args.out} test", console=console)
        print_decisions(args.out, console)
        print(f"teacher checkpoint: {args.out}")
    return 0
