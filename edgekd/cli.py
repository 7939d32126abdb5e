"""The `edgekd` command. Each verb lives in `edgekd/commands/<verb>.py` with `HELP`,
`add_arguments(parser)` and `run(args) -> int`; those modules import nothing heavy at module
level, so `edgekd --help` and `edgekd predict` never load torch."""

from __future__ import annotations

import argparse
import importlib
import sys

from edgekd.errors import EdgekdError

# The verbs, in the order `edgekd --help` lists them. Adding a verb is one module plus one line here.
COMMANDS: dict[str, str] = {
    "run": "edgekd.commands.run",
    "baseline": "edgekd.commands.baseline",
    "train": "edgekd.commands.train",
    "distill": "edgekd.commands.distill",
    "evaluate": "edgekd.commands.evaluate",
    "export": "edgekd.commands.export",
    "verify": "edgekd.commands.verify",
    "report": "edgekd.commands.report",
    "predict": "edgekd.commands.predict",
    "info": "edgekd.commands.info",
}


def build_parser() -> argparse.ArgumentParser:
    return _build()[0]


def _build() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="edgekd",
        description="Distill, export and verify small text classifiers for edge devices.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    verbs = {}
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.set_defaults(_run=module.run, command=name)
        verbs[name] = p
    return parser, verbs


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse `edgekd [--debug] VERB ...`; a verb's options may come after its positional
    arguments too (`edgekd predict bundle/ "a" --json "b"`)."""
    parser, verbs = _build()
    at = next((i for i, a in enumerate(argv) if a in verbs), None)
    if at is None or any(a not in ("--debug",) for a in argv[:at]):
        return parser.parse_args(argv)  # prints usage / --help / the error
    args = verbs[argv[at]].parse_intermixed_args(argv[at + 1 :])
    args.debug = "--debug" in argv[:at]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(list(sys.argv[1:] if argv is None else argv))
    try:
        return int(args._run(args) or 0)
    except EdgekdError as exc:
        if args.debug:
            raise
        print(f"edgekd {args.command}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"edgekd {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
