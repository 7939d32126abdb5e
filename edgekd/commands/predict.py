"""`edgekd predict bundle/ "text" ["text" ...]`: label and score per text, torch-free.

    edgekd predict bundle/ "some text" "other text"
    edgekd predict bundle.zip --file texts.txt --json      (one text per line; blank lines skipped)
    edgekd predict bundle/ --file - --backend onnx --precision fp32   (texts from stdin)

Put options before the bundle or after the texts (`edgekd predict bundle/ "text" --json`).
Plain output is one line per text: `label<TAB>score<TAB>text` (text cut to 60 characters).
`--json` prints one JSON document: {"bundle", "backend", "precision", "engine", "choice", "predictions": [...]},
each prediction {"text", "label", "score", "scores"}; "choice" says why auto picked the artifact
(edgekd/runtimes/choice.py), which `edgekd --verbose predict` also prints to stderr.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from edgekd.errors import DataError, RecipeError

HELP = "predict labels for texts with a bundle (torch-free)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle directory or .zip")
    parser.add_argument("texts", nargs="*", help="texts to classify")
    parser.add_argument("--file", "-f", help="a UTF-8 text file with one text per line ('-' for stdin)")
    parser.add_argument("--json", action="store_true", help="print one JSON document instead of lines")
    parser.add_argument("--backend", default="auto",
                        help="auto (default), onnx, openvino, coreml, coreml-reference, torch")
    parser.add_argument("--precision", default="auto", help="auto (default: fastest measured here, else int8 if "
                                                                 "present), fp32, fp16, int8")
    parser.add_argument("--prefer", default="latency", choices=("latency", "throughput"),
                        help="what auto ranks this device's verify report by: batch-1 p50 (default) or texts/s")
    parser.add_argument("--batch-size", type=int, default=32, help="texts per model call (default 32)")
    parser.add_argument("--threads", type=int, default=None, help="backend intra-op threads (default: backend's)")


def run(args: argparse.Namespace) -> int:
    """Load the bundle, predict every text, print the results."""
    import edgekd

    if args.batch_size < 1:
        raise RecipeError(f"--batch-size must be a positive int, got {args.batch_size}")
    if args.threads is not None and args.threads < 1:
        raise RecipeError(f"--threads must be a positive int, got {args.threads}")
    texts = list(args.texts) + (_read_texts(args.file) if args.file else [])
    if not texts:
        raise DataError("no texts to classify; pass them as arguments or with --file texts.txt")
    clf = edgekd.load(args.bundle, backend=args.backend, precision=args.precision, threads=args.threads,
                      prefer=args.prefer)
    if getattr(args, "verbose", False):
        print(f"edgekd predict: {clf.backend}-{clf.precision} ({clf.choice.rule}: {clf.choice.reason})",
              file=sys.stderr)
    try:
        predictions = clf.predict(texts, batch_size=args.batch_size)
    except ValueError as exc:  # e.g. undecodable bytes in argv arrive as lone surrogates
        raise DataError(str(exc)) from exc
    if args.json:
        doc = {"bundle": str(args.bundle), "backend": clf.backend, "precision": clf.precision, "engine": clf.engine,
               "choice": clf.choice.to_dict(), "predictions": [{"text": t, "label": p.label, "score": p.score, "scores": p.scores}
                               for t, p in zip(texts, predictions, strict=True)]}
        print(json.dumps(doc, ensure_ascii=False, indent=2))
        return 0
    for text, p in zip(texts, predictions, strict=True):
        short = " ".join(text.split())
        short = short if len(short) <= 60 else short[:57] + "..."
        print(f"{p.label}\t{p.score:.4f}\t{short}")
    return 0


def _read_texts(path: str) -> list[str]:
    """Non-blank lines of a UTF-8 file (or stdin for '-'), without their line endings."""
    try:
        raw = sys.stdin.buffer.read() if path == "-" else Path(path).read_bytes()
    except OSError as exc:
        raise DataError(f"cannot read texts file {path} ({exc.strerror}); pass an existing file") from exc
    try:
        content = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise DataError(f"texts file {path} is not valid UTF-8 (byte {exc.start}); re-save it as UTF-8") from exc
    # Split on newlines only (str.splitlines would also split on \x0c, \u2028, ... inside a text).
    lines = (line.removesuffix("\r") for line in content.split("\n"))
    return [line for line in lines if line.strip()]
