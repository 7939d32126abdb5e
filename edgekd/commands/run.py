"""`edgekd run RECIPE`: the whole pipeline (baseline, teacher, students, export, verify, report),
skipping steps whose outputs are up to date, then a summary table; exit 1 if a gate failed."""

from __future__ import annotations

import argparse
import contextlib
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rich.console import Console

    from edgekd import pipeline

HELP = "run a recipe end to end (resumable): baseline, teacher, students, export, verify, report"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recipe", help="recipe YAML, e.g. recipes/demo.yaml")
    parser.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE",
                        help="override a recipe value, e.g. --set teacher.epochs=1 (repeatable)")
    parser.add_argument("--out", default=None, help="output directory (overrides the recipe's out)")
    parser.add_argument("--data", default=None, help="dataset (overrides data.path)")
    parser.add_argument("--max-train-samples", type=int, default=None, help="overrides data.max_train_samples")
    parser.add_argument("--force", action="store_true", help="re-run every step, even those up to date")
    parser.add_argument("--dry-run", action="store_true", help="print the steps and whether each is up to date")


def overrides_from_args(args: argparse.Namespace) -> list[str]:
    """The shortcut flags as `--set` overrides (they win over --set, which wins over the file)."""
    out = list(args.overrides)
    for key, value in (("out", args.out), ("data.path", args.data), ("data.max_train_samples", args.max_train_samples)):
        if value is not None:
            out.append(f"{key}={value}")
    return out


def print_summary(results: list[pipeline.StepResult], report: pipeline.Report | None, console: Console) -> None:
    """The steps (ran/skipped, seconds) and the models of the final report."""
    from rich.text import Text

    from edgekd.console import print_table

    styles = {"ran": "green", "skipped": "dim", "failed": "bold red"}
    print_table(console, "pipeline", ("step", "status", "seconds"),
                [[r.name, Text(r.status, style=styles[r.status]), f"{r.seconds:.1f}"] for r in results],
                justify=("left", "left", "right"))
    if report is None:
        return
    from edgekd.commands.verify import print_gate_table

    print_gate_table(report, console)


def _step_context(step: pipeline.Step) -> contextlib.AbstractContextManager[None]:
    """A stage step runs quieted as its verb is on the command line (`cli.verb_context`)."""
    from edgekd.cli import verb_context

    return verb_context(step.verb) if step.verb else contextlib.nullcontext()


def run(args: argparse.Namespace) -> int:
    import shlex
    from pathlib import Path

    from edgekd import pipeline
    from edgekd.console import make_console
    from edgekd.recipe import load_recipe

    recipe = load_recipe(args.recipe, overrides_from_args(args))
    console = make_console()
    if args.dry_run:
        from edgekd.steps import Runner

        steps, _ = pipeline.plan(recipe)
        statuses = Runner(Path(recipe.out)).statuses(steps)
        for step in steps:
            fresh = statuses[step.name] is None
            console.print(f"{step.name:<24} {'up to date' if fresh else 'to run'}", highlight=False)
            if step.command and not fresh:  # what the step will run, as a hand-typed command
                console.print(f"    [dim]edgekd {shlex.join(step.command)}[/]", highlight=False, soft_wrap=True)
        return 0
    results: list[pipeline.StepResult] = []
    try:
        _, report = pipeline.execute(recipe, console, force=args.force, results=results, around=_step_context)
    except BaseException:
        print_summary(results, None, console)
        raise
    print_summary(results, report, console)
    html = sorted((Path(recipe.out) / "report").glob("*.html"))
    if html:
        console.print(f"report: {html[-1]}")
    pipeline.raise_on_gates(report)
    return 0
