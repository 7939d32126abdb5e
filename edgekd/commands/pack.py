"""`edgekd pack BUNDLE --out model.zip`: the bundle as one deterministic .zip, checked first.

    edgekd pack bundle/ --out model.zip            (refuses an existing model.zip)
    edgekd pack bundle/ --out model.zip --force    (replaces it, atomically)

`edgekd.load`, `edgekd predict`, `edgekd verify`, `edgekd info` and `edgekd serve` take the zip as
they take the directory. Torch-free.
"""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "pack a checked bundle into one deterministic .zip that load, predict, verify, info and serve read as is"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle directory (or a .zip of one, repacked)")
    parser.add_argument("--out", type=Path, required=True, help="the zip to write, e.g. model.zip")
    parser.add_argument("--force", action="store_true", help="replace --out if it exists")
    parser.add_argument("--no-reports", action="store_true",
                        help="leave reports/ out (by default the zip keeps the bundle's verification reports, "
                             "which edgekd serve shows on /report and /info)")


def run(args: argparse.Namespace) -> int:
    """Check the bundle (manifest, contract, every artifact's sha256), pack it, print the zip's size."""
    from edgekd.commands.info import _size
    from edgekd.pack import pack_bundle

    result = pack_bundle(args.bundle, args.out, force=args.force, reports=not args.no_reports)
    files = sum(not n.endswith("/") for n in result.entries)
    print(f"{result.out}: {_size(result.bytes)} ({files} files, {_size(result.unpacked_bytes)} unpacked), "
          f"sha256 {result.sha256}")
    if result.left_out:
        shown = ", ".join(result.left_out[:5]) + (f" and {len(result.left_out) - 5} more" if len(result.left_out) > 5
                                                 else "")
        print(f"not packed (not part of the bundle): {shown}")
    return 0
