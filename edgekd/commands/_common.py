"""Helpers shared by the commands: the dataset flags (train, distill, baseline, evaluate, export), the
gate flags (export and verify read the same gate table), and `Stage`, the base of each pipeline verb's
typed config (what its `run_stage` takes; `edgekd run` builds the same configs from a recipe)."""

from __future__ import annotations

import argparse
import dataclasses
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar

from edgekd.data import DataSpec
from edgekd.errors import DataError

if TYPE_CHECKING:
    from edgekd.verify.parity import GateSet


def field_default(cls: type, name: str) -> Any:
    """The default of dataclass `cls`'s field `name` (its factory called): a flag or recipe key whose
    default is a stage config's reads it from there, so each default is written once."""
    f = next(f for f in dataclasses.fields(cls) if f.name == name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    raise TypeError(f"{cls.__name__}.{name} has no default")


def json_ready(value: Any) -> Any:
    """`value` (dataclasses, Paths, tuples, dicts, lists, scalars) as JSON types."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: json_ready(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        return {str(k): json_ready(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [json_ready(v) for v in value]
    if isinstance(value, (Path, Enum)):
        return str(value)
    return value


class Stage:
    """Base of a pipeline verb's typed config (a dataclass): `run_stage(config)` in the verb's module
    does the work; the argparse handler only builds the config from flags. `key()` is what a pipeline
    step's stamp hashes; `command()` the equivalent `edgekd` command line, for people (never parsed)."""

    VERB: ClassVar[str]

    def key(self) -> dict[str, Any]:
        """{"stage": verb, **the config as JSON types}."""
        return {"stage": self.VERB, **json_ready(self)}

    def command(self) -> list[str]:
        raise NotImplementedError

    def run(self) -> Any:
        """`run_stage(self)` of the verb's module (the module that defines the config's class)."""
        import importlib

        return importlib.import_module(type(self).__module__).run_stage(self)


def add_data_arguments(parser: argparse.ArgumentParser, required: bool = True) -> None:
    """Add --data, --text-column, --label-column, --label-map, --max-train-samples and --seed."""
    label_column, seed = field_default(DataSpec, "label_column"), field_default(DataSpec, "seed")
    group = parser.add_argument_group("data")
    group.add_argument("--data", required=required, metavar="SPEC",
                       help="directory with train/validation/test files (csv, tsv, jsonl, parquet, "
                            "optionally .gz), a single file (test and validation carved from it), "
                            "or hf:NAME[:CONFIG]")
    group.add_argument("--text-column", action="append", metavar="COL",
                       help=f"text column (default: {','.join(field_default(DataSpec, 'text_columns'))}); repeat "
                            "it or give a comma list, e.g. title,description, to join several columns with a space")
    group.add_argument("--label-column", default=label_column, metavar="COL",
                       help=f"label column holding label names (default: {label_column})")
    group.add_argument("--label-map", metavar="YAML",
                       help="YAML {group: [raw labels...]} merging raw labels into groups")
    group.add_argument("--max-train-samples", type=int, metavar="N",
                       help="keep a stratified sample of N training rows (fixed seed)")
    group.add_argument("--seed", type=int, default=seed, help=f"seed for sampling and carving (default: {seed})")


def text_columns_from_args(values: list[str] | None) -> list[str]:
    """Flatten repeated and comma-separated --text-column values; DataSpec's default (["text"]) when none given."""
    columns = [c.strip() for v in values or [] for c in v.split(",") if c.strip()]
    return columns or field_default(DataSpec, "text_columns")


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


def data_flags(spec: DataSpec) -> list[str]:
    """The data flags that give `spec` (those at their default left out, --data and --seed always)."""
    flags = ["--data", str(spec.path)]
    if spec.text_columns != field_default(DataSpec, "text_columns"):
        flags += ["--text-column", ",".join(spec.text_columns)]
    if spec.label_column != field_default(DataSpec, "label_column"):
        flags += ["--label-column", spec.label_column]
    if spec.label_map is not None:
        flags += ["--label-map", spec.label_map if isinstance(spec.label_map, str) else "<mapping>"]
    if spec.max_train_samples is not None:
        flags += ["--max-train-samples", str(spec.max_train_samples)]
    return [*flags, "--seed", str(spec.seed)]


def add_gate_arguments(parser: argparse.ArgumentParser) -> None:
    """--gate-<precision>-<metric> X for every precision of the gate table and every gate metric."""
    from edgekd.verify.parity import DEFAULT_GATES, GATE_METRICS, INT8_MAX_ACCURACY_DROP

    for p in DEFAULT_GATES:
        for m in GATE_METRICS:
            parser.add_argument(f"--gate-{p}-{m.replace('_', '-')}", type=float, default=None, metavar="X",
                                dest=f"gate_{p}_{m}", help=argparse.SUPPRESS)
    parser.epilog = (f"gates: --gate-<{'|'.join(DEFAULT_GATES)}>-<{'|'.join(m.replace('_', '-') for m in GATE_METRICS)}> X "
                     "overrides a threshold of the one gate table that export and verify share "
                     f"(agreement and accuracy-drop are fractions: 0.99, {INT8_MAX_ACCURACY_DROP})")


def gates_from_args(args: argparse.Namespace, base: GateSet | None = None) -> GateSet:
    """The default (or `base`) GateSet with the --gate-* flags applied."""
    from edgekd.verify.parity import DEFAULT_GATES, GATE_METRICS, GateSet

    gates = base or GateSet()
    for p in DEFAULT_GATES:
        for m in GATE_METRICS:
            value = getattr(args, f"gate_{p}_{m}", None)
            if value is not None:
                gates.override(p, m, value)
    return gates


def gates_from_table(table: dict[str, dict[str, float]]) -> GateSet:
    """The default GateSet with `{precision: {metric: threshold}}` applied (a recipe's `verify.gates`), in
    the order `gates_from_args` applies the same --gate-* flags, so both give the same table."""
    from edgekd.verify.parity import DEFAULT_GATES, GATE_METRICS, GateSet

    gates = GateSet()
    for precision, metrics in table.items():  # an unknown name fails as the flag would not exist
        for metric in metrics:
            if precision not in DEFAULT_GATES or metric not in GATE_METRICS:
                gates.override(precision, metric, metrics[metric])
    for p in DEFAULT_GATES:
        for m in GATE_METRICS:
            if m in table.get(p, {}):
                gates.override(p, m, table[p][m])
    return gates


def gate_flags(gates: GateSet) -> list[str]:
    """The --gate-* flags that give `gates` from the default table (thresholds that differ, gates added)."""
    from edgekd.verify.parity import GateSet

    default = GateSet()
    return [arg for precision, rows in sorted(gates.gates.items()) for g in sorted(rows, key=lambda g: g.metric)
            if g.metric not in {d.metric for d in default.gates.get(precision, [])}
            or g.threshold != default.threshold(precision, g.metric)
            for arg in (f"--gate-{precision}-{g.metric.replace('_', '-')}", str(g.threshold))]
