"""`edgekd run` (not built yet)."""

from __future__ import annotations

import argparse

from edgekd.errors import EdgekdError

HELP = "(not built yet) run"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    pass


def run(args: argparse.Namespace) -> int:
    raise EdgekdError("'edgekd run' is not built yet")
