"""`edgekd export MODEL --target onnx,openvino,coreml|all [--int8] --data D --out bundle/`.

MODEL is a Hugging Face sequence-classification checkpoint edgekd wrote (teacher or student).
Calibration texts come from the train split of the data, accuracy control from its validation
split, and the post-export check from held-out test texts. Without --data, the dataset recorded in
the checkpoint's edgekd-model.json is used. Every artifact is checked against PyTorch; a failed
check fails the command and no bundle is written.
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from edgekd.commands._common import (
    Stage,
    add_gate_arguments,
    data_flags,
    data_spec_from_args,
    field_default,
    gate_flags,
    gates_from_args,
)
from edgekd.data import DataSpec
from edgekd.errors import DataError
from edgekd.exporters.bundle_writer import ExportOptions
from edgekd.verify.parity import INT8_MAX_ACCURACY_DROP

if TYPE_CHECKING:
    from edgekd.bundle import Manifest
    from edgekd.exporters.bundle_writer import ExportData

HELP = "export a checkpoint to ONNX / OpenVINO / Core ML into a checked bundle"
# Held-out texts the post-export check draws its length classes from.
CHECK_POOL = 2000


@dataclass
class ExportStage(Stage):
    """Export the checkpoint `model` into the bundle `out`; calibration, accuracy control and the check
    read `data` (None: the dataset recorded in the checkpoint's edgekd-model.json)."""

    VERB: ClassVar[str] = "export"
    model: Path
    out: Path
    options: ExportOptions
    data: DataSpec | None = None

    def command(self) -> list[str]:
        o = self.options
        targets = o.targets if isinstance(o.targets, str) else ",".join(o.targets)
        return ["export", str(self.model), "--target", targets, "--out", str(self.out),
                *(["--force"] if o.force else []), *([] if self.data is None else data_flags(self.data)),
                "--calibration-size", str(o.calibration_size), "--coreml-precision", o.coreml_precision,
                *([] if o.compute_units == field_default(ExportOptions, "compute_units")
                  else ["--compute-units", o.compute_units]),
                *(["--int8"] if o.int8 else []), *(["--require-int8"] if o.require_int8 else []),
                *([] if o.embedding_bits == 8 else ["--embedding-bits", str(o.embedding_bits)]),
                *(["--trim-positions"] if o.trim_positions else []),
                *([] if o.max_accuracy_drop is None else ["--max-accuracy-drop", str(o.max_accuracy_drop)]),
                *gate_flags(o.gates)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from edgekd.commands._common import add_data_arguments

    parser.add_argument("model", help="checkpoint directory (output of edgekd train / distill)")
    from edgekd.backends import COREML_COMPUTE_UNITS
    from edgekd.exporters import TARGETS

    parser.add_argument("--target", default="onnx", help=f"{', '.join(TARGETS)}, comma list, or all (default onnx)")
    parser.add_argument("--out", required=True, help="bundle directory to write")
    parser.add_argument("--int8", action="store_true",
                        help="also export calibrated int8 artifacts (a target whose int8 fails the int8 gates "
                             "keeps its float artifacts; the manifest records why int8 was dropped)")
    parser.add_argument("--require-int8", action="store_true",
                        help="fail (non-zero exit, bundle not written) when a target ends without int8")
    parser.add_argument("--embedding-bits", type=int, choices=[4, 8], default=8,
                        help="ONNX int8: store the word-embedding rows in 4 bits (blockwise, ~half the table's "
                             "size) when accuracy control passes it, else keep 8 (default 8)")
    parser.add_argument("--trim-positions", action="store_true",
                        help="cut the position-embedding table to the rows max_length reads (lossless, checked; "
                             "the artifacts then take no input longer than the bundle's max_length)")
    size = field_default(ExportOptions, "calibration_size")
    parser.add_argument("--calibration-size", type=int, default=size, help=f"calibration texts (default {size})")
    parser.add_argument("--max-accuracy-drop", type=float, default=None,
                        help="int8 accuracy budget on the validation split (default: the int8 accuracy-drop "
                             f"gate, {INT8_MAX_ACCURACY_DROP})")
    precision = field_default(ExportOptions, "coreml_precision")
    parser.add_argument("--coreml-precision", choices=["fp16", "fp32"], default=precision,
                        help=f"Core ML compute precision (default {precision})")
    parser.add_argument("--compute-units", default="ALL", choices=list(COREML_COMPUTE_UNITS),
                        help="Core ML compute units recorded for the runtime (default ALL)")
    parser.add_argument("--force", action="store_true", help="replace an existing bundle")
    add_data_arguments(parser, required=False)
    parser.add_argument("--calibration-data", dest="data", metavar="SPEC", help="same as --data")
    add_gate_arguments(parser)


def run_stage(stage: ExportStage) -> Manifest:
    """Validate everything cheap, load the data, export, print the per-artifact check table; the
    bundle's manifest. `stage.options` is left as it was (the export works on a copy)."""
    from edgekd.exporters.bundle_writer import export_bundle, validate

    model_dir, out = Path(stage.model), Path(stage.out)
    options = replace(stage.options, targets=validate(model_dir, out, stage.options))
    data = _export_data(stage.data, model_dir)
    manifest = export_bundle(model_dir, out, data, options, log=_log)
    _print_summary(manifest)
    return manifest


def stage_from_args(args: argparse.Namespace) -> ExportStage:
    """The stage config of the flags (--target as given: `validate` parses it)."""
    options = ExportOptions(targets=args.target, int8=args.int8, require_int8=args.require_int8,
                            calibration_size=args.calibration_size, gates=gates_from_args(args),
                            max_accuracy_drop=args.max_accuracy_drop, coreml_precision=args.coreml_precision,
                            compute_units=args.compute_units, embedding_bits=args.embedding_bits,
                            trim_positions=args.trim_positions, force=args.force)
    return ExportStage(Path(args.model), Path(args.out), options, data_spec_from_args(args) if args.data else None)


def run(args: argparse.Namespace) -> int:
    run_stage(stage_from_args(args))
    return 0


def _export_data(spec: DataSpec | None, model_dir: Path) -> ExportData:
    from edgekd.data import load_splits
    from edgekd.exporters.bundle_writer import ExportData
    from edgekd.models import checkpoint_labels

    if spec is None:
        from edgekd.checkpoint import CARD, read_card

        recorded = read_card(model_dir).get("data")
        if not recorded:
            raise DataError(f"no data for calibration and the export check: {model_dir / CARD} records no dataset; "
                            f"pass --data DIR (e.g. the dataset the model was trained on)")
        spec = DataSpec(**recorded)
    splits = load_splits(spec, labels=checkpoint_labels(model_dir))
    return ExportData(test_texts=splits.test.texts[:CHECK_POOL],
                      train=(splits.train.texts, splits.train.labels.tolist()),
                      validation=(splits.validation.texts, splits.validation.labels.tolist()),
                      fingerprint=splits.fingerprint, source=str(spec.path))


def _log(message: str) -> None:
    from edgekd.console import make_console

    make_console(stderr=True).print(f"[bold]export[/bold] {message}")


def _print_summary(manifest: Manifest) -> None:
    """The per-artifact check table, then one line per dropped artifact with its reason."""
    from edgekd.console import make_console, print_table
    from edgekd.verify.parity import describe_agreement

    rows = []
    for a in manifest.artifacts:
        p = manifest.parity.get(a.name, {})
        decided = p.get("decision") if p.get("decided_by") else None  # int8: the validation-split decision
        shown = decided if decided and decided.get("n") else p
        rows.append([a.name, f"{a.bytes / 1e6:.1f} MB", p.get("status", "-") + (" (acc. control)" if decided else ""),
                     f"{p['max_abs_logit']:.2e}" if "max_abs_logit" in p else "-",
                     describe_agreement(shown) if "agreement" in shown else "-",
                     p.get("engine", p.get("reason", ""))])
    console = make_console()
    print_table(console, "post-export check (vs PyTorch); int8: accuracy control's decision",
                ("artifact", "size", "status", "max |dlogit|", "agreement (flips of n; 95% CI)", "engine"), rows)
    for drop in manifest.dropped:
        console.print(f"dropped {drop['artifact']} ({drop['stage']}): {drop['reason']}", style="yellow",
                      highlight=False)
