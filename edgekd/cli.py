"""The `edgekd` command. Each verb lives in `edgekd/commands/<verb>.py` with `HELP`,
`add_arguments(parser)` and `run(args) -> int`; those modules import nothing heavy at module
level, so `edgekd --help` and `edgekd predict` never load torch."""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import logging
import sys
import warnings
from collections.abc import Callable, Iterator
from typing import Any

from edgekd.errors import EdgekdError

# The verbs, in the order `edgekd --help` lists them. Adding a verb is one module plus one line here.
COMMANDS: dict[str, str] = {
    "run": "edgekd.commands.run",
    "baseline": "edgekd.commands.baseline",
    "adapt-vocab": "edgekd.commands.adapt_vocab",
    "train": "edgekd.commands.train",
    "distill": "edgekd.commands.distill",
    "evaluate": "edgekd.commands.evaluate",
    "prune-vocab": "edgekd.commands.prune_vocab",
    "export": "edgekd.commands.export",
    "verify": "edgekd.commands.verify",
    "report": "edgekd.commands.report",
    "predict": "edgekd.commands.predict",
    "info": "edgekd.commands.info",
    "pack": "edgekd.commands.pack",
    "serve": "edgekd.commands.serve",
}
# Verbs whose progress bars are edgekd's own (the Trainer's, switched by --no-progress): the
# libraries' tqdm bars stay on for them. Every other verb hides tqdm bars (coremltools draws one
# per MIL pass pipeline and per compression pass) unless --verbose.
OWN_PROGRESS = ("train", "distill", "run")
# Flags of `edgekd` itself, accepted before the verb; --verbose after it too.
GLOBAL_FLAGS = ("--debug", "--verbose")
# One entry per main() running in this process (a test or an app may call main() inside another
# command); a nested command, and each step of `edgekd run` (`verb_context`), inherits --verbose.
_verbose_stack: list[bool] = []


def build_parser() -> argparse.ArgumentParser:
    return _build()[0]


def _build() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    parser = argparse.ArgumentParser(
        prog="edgekd",
        description="Distill, export and verify small text classifiers for edge devices.",
    )
    parser.add_argument("--debug", action="store_true", help="show full tracebacks on errors")
    parser.add_argument("--verbose", action="store_true",
                        help="show the libraries' own warnings, log lines and progress bars (hidden by default)")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    verbs = {}
    for name, module_name in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=module.HELP, description=module.HELP)
        module.add_arguments(p)
        p.add_argument("--verbose", action="store_true", default=argparse.SUPPRESS, help=argparse.SUPPRESS)
        p.set_defaults(_run=module.run, command=name)
        verbs[name] = p
    return parser, verbs


def parse(argv: list[str]) -> argparse.Namespace:
    """Parse `edgekd [--debug] [--verbose] VERB ...`; a verb's options may come after its positional
    arguments too (`edgekd predict bundle/ "a" --json "b"`), and so may --verbose."""
    parser, verbs = _build()
    at = next((i for i, a in enumerate(argv) if a in verbs), None)
    if at is None or any(a not in GLOBAL_FLAGS for a in argv[:at]):
        return parser.parse_args(argv)  # prints usage / --help / the error
    args = verbs[argv[at]].parse_intermixed_args(argv[at + 1 :])
    args.debug = "--debug" in argv[:at]
    args.verbose = getattr(args, "verbose", False) or "--verbose" in argv[:at]
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse(list(sys.argv[1:] if argv is None else argv))
    verbose = args.verbose or any(_verbose_stack)
    _verbose_stack.append(verbose)
    try:
        with contextlib.nullcontext() if verbose else _libraries_quiet(args.command not in OWN_PROGRESS):
            return _run(args)
    finally:
        _verbose_stack.pop()


def verb_context(verb: str) -> contextlib.AbstractContextManager[None]:
    """What main() runs `verb` inside, for a verb called directly within a running command (each stage of
    `edgekd run`): the libraries quieted as for `edgekd VERB`, unless the command runs with --verbose."""
    if any(_verbose_stack):
        return contextlib.nullcontext()
    return _libraries_quiet(verb not in OWN_PROGRESS)


@contextlib.contextmanager
def _libraries_quiet(hide_bars: bool = True) -> Iterator[None]:
    """Hide the libraries' noise for one command, then put things back (tests call main()
    in-process, and `edgekd run` quiets each stage as its verb would be): their log records below ERROR (coremltools' `Failed to load
    _MLModelProxy` and version notices, transformers, optimum, NNCF and onnxruntime warnings),
    their Python warnings (torch.jit TracerWarning, numpy RuntimeWarning) and NNCF's progress bars.

    Done here, at the entry point, because it is process-wide: a library embedded in someone's
    app leaves logging and warnings as it found them. Logger levels would not hold: NNCF sets its
    logger's level when imported, transformers and optimum on first use, and onnxruntime logs on
    the root logger, so `logging.disable` is the one switch they do not reset. edgekd itself
    prints (rich) and neither logs nor warns, so nothing of ours is hidden; errors still show.
    With `hide_bars`, tqdm bars are off too (tqdm reads TQDM_DISABLE only when imported, so the
    one runtime switch is its constructor's `disable` default, set here and put back after)."""
    from rich import get_console

    progress = get_console()  # NNCF's progress bars draw on rich's global console; ours do not
    was_disabled, was_quiet = logging.root.manager.disable, progress.quiet
    logging.disable(logging.WARNING)
    progress.quiet = True
    try:
        with warnings.catch_warnings(), (_tqdm_off() if hide_bars else contextlib.nullcontext()):
            warnings.simplefilter("ignore")
            warnings.filterwarnings("default", module=r"edgekd(\.|$)")
            yield
    finally:
        logging.disable(was_disabled)
        progress.quiet = was_quiet


@contextlib.contextmanager
def _tqdm_off() -> Iterator[None]:
    """tqdm bars created inside are disabled (an explicit disable= argument still wins)."""
    try:
        from tqdm import std
    except ImportError:  # no tqdm installed: no bars to hide
        yield
        return
    init = std.tqdm.__init__
    std.tqdm.__init__ = functools.partialmethod(init, disable=True)
    try:
        yield
    finally:
        std.tqdm.__init__ = init


def _run(args: argparse.Namespace) -> int:
    return _guarded(args.command, lambda: args._run(args), args.debug)


def _guarded(verb: str, call: Callable[[], Any], debug: bool = False) -> int:
    """`call()`'s exit status as `edgekd VERB` reports it: an EdgekdError as one line on stderr and its
    exit code (raised with `debug`), Ctrl-C as 130."""
    try:
        result = call()
        return result if isinstance(result, int) and not isinstance(result, bool) else 0
    except EdgekdError as exc:
        if debug:
            raise
        print(f"edgekd {verb}: error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"edgekd {verb}: interrupted", file=sys.stderr)
        return 130


def run_verb(verb: str, call: Callable[[], Any]) -> int:
    """Run a verb's stage function as `edgekd VERB` runs it, in a process of its own (an isolated step of
    `edgekd.steps.Runner`): the libraries quieted as for that verb, errors as one line and an exit code."""
    with verb_context(verb):
        return _guarded(verb, call)


if __name__ == "__main__":
    sys.exit(main())
