"""The `edgekd` command: every verb of the design is listed, options may follow positionals, and a
bad invocation exits non-zero without a traceback."""

from __future__ import annotations

import re
import subprocess
import sys

import pytest

from edgekd.cli import COMMANDS, main, parse

DESIGN_VERBS = ["run", "adapt-vocab", "train", "distill", "baseline", "evaluate", "prune-vocab", "export", "verify", "report", "predict", "info", "pack", "serve"]


def test_help_lists_every_design_verb() -> None:
    out = subprocess.run([sys.executable, "-m", "edgekd", "--help"], capture_output=True, text=True, check=True)
    for verb in DESIGN_VERBS:
        # a long verb (prune-vocab) has its help on the next line
        assert re.search(rf"^    {re.escape(verb)}\s", out.stdout, re.M), verb
    assert sorted(COMMANDS) == sorted(DESIGN_VERBS)
    assert "not built yet" not in out.stdout


def test_options_may_follow_positional_texts() -> None:
    args = parse(["predict", "bundle/", "first text", "--json", "second text"])
    assert (args.command, args.bundle, args.texts, args.json, args.debug) == (
        "predict", "bundle/", ["first text", "second text"], True, False)
    assert parse(["--debug", "info", "b/"]).debug is True


def test_bad_input_is_one_line_and_exit_2(tmp_path, capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["info", str(tmp_path / "missing")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2
    assert len(err) == 1 and err[0].startswith("edgekd info: error:") and "missing" in err[0]


def test_unknown_verb_is_a_usage_error() -> None:
    with pytest.raises(SystemExit) as exc:
        parse(["frobnicate"])
    assert exc.value.code == 2
