"""`edgekd baseline`: TF-IDF + logistic regression on the train split, evaluated on test."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from edgekd.commands._common import Stage, add_data_arguments, data_flags, data_spec_from_args
from edgekd.data import DataSpec

HELP = "fit a TF-IDF (word 1-2 grams) + logistic regression baseline and evaluate it on the test split"


@dataclass
class BaselineStage(Stage):
    """Fit the baseline on `data`'s train split into `out`."""

    VERB: ClassVar[str] = "baseline"
    data: DataSpec
    out: Path = Path("runs/baseline")

    def command(self) -> list[str]:
        return ["baseline", *data_flags(self.data), "--out", str(self.out)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    out = BaselineStage.out
    parser.add_argument("--out", type=Path, default=out, help=f"output directory (default: {out})")


def run_stage(stage: BaselineStage) -> dict[str, Any]:
    """Fit, evaluate on the test split, print the metrics; the metrics (also in `out/metrics.json`)."""
    from edgekd.console import make_console
    from edgekd.metrics import print_metrics
    from edgekd.train.baseline import train_baseline

    console = make_console()
    with console.status("fitting TF-IDF + logistic regression"):
        metrics = train_baseline(stage.data, stage.out, console=console)
    print_metrics(metrics, title="baseline, test split", console=console)
    console.print(f"fitted on {metrics['fit_rows']} rows in {metrics['train_seconds']:.1f} s; "
                  f"wrote {stage.out}/metrics.json")
    return metrics


def stage_from_args(args: argparse.Namespace) -> BaselineStage:
    """The stage config of the flags."""
    return BaselineStage(data_spec_from_args(args), args.out)


def run(args: argparse.Namespace) -> int:
    run_stage(stage_from_args(args))
    return 0
