"""`edgekd adapt-vocab MODEL --data D --size 16000 --out DIR`: the base model with a WordPiece vocabulary
trained on the dataset's training texts, new embeddings initialised by FVT; fine-tune it with
`edgekd train --model DIR` (see `edgekd/train/adapt.py`)."""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, ClassVar

from edgekd.commands._common import Stage, add_data_arguments, data_flags, data_spec_from_args
from edgekd.data import DataSpec
from edgekd.errors import ModelError

HELP = "give a base model a vocabulary trained on the dataset (a new language), embeddings by FVT"


@dataclass
class AdaptVocabStage(Stage):
    """Give the base `model` a WordPiece vocabulary of `size` tokens trained on `data`'s training texts,
    into `out` (replaced when `force`)."""

    VERB: ClassVar[str] = "adapt-vocab"
    model: str
    data: DataSpec
    size: int
    out: Path
    force: bool = False

    def command(self) -> list[str]:
        return ["adapt-vocab", self.model, *data_flags(self.data), "--size", str(self.size), "--out", str(self.out),
                *(["--force"] if self.force else [])]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="base model: hub id, local checkpoint dir or offline package id "
                        "(BERT-family, WordPiece), e.g. sentence-transformers/all-MiniLM-L6-v2")
    add_data_arguments(parser, required=True)
    parser.add_argument("--size", type=int, required=True, metavar="N",
                        help="vocabulary size, special tokens and characters included (e.g. 8000, 16000, 32000)")
    parser.add_argument("--out", required=True, help="directory for the adapted base model (then: edgekd train "
                        "--model DIR)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out directory")


def run_stage(stage: AdaptVocabStage) -> dict[str, Any]:
    """Check, load the data, adapt, print the before/after table; adapt_vocab's record."""
    from edgekd.console import make_console, print_table
    from edgekd.data import load_splits
    from edgekd.models import resolve_model
    from edgekd.train.adapt import MIN_SIZE, VERB, adapt_vocab
    from edgekd.train.vocab import check_prunable

    out = Path(stage.out)
    if stage.size < MIN_SIZE:
        raise ModelError(f"--size must be at least {MIN_SIZE}, got {stage.size}")
    base = Path(resolve_model(stage.model))
    check_prunable(base, VERB)
    if out.exists():
        if not stage.force:
            raise ModelError(f"--out {out} exists; pass --force to replace it")
        if out.resolve() == base.resolve():
            raise ModelError("--out is the model itself; give a new directory")
    splits = load_splits(stage.data)
    console = make_console()
    if out.exists():
        shutil.rmtree(out)
    r = adapt_vocab(stage.model, splits, out, stage.size, log=lambda m: console.print(f"adapt-vocab: {m}"))
    b, a = r["before"], r["after"]
    print_table(console, f"vocabulary adaptation ({r['measured_on']})", ("", "before", "after"), [
        ["vocab size", f"{r['original_vocab_size']:,}", f"{r['vocab_size']:,}"],
        ["tokens per 1,000 characters", f"{b['tokens_per_1000_chars']:.1f}", f"{a['tokens_per_1000_chars']:.1f}"],
        ["[UNK] rate", f"{b['unk_rate']:.4%}", f"{a['unk_rate']:.4%}"],
        ["new embeddings: copied / mean of pieces / [UNK]", "",
         " / ".join(f"{r['init'][k]:,}" for k in ("copied", "mean_of_pieces", "unk"))]])
    from edgekd.checkpoint import CARD

    console.print(f"wrote {out} (card: {out / CARD}, key vocab_adaptation); next: "
                  f"edgekd train --model {out} --data ...")
    return r


def stage_from_args(args: argparse.Namespace) -> AdaptVocabStage:
    """The stage config of the flags."""
    return AdaptVocabStage(args.model, data_spec_from_args(args), args.size, Path(args.out), args.force)


def run(args: argparse.Namespace) -> int:
    run_stage(stage_from_args(args))
    return 0
