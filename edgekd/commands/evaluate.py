"""`edgekd evaluate` (not built yet)."""

from __future__ import annotations

import argparse

from edgekd.errors import EdgekdError

HELP = "(not built yet) evaluate"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise EdgekdError("'edgekd evaluate' is not built yet")
