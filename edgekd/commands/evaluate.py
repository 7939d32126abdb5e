"""`edgekd evaluate MODEL`: test-split metrics of a baseline directory or a Hugging Face checkpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from edgekd.commands._common import add_data_arguments, data_spec_from_args
from edgekd.errors import ModelError

HELP = "evaluate a baseline dir or a checkpoint on the test split: metrics.json, table, PNG plots"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", metavar="MODEL", help="baseline directory or Hugging Face checkpoint directory")
    add_data_arguments(parser, required=False)
    parser.add_argument("--out", help="where metrics.json and the PNGs go (default: the MODEL directory)")
    parser.add_argument("--batch-size", type=int, default=32, help="inference batch size (default: 32)")
    parser.epilog = "Without --data, the dataset recorded with the model (edgekd-model.json) is used."


def run(args: argparse.Namespace) -> int:
    from edgekd.console import make_console
    from edgekd.data import load_splits, print_data_report
    from edgekd.metrics import evaluate_logits, print_metrics, split_counts, write_metrics
    from edgekd.train.baseline import is_baseline_dir

    model_dir = Path(args.model)
    if not model_dir.is_dir():
        raise ModelError(f"model '{args.model}' is not a directory; give a baseline dir or a checkpoint dir")
    if args.batch_size < 1:
        raise ModelError(f"--batch-size must be at least 1, got {args.batch_size}")
    baseline = is_baseline_dir(model_dir)
    if not baseline and not (model_dir / "config.json").is_file():
        raise ModelError(f"'{args.model}' holds neither baseline.json nor config.json; give a "
                         "directory written by 'edgekd baseline' or 'edgekd train'")
    spec = _spec(args, model_dir)
    labels = _model_labels(model_dir, baseline)
    splits = load_splits(spec, labels=labels)  # label ids follow the model's label order
    console = make_console()
    print_data_report(splits, console)
    logits = _baseline_logits(model_dir, splits.test.texts) if baseline else _checkpoint_logits(
        model_dir, splits.test.texts, args.batch_size, console)
    metrics = evaluate_logits(logits, splits.test.labels, splits.labels)
    metrics.update({"model": str(model_dir), "dataset_fingerprint": splits.fingerprint,
                    "data": spec.to_dict()})
    out = Path(args.out) if args.out else model_dir
    write_metrics(metrics, out, split_counts(splits.report), title="(test)")
    print_metrics(metrics, title=f"{model_dir.name}, test split", console=console)
    console.print(f"wrote {out / 'metrics.json'}")
    return 0


def _spec(args: argparse.Namespace, model_dir: Path) -> Any:
    """The DataSpec from the flags, or the one recorded with the model when --data is absent."""
    from dataclasses import fields

    from edgekd.data import DataSpec

    if args.data is not None:
        return data_spec_from_args(args)
    from edgekd.checkpoint import read_card

    metrics = model_dir / "metrics.json"
    for recorded in (read_card(model_dir).get("data"),
                     json.loads(metrics.read_text(encoding="utf-8")).get("data") if metrics.is_file() else None):
        if isinstance(recorded, dict) and recorded.get("path"):
            known = {f.name for f in fields(DataSpec)}
            return DataSpec(**{k: v for k, v in recorded.items() if k in known})
    raise ModelError(f"no dataset recorded with '{model_dir}'; pass --data DIR_OR_FILE")


def _model_labels(model_dir: Path, baseline: bool) -> list[str]:
    if baseline:
        return json.loads((model_dir / "baseline.json").read_text(encoding="utf-8"))["labels"]
    from edgekd.models import checkpoint_labels

    return checkpoint_labels(model_dir)


def _baseline_logits(model_dir: Path, texts: list[str]) -> Any:
    from edgekd.train.baseline import load_baseline

    return load_baseline(model_dir).logits(texts)


def _checkpoint_logits(model_dir: Path, texts: list[str], batch_size: int, console: Any) -> Any:
    """logits: [len(texts), num_labels] in dataset order, with a progress bar over chunks."""
    import numpy as np
    from rich.progress import Progress

    from edgekd.train.infer import load_checkpoint, torch_logits

    model, tokenizer = load_checkpoint(model_dir)
    from edgekd.checkpoint import card_max_length, read_card

    max_length = card_max_length(read_card(model_dir))
    chunk = batch_size * 8
    parts = []
    with Progress(console=console, transient=True) as progress:
        task = progress.add_task(f"evaluating (max_length {max_length})", total=len(texts))
        for i in range(0, len(texts), chunk):
            parts.append(torch_logits(model, tokenizer, texts[i : i + chunk], max_length, batch_size))
            progress.advance(task, len(parts[-1]))
    return np.concatenate(parts) if parts else np.zeros((0, model.config.num_labels), np.float32)
