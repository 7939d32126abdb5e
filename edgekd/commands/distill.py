"""`edgekd distill`: small PyTorch students from a fine-tuned teacher, compared side by side."""

from __future__ import annotations

import argparse
from pathlib import Path

from edgekd.commands._common import add_data_arguments, data_spec_from_args
from edgekd.commands.train import add_optimisation_arguments, train_config_from_args
from edgekd.errors import ModelError, RecipeError

HELP = "distill students (layers=K | layers=i,j,k | model ref) from a teacher; compare them"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Teacher, student specs, loss and optimisation flags of `edgekd distill`."""
    parser.add_argument("--teacher", required=True, help="fine-tuned teacher checkpoint directory")
    add_data_arguments(parser)
    parser.add_argument("--student", action="append", required=True, metavar="SPEC",
                        help="layers=K (K evenly spaced teacher layers), layers=i,j,k, or a model "
                             "reference; after the layers, ffn=N and heads=K width-prune each layer to the "
                             "N FFN neurons and K heads that matter most on the training texts, e.g. "
                             "layers=3,ffn=768,heads=8; repeat for several students")
    parser.add_argument("--out", required=True, type=Path,
                        help="output: the student checkpoint (one --student) or a directory of them")
    loss = parser.add_argument_group("loss")
    loss.add_argument("--temperature", type=float, default=2.0, help="softmax temperature T (default: 2)")
    loss.add_argument("--alpha", type=float, default=0.5,
                      help="weight of the soft-target KL term; 1-alpha weighs the (class-weighted) "
                           "cross-entropy (default: 0.5)")
    loss.add_argument("--hidden-weight", type=float, default=0.0,
                      help="weight of the hidden-state MSE (same-tokenizer students; default: 0)")
    loss.add_argument("--attention-weight", type=float, default=0.0,
                      help="weight of the attention KL (same tokenizer and heads; default: 0)")
    loss.add_argument("--no-teacher", action="store_true",
                      help="plain fine-tuning of the same student init, without soft targets")
    loss.add_argument("--compare-no-teacher", action="store_true",
                      help="train each student both with and without the teacher")
    parser.add_argument("--cache-dir", type=Path, default=None,
                        help="teacher-logit cache (default: $EDGEKD_CACHE/teacher-logits or "
                             "~/.cache/edgekd/teacher-logits)")
    add_optimisation_arguments(parser, lr=1e-4)


def _check_loss_args(args: argparse.Namespace) -> None:
    if args.temperature <= 0:
        raise RecipeError(f"--temperature must be > 0, got {args.temperature}")
    if not 0.0 <= args.alpha <= 1.0:
        raise RecipeError(f"--alpha must be in [0, 1], got {args.alpha}")
    for flag, value in (("--hidden-weight", args.hidden_weight), ("--attention-weight", args.attention_weight)):
        if value < 0:
            raise RecipeError(f"{flag} must be >= 0, got {value}")


def run(args: argparse.Namespace) -> int:
    """Validate specs against the teacher, load the data, distill, print the comparison."""
    from edgekd.models import resolve_model
    from edgekd.train.students import parse_student_spec, resolve_layers

    _check_loss_args(args)
    specs = [parse_student_spec(s) for s in args.student]
    teacher_dir = Path(resolve_model(args.teacher))
    if not teacher_dir.is_dir():
        raise ModelError(f"--teacher '{args.teacher}' is not a local checkpoint directory; run 'edgekd train' first")

    from edgekd.console import make_console
    from edgekd.data import load_splits, print_data_report
    from edgekd.train.distill import DistillConfig, distill_many, teacher_settings
    from edgekd.train.width import check_teacher_width

    meta = teacher_settings(teacher_dir)
    for spec in specs:
        # Fail on a bad spec before any data or model loads.
        if spec.reference is None:
            resolve_layers(spec, meta["num_hidden_layers"])
            check_teacher_width(spec, teacher_dir, args.attention_weight)
        else:
            resolve_model(spec.reference)
    train = train_config_from_args(args, max_length=int(meta.get("max_length") or 128))
    config = DistillConfig(train=train, temperature=args.temperature, alpha=args.alpha,
                           hidden_weight=args.hidden_weight, attention_weight=args.attention_weight,
                           use_teacher=not args.no_teacher)
    data_spec = data_spec_from_args(args)
    splits = load_splits(data_spec, labels=meta["labels"])
    print_data_report(splits, make_console(stderr=True))
    rows = distill_many(teacher_dir, splits, specs, args.out, config, cache_dir=args.cache_dir,
                        compare_no_teacher=args.compare_no_teacher, data_spec=data_spec)
    if rows:  # empty on the other ranks under torchrun
        _print_rows(rows)
        _print_review(rows)
        print(f"comparison: {args.out / 'comparison.md'}")
    return 0


def _print_rows(rows: list[dict]) -> None:
    from edgekd.console import make_console, print_table
    from edgekd.train.students import COMPARISON_COLUMNS, format_cell

    print_table(make_console(), "distillation (test split)", [title for _, title in COMPARISON_COLUMNS],
                [[format_cell(row.get(k), k) for k, _ in COMPARISON_COLUMNS] for row in rows],
                justify=["left" if key == "model" else "right" for key, _ in COMPARISON_COLUMNS])


def _print_review(rows: list[dict]) -> None:
    """The class weights and selection metric each student used, and the reviewer's warnings (a class
    never predicted right, a student below the teacher is expected and not warned about)."""
    import json

    from edgekd.console import make_console
    from edgekd.metrics import print_decisions, print_warnings, review, scores_from_metrics

    console = make_console()
    scores = []
    for row in rows:
        path = Path(row["path"]) / "metrics.json"
        if row["model"] != "teacher" and path.is_file():
            print_decisions(Path(row["path"]), console)
            scores.append(scores_from_metrics(row["model"], "student", json.loads(path.read_text())))
    print_warnings(review(scores), console)
