"""`edgekd adapt-vocab MODEL --data D --size 16000 --out DIR`: the base model with a WordPiece vocabulary
trained on the dataset's training texts, new embeddings initialised by FVT; fine-tune it with
`edgekd train --model DIR` (see `edgekd/train/adapt.py`)."""

from __future__ import annotations

import argparse
import shutil
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

from edgekd.commands._common import Stage, add_data_arguments, data_flags, data_spec_from_args
from edgekd.data import DataSpec
from edgekd.errors import ModelError
from edgekd.train.mlm import MlmConfig

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
    mlm: MlmConfig = field(default_factory=MlmConfig)  # epochs 0: no masked-LM pre-training

    def command(self) -> list[str]:
        default, m = MlmConfig(), self.mlm
        mlm = [*(["--mlm-epochs", f"{m.epochs:g}"] if m.epochs else []),
               *(["--mlm-lr", f"{m.lr:g}"] if m.lr != default.lr else []),
               *(["--mlm-max-length", str(m.max_length)] if m.max_length != default.max_length else []),
               *(["--mlm-batch-size", str(m.batch_size)] if m.batch_size != default.batch_size else [])]
        return ["adapt-vocab", self.model, *data_flags(self.data), "--size", str(self.size), "--out", str(self.out),
                *mlm, *(["--force"] if self.force else [])]


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="base model: hub id, local checkpoint dir or offline package id "
                        "(BERT-family, WordPiece), e.g. sentence-transformers/all-MiniLM-L6-v2")
    add_data_arguments(parser, required=True)
    parser.add_argument("--size", type=int, required=True, metavar="N",
                        help="vocabulary size, special tokens and characters included (e.g. 8000, 16000, 32000)")
    parser.add_argument("--out", required=True, help="directory for the adapted base model (then: edgekd train "
                        "--model DIR)")
    parser.add_argument("--force", action="store_true", help="replace an existing --out directory")
    group = parser.add_argument_group("masked-LM pre-training (after the swap, on the training texts only)")
    default = MlmConfig()
    group.add_argument("--mlm-epochs", type=float, default=0.0, metavar="N",
                       help="epochs of masked-LM training on the training split's texts, so the new embeddings "
                       "and the layers learn the language before fine-tuning (default: 0 = none)")
    group.add_argument("--mlm-lr", type=float, default=default.lr, help=f"its peak learning rate (default: {default.lr:g})")
    group.add_argument("--mlm-max-length", type=int, default=default.max_length,
                       help=f"its token window (default: {default.max_length})")
    group.add_argument("--mlm-batch-size", type=int, default=default.batch_size,
                       help=f"its batch size (default: {default.batch_size})")


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
    m = stage.mlm
    if m.epochs < 0 or m.lr <= 0 or m.max_length < 8 or m.batch_size < 1:
        raise ModelError("--mlm-epochs must be >= 0, --mlm-lr > 0, --mlm-max-length >= 8 and --mlm-batch-size "
                         f">= 1; got {m.epochs:g}, {m.lr:g}, {m.max_length}, {m.batch_size}")
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
    r = adapt_vocab(stage.model, splits, out, stage.size, log=lambda m: console.print(f"adapt-vocab: {m}"),
                    mlm=stage.mlm, seed=stage.data.seed)
    b, a = r["before"], r["after"]
    print_table(console, f"vocabulary adaptation ({r['measured_on']})", ("", "before", "after"), [
        ["vocab size", f"{r['original_vocab_size']:,}", f"{r['vocab_size']:,}"],
        ["tokens per 1,000 characters", f"{b['tokens_per_1000_chars']:.1f}", f"{a['tokens_per_1000_chars']:.1f}"],
        ["[UNK] rate", f"{b['unk_rate']:.4%}", f"{a['unk_rate']:.4%}"],
        ["new embeddings: copied / mean of pieces / [UNK]", "",
         " / ".join(f"{r['init'][k]:,}" for k in ("copied", "mean_of_pieces", "unk"))],
        *([["masked-LM held-out loss", f"{r['mlm']['held_out']['before']['loss']:.3f}",
            f"{r['mlm']['held_out']['after']['loss']:.3f}"],
           ["masked-token accuracy", f"{r['mlm']['held_out']['before']['accuracy']:.3f}",
            f"{r['mlm']['held_out']['after']['accuracy']:.3f}"]] if "mlm" in r else [])])
    from edgekd.checkpoint import CARD

    console.print(f"wrote {out} (card: {out / CARD}, key vocab_adaptation); next: "
                  f"edgekd train --model {out} --data ...")
    return r


def stage_from_args(args: argparse.Namespace) -> AdaptVocabStage:
    """The stage config of the flags."""
    return AdaptVocabStage(args.model, data_spec_from_args(args), args.size, Path(args.out), args.force,
                           MlmConfig(args.mlm_epochs, args.mlm_lr, args.mlm_max_length, args.mlm_batch_size))


def run(args: argparse.Namespace) -> int:
    run_stage(stage_from_args(args))
    return 0
