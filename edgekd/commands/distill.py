"""`edgekd distill`: small PyTorch students from a fine-tuned teacher, compared side by side."""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any, ClassVar

from edgekd.commands._common import Stage, add_data_arguments, data_flags, data_spec_from_args, field_default
from edgekd.commands.train import (
    add_optimisation_arguments,
    check_train_config,
    train_config_from_args,
    training_flags,
)
from edgekd.data import DataSpec
from edgekd.errors import ModelError, RecipeError
from edgekd.train.common import DistillConfig

HELP = "distill students (layers=K | layers=i,j,k | model ref) from a teacher; compare them"


@dataclass
class DistillStage(Stage):
    """Distill each of `students` (specs) from the teacher checkpoint `teacher` on `data` into `out` (the
    checkpoint itself for one student, else a directory of them)."""

    VERB: ClassVar[str] = "distill"
    teacher: str
    data: DataSpec
    students: list[str]
    out: Path
    config: DistillConfig
    max_length: int | None = None  # None: the teacher's (replaces config.train.max_length)
    cache_dir: Path | None = None  # teacher-logit cache; None: $EDGEKD_CACHE/teacher-logits
    compare_no_teacher: bool = False  # also train each student without the teacher

    def command(self) -> list[str]:
        c = self.config
        return ["distill", *data_flags(self.data), "--teacher", self.teacher,
                *(a for spec in self.students for a in ("--student", spec)), "--out", str(self.out),
                *training_flags(c.train, max_length=False),
                *([] if self.max_length is None else ["--max-length", str(self.max_length)]),
                "--temperature", str(c.temperature), "--alpha", str(c.alpha),
                *([] if c.hidden_weight == 0 else ["--hidden-weight", str(c.hidden_weight)]),
                *([] if c.attention_weight == 0 else ["--attention-weight", str(c.attention_weight)]),
                *([] if c.use_teacher else ["--no-teacher"]),
                *(["--compare-no-teacher"] if self.compare_no_teacher else []),
                *([] if self.cache_dir is None else ["--cache-dir", str(self.cache_dir)])]


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
    # The loss defaults are DistillConfig's (train.common, torch-free), as the recipe's students section's. Not
    # read through edgekd.recipe: that imports the exporters and verify, and a distill step's cache stamp
    # hashes every module the command imports, so an export change would mark every trained student stale.
    temperature, alpha = field_default(DistillConfig, "temperature"), field_default(DistillConfig, "alpha")
    loss.add_argument("--temperature", type=float, default=temperature,
                      help=f"softmax temperature T (default: {temperature:g})")
    loss.add_argument("--alpha", type=float, default=alpha,
                      help="weight of the soft-target KL term; 1-alpha weighs the (class-weighted) "
                           f"cross-entropy (default: {alpha:g})")
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
    add_optimisation_arguments(parser, lr=field_default(DistillConfig, "train").lr)


def _check_loss(config: DistillConfig) -> None:
    if config.temperature <= 0:
        raise RecipeError(f"--temperature must be > 0, got {config.temperature}")
    if not 0.0 <= config.alpha <= 1.0:
        raise RecipeError(f"--alpha must be in [0, 1], got {config.alpha}")
    for flag, value in (("--hidden-weight", config.hidden_weight), ("--attention-weight", config.attention_weight)):
        if value < 0:
            raise RecipeError(f"{flag} must be >= 0, got {value}")


def run_stage(stage: DistillStage) -> list[dict[str, Any]]:
    """Check the settings and the specs against the teacher, load the data, distill, print the
    comparison; the comparison rows (empty on the other ranks under torchrun)."""
    from edgekd.models import resolve_model
    from edgekd.train.students import parse_student_spec, resolve_layers

    _check_loss(stage.config)
    specs = [parse_student_spec(s) for s in stage.students]
    teacher_dir = Path(resolve_model(stage.teacher))
    if not teacher_dir.is_dir():
        raise ModelError(f"--teacher '{stage.teacher}' is not a local checkpoint directory; run 'edgekd train' first")

    from edgekd.checkpoint import Checkpoint, card_max_length
    from edgekd.console import make_console
    from edgekd.data import load_splits, print_data_report
    from edgekd.train.distill import distill_many
    from edgekd.train.width import check_teacher_width

    teacher = Checkpoint.open(teacher_dir)  # opened once: its card, config and (later) model serve every step
    for spec in specs:
        # Fail on a bad spec before any data or model loads.
        if spec.reference is None:
            resolve_layers(spec, teacher.num_hidden_layers)
            check_teacher_width(spec, teacher, stage.config.attention_weight)
        else:
            resolve_model(spec.reference)
    max_length = card_max_length(teacher.card) if stage.max_length is None else stage.max_length
    config = replace(stage.config, train=replace(stage.config.train, max_length=max_length))
    check_train_config(config.train)
    splits = load_splits(stage.data, labels=teacher.labels)
    print_data_report(splits, make_console(stderr=True))
    rows = distill_many(teacher, splits, specs, stage.out, config, cache_dir=stage.cache_dir,
                        compare_no_teacher=stage.compare_no_teacher, data_spec=stage.data)
    if rows:  # empty on the other ranks under torchrun
        _print_rows(rows)
        _print_review(rows)
        print(f"comparison: {stage.out / 'comparison.md'}")
    return rows


def stage_from_args(args: argparse.Namespace) -> DistillStage:
    """The stage config of the flags."""
    from edgekd.train.common import DistillConfig

    config = DistillConfig(train=train_config_from_args(args), temperature=args.temperature, alpha=args.alpha,
                           hidden_weight=args.hidden_weight, attention_weight=args.attention_weight,
                           use_teacher=not args.no_teacher)
    return DistillStage(args.teacher, data_spec_from_args(args), args.student, args.out, config,
                        max_length=args.max_length, cache_dir=args.cache_dir, compare_no_teacher=args.compare_no_teacher)


def run(args: argparse.Namespace) -> int:
    run_stage(stage_from_args(args))
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
