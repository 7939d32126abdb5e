"""`edgekd verify BUNDLE --data D`: parity, accuracy and latency of every artifact of the bundle,
against the PyTorch student and the teacher; writes bundle/reports/<device-id>.json/.md/.html and
exits 1 when a gate fails. An artifact this machine cannot verify (or that --backends leaves out)
fails the command before any model loads, unless --allow-partial."""

from __future__ import annotations

import argparse
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from edgekd.commands._common import Stage, add_gate_arguments, gate_flags, gates_from_args

if TYPE_CHECKING:
    from edgekd.verify.runner import VerifyConfig

HELP = "check parity, accuracy and latency of a bundle on this device; exit 1 if a gate fails"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle directory or .zip")
    parser.add_argument("--data", required=True,
                        help="labelled test data: a CSV/TSV/JSONL/Parquet file, or a dataset directory (its test split)")
    parser.add_argument("--reference", type=Path, default=None,
                        help="teacher checkpoint (default: the student's edgekd-model.json or the bundle provenance)")
    parser.add_argument("--student", type=Path, default=None,
                        help="PyTorch student checkpoint (default: the one recorded in the bundle's provenance)")
    parser.add_argument("--baseline", type=Path, default=None,
                        help="a TF-IDF baseline directory (edgekd baseline) to compare on the same texts")
    parser.add_argument("--backends", default=None,
                        help="comma list, e.g. onnx,openvino,coreml-reference: verify only these (default: every "
                             "artifact; any left out needs --allow-partial)")
    parser.add_argument("--max-samples", type=int, default=500,
                        help="test texts to use, a fixed-seed sample (default 500; 0 = the whole test split)")
    parser.add_argument("--text-column", action="append", default=None, help="text column(s) (default: text)")
    parser.add_argument("--label-column", default="label")
    parser.add_argument("--runs", type=int, default=50, help="minimum batch-1 timed runs per model")
    parser.add_argument("--batch-size", type=int, default=32, help="batch size for the throughput measure")
    parser.add_argument("--no-cold-start", action="store_true", help="skip the fresh-process cold start measure")
    parser.add_argument("--out", type=Path, default=None, help="report directory (default: BUNDLE/reports; for BUNDLE.zip, BUNDLE-reports/ beside it)")
    parser.add_argument("--allow-partial", action="store_true",
                        help="pass although some artifacts cannot be verified here (backend not installed, or "
                             "left out by --backends); the report lists them under 'skipped'. Without it, "
                             "verify fails before loading any model")
    add_gate_arguments(parser)


def print_gate_table(report: dict[str, Any], console: Any = None) -> None:
    """The models table and the per-check table, then the report's notes and warnings."""
    from rich.text import Text

    from edgekd.console import make_console, print_table
    from edgekd.verify.report import GATE_HEADER, MODEL_HEADER, gate_rows, model_rows

    console = console or make_console()
    print_table(console, f"models on {report['device']['device_id']}", MODEL_HEADER, model_rows(report))
    checks = [[*row[:-1], Text(row[-1], style={"PASS": "green", "INCONCLUSIVE": "yellow"}.get(row[-1], "bold red"))]
              for row in gate_rows(report)]
    print_table(console, "gates", GATE_HEADER, checks)
    for note in report.get("notes", []):
        console.print(f"note: {note}", markup=False, highlight=False)
    from edgekd.metrics import print_warnings, report_warnings

    print_warnings(report_warnings(report), console)


@dataclass
class VerifyStage(Stage):
    """Verify the bundle `config.bundle` on this device and write its report (`run_stage`)."""

    VERB: ClassVar[str] = "verify"
    config: VerifyConfig

    def command(self) -> list[str]:
        """The flags of the config (the latency settings without a flag, warm-up and the time budgets,
        are LatencySettings' defaults whichever way the stage is built)."""
        c, lat = self.config, self.config.latency

        def opt(flag: str, value: Any) -> list[str]:
            return [] if value is None else [flag, str(value)]

        return ["verify", str(c.bundle), "--data", str(c.data), *opt("--reference", c.teacher),
                *opt("--student", c.student), *opt("--baseline", c.baseline),
                *opt("--backends", None if c.backends is None else ",".join(c.backends)),
                "--max-samples", str(c.max_samples or 0),
                *([] if c.text_columns == ["text"] else ["--text-column", ",".join(c.text_columns)]),
                *([] if c.label_column == "label" else ["--label-column", c.label_column]),
                "--runs", str(lat.runs), "--batch-size", str(lat.batch_size),
                *([] if lat.cold_start else ["--no-cold-start"]),
                *opt("--out", c.out_dir), *(["--allow-partial"] if c.allow_partial else []), *gate_flags(c.gates)]


def run_stage(stage: VerifyStage, progress: Callable[[str], Any] | None = None) -> dict[str, Any]:
    """Verify and write the report (json, md, html); returns it. Failed gates are in the report, not
    raised: `edgekd verify` raises them after printing, `edgekd run` after the whole run."""
    from edgekd.verify import runner

    report = runner.verify(stage.config, progress=progress or (lambda msg: print(f"verify: {msg}", flush=True)))
    runner.write(report, stage.config)
    return report


def stage_from_args(args: argparse.Namespace) -> VerifyStage:
    from edgekd.verify import runner
    from edgekd.verify.latency import LatencySettings

    return VerifyStage(runner.VerifyConfig(
        bundle=Path(args.bundle), data=args.data, teacher=args.reference, student=args.student,
        baseline=args.baseline,
        backends=[b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None,
        max_samples=args.max_samples, text_columns=args.text_column or ["text"], label_column=args.label_column,
        gates=gates_from_args(args),
        latency=LatencySettings(runs=args.runs, batch_size=args.batch_size, cold_start=not args.no_cold_start),
        out_dir=args.out, allow_partial=args.allow_partial,
    ))


def run(args: argparse.Namespace) -> int:
    from edgekd.console import make_console
    from edgekd.verify import parity
    from edgekd.verify.report import report_path

    console = make_console(stderr=True)
    stage = stage_from_args(args)
    with console.status("verifying") as status:
        report = run_stage(stage, progress=lambda msg: status.update(f"verifying: {msg}"))
    written = report_path(stage.config.out_dir or Path(stage.config.bundle) / "reports", report["device"]["device_id"])
    out = make_console()
    print_gate_table(report, out)
    out.print(f"report: {written}  ({written.with_suffix('.md').name}, {written.with_suffix('.html').name})")
    parity.raise_on_failures(report["gates"])
    return 0
