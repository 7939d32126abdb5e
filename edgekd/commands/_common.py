"""Argument helpers shared by the commands: the dataset flags (train, distill, baseline, evaluate,
export) and the gate flags (export and verify read the same gate table)."""

from __future__ import annotations

import argparse
from typing import Any

from edgekd.data import DataSpec
from edgekd.errors import DataError


def add_data_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """Add --data, --text-column, --label-column, --label-map, --max-train-samples and --seed."""
    group = parser.add_argument_group("data")
    group.add_argument("--data", required=required, metavar="SPEC",
                       help="directory with train/validation/test files (csv, tsv, jsonl, parquet, "
                            "optionally .gz), a single file (test and validation carved from it), "
                            "or hf:NAME[:CONFIG]")
    group.add_argument("--text-column", action="append", metavar="COL",
                       help="text column (default: text); repeat it or give a comma list, e.g. "
                            "title,description, to join several columns with a space")
    group.add_argument("--label-column", default="label", metavar="COL",
                       help="label column holding label names (default: label)")
    group.add_argument("--label-map", metavar="YAML",
                       help="YAML {group: [raw labels...]} merging raw labels into groups")
    group.add_argument("--max-train-samples", type=int, metavar="N",
                       help="keep a stratified sample of N training rows (fixed seed)")
    group.add_argument("--seed", type=int, default=42, help="seed for sampling and carving (default: 42)")


def text_columns_from_args(values: list[str] | None) -> list[str]:
    """Flatten repeated and comma-separated --text-column values; ["text"] when none given."""
    columns = [c.strip() for v in values or [] for c in v.split(",") if c.strip()]
    return columns or ["text"]


def data_spec_from_args(args: argparse.Namespace) -> DataSpec:
    """The `DataSpec` described by the data arguments of `args`."""
    if args.data is None:
        raise DataError("no dataset given; pass --data DIR_OR_FILE")
    if args.max_train_samples is not None and args.max_train_samples < 2:
        raise DataError(f"--max-train-samples must be at least 2, got {args.max_train_samples}")
    return DataSpec(
        path=args.data,
        text_columns=text_columns_from_args(args.text_column),
        label_column=args.label_column,
        label_map=args.label_map,
        max_train_samples=args.max_train_samples,
        seed=args.seed,
    )


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    """--gate-<precision>-<metric> X for every precision of the gate table and every gate metric."""
    from edgekd.verify.parity import DEFAULT_GATES, GATE_METRICS

    for p in DEFAULT_GATES:
        for m in GATE_METRICS:
            parser.add_argument(f"--gate-{p}-{m.replace('_', '-')}", type=float, default=None, metavar="X",
                                dest=f"gate_{p}_{m}", help=argparse.SUPPRESS)
    parser.epilog = (f"gates: --gate-<{'|'.join(DEFAULT_GATES)}>-<{'|'.join(m.replace('_', '-') for m in GATE_METRICS)}> X "
                     "overrides a threshold of the one gate table that export and verify share "
                     "(agreement and accuracy-drop are fractions: 0.99, 0.005)")


def gates_from_args(args: argparse.Namespace, base: Any = None) -> Any:
    """The default (or `base`) GateSet with the --gate-* flags applied."""
    from edgekd.verify.parity import DEFAULT_GATES, GATE_METRICS, GateSet

    gates = base or GateSet()
    for p in DEFAULT_GATES:
        for m in GATE_METRICS:
            value = getattr(args, f"gate_{p}_{m}", None)
            if value is not None:
                gates.override(p, m, value)
    return gates
