"""`edgekd baseline`: TF-IDF + logistic regression on the train split, evaluated on test."""

from __future__ import annotations

import argparse

from edgekd.commands._common import add_data_arguments, data_spec_from_args

HELP = "fit a TF-IDF (word 1-2 grams) + logistic regression baseline and evaluate it on the test split"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_data_arguments(parser)
    parser.add_argument("--out", default="runs/baseline", help="output directory (default: runs/baseline)")


def run(args: argparse.Namespace) -> int:
    from edgekd.console import make_console
    from edgekd.metrics import print_metrics
    from edgekd.train.baseline import train_baseline

    spec = data_spec_from_args(args)
    console = make_console()
    with console.status("fitting TF-IDF + logistic regression"):
        metrics = train_baseline(spec, args.out, console=console)
    print_metrics(metrics, title="baseline, test split", console=console)
    console.print(f"fitted on {metrics['fit_rows']} rows in {metrics['train_seconds']:.1f} s; "
                  f"wrote {args.out}/metrics.json")
    return 0
