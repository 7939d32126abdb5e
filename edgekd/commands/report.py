"""`edgekd report a.json b.json --out report.html`: merge verification reports from several devices
into one side-by-side HTML page (and report.md beside it)."""

from __future__ import annotations

import argparse
from pathlib import Path

HELP = "merge verification reports from several devices into one HTML + Markdown comparison"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("reports", nargs="+", type=Path, help="report JSON files (bundle/reports/*.json)")
    parser.add_argument("--out", type=Path, default=Path("report.html"), help="HTML output; the .md goes beside it")


def run(args: argparse.Namespace) -> int:
    from edgekd.verify.merge import write_merged

    paths = write_merged(args.reports, args.out)
    print(f"merged {len(args.reports)} report(s): {paths['html']} and {paths['md']}")
    return 0
