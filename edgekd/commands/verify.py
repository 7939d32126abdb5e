"""`edgekd verify BUNDLE --data D`: parity, accuracy and latency of every artifact of the bundle,
against the PyTorch student and the teacher; writes bundle/reports/<device-id>.json/.md/.html and
exits 1 when a gate fails. An artifact this machine cannot verify (or that --backends leaves out)
fails the command before any model loads, unless --allow-partial."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from edgekd.commands._common import add_gate_arguments, gates_from_args

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


def run(args: argparse.Namespace) -> int:
    from edgekd.console import make_console
    from edgekd.verify import parity, runner
    from edgekd.verify.latency import LatencySettings

    console = make_console(stderr=True)
    config = runner.VerifyConfig(
        bundle=Path(args.bundle), data=args.data, teacher=args.reference, student=args.student,
        baseline=args.baseline,
        backends=[b.strip() for b in args.backends.split(",") if b.strip()] if args.backends else None,
        max_samples=args.max_samples, text_columns=args.text_column or ["text"], label_column=args.label_column,
        gates=gates_from_args(args),
        latency=LatencySettings(runs=args.runs, batch_size=args.batch_size, cold_start=not args.no_cold_start),
        out_dir=args.out, allow_partial=args.allow_partial,
    )
    with console.status("verifying") as status:
        report = runner.verify(config, progress=lambda msg: status.update(f"verifying: {msg}"))
    paths = runner.write(report, config)
    out = make_console()
    print_gate_table(report, out)
    out.print(f"report: {paths['json']}  ({paths['md'].name}, {paths['html'].name})")
    parity.raise_on_failures(report["gates"])
    return 0
