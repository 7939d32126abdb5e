"""`edgekd prune-vocab CHECKPOINT --data D --out DIR`: a checkpoint whose vocabulary holds only the
tokens the dataset uses (plus special tokens and single characters); see `edgekd/train/vocab.py`."""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from edgekd.commands._common import Stage, add_data_arguments, data_flags, data_spec_from_args
from edgekd.data import DataSpec
from edgekd.errors import ModelError

HELP = "prune a checkpoint's vocabulary to the tokens its training data uses (smaller embeddings)"


@dataclass
class PruneVocabStage(Stage):
    """Prune `checkpoint`'s vocabulary to the tokens `data`'s train + validation texts use at least
    `min_count` times, into `out` (replaced when `force`)."""

    VERB: ClassVar[str] = "prune-vocab"
    checkpoint: Path
    data: DataSpec
    out: Path
    min_count: int = 1  # 1: every training text tokenizes exactly as before
    force: bool = False

    def command(self) -> list[str]:
        return ["prune-vocab", str(self.checkpoint), *data_flags(self.data), "--out", str(self.out),
                *(["--force"] if self.force else []), "--min-count", str(self.min_count)]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("checkpoint", metavar="CHECKPOINT", help="BERT-family checkpoint directory (WordPiece)")
    add_data_arguments(parser, required=True)
    parser.add_argument("--out", required=True, help="directory for the pruned checkpoint")
    min_count = PruneVocabStage.min_count
    parser.add_argument("--min-count", type=int, default=min_count, metavar="N",
                        help=f"keep tokens seen at least N times in the train + validation texts (default: {min_count}: "
                             "every training text tokenizes exactly as before)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out directory")


def run_stage(stage: PruneVocabStage) -> dict[str, Any]:
    """Check, load the data, prune, print the before/after table; prune_vocab's record."""
    from edgekd.console import make_console, print_table
    from edgekd.data import load_splits
    from edgekd.models import checkpoint_labels
    from edgekd.train.vocab import check_prunable, prune_vocab

    model_dir, out = Path(stage.checkpoint), Path(stage.out)
    if stage.min_count < 1:
        raise ModelError(f"--min-count must be at least 1, got {stage.min_count}")
    check_prunable(model_dir)
    if out.exists():
        if not stage.force:
            raise ModelError(f"--out {out} exists; pass --force to replace it")
        if out.resolve() == model_dir.resolve():
            raise ModelError("--out is the checkpoint itself; give a new directory")
    splits = load_splits(stage.data, labels=checkpoint_labels(model_dir))
    console = make_console()
    if out.exists():
        shutil.rmtree(out)
    r = prune_vocab(model_dir, splits, out, stage.min_count, log=lambda m: console.print(f"prune-vocab: {m}"))
    tb, ta = r["test_before"], r["test_after"]
    print_table(console, f"vocabulary pruning (min_count {r['min_count']}; test split, {r['test_texts']} texts)",
                ("", "before", "after"), [
                    ["vocab size", f"{r['original_vocab_size']:,}", f"{r['vocab_size']:,}"],
                    ["parameters", f"{r['params_before']:,}", f"{r['params_after']:,}"],
                    ["weights", f"{r['weights_bytes_before'] / 1e6:.1f} MB", f"{r['weights_bytes_after'] / 1e6:.1f} MB"],
                    ["[UNK] rate", f"{tb['unk_rate']:.4%}", f"{ta['unk_rate']:.4%}"],
                    ["tokens per text", f"{tb['tokens_per_text']:.2f}", f"{ta['tokens_per_text']:.2f}"],
                    ["accuracy", _pct(r["accuracy_unpruned"]), _pct(r["accuracy"])],
                    ["top-1 agreement", "", _pct(r["agreement"])],
                    ["train texts with the same tokens", "", _pct(r["fit_texts_same_tokens"])]])
    from edgekd.checkpoint import CARD

    console.print(f"wrote {out} (card: {out / CARD}, key vocab_pruning)")
    return r


def stage_from_args(args: argparse.Namespace) -> PruneVocabStage:
    """The stage config of the flags."""
    return PruneVocabStage(Path(args.checkpoint), data_spec_from_args(args), Path(args.out), args.min_count,
                           args.force)


def run(args: argparse.Namespace) -> int:
    run_stage(stage_from_args(args))
    return 0


def _pct(x: float | None) -> str:
    return "-" if x is None else f"{x:.2%}"
