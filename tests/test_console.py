"""edgekd.console (tables whole in logs and CI, folded on a terminal) and the CLI's quiet default
(library warnings, log lines and progress bars hidden unless --verbose)."""

from __future__ import annotations

import io
import logging
import subprocess
import sys
import warnings
from pathlib import Path

import pytest
from conftest import SHARED_DATA
from rich.console import Console
from rich.table import Table
from rich.text import Text

from edgekd import cli
from edgekd.console import make_console, print_table

LONG_PATH = "/runs/ag_news/students/layers-3-hidden-384/bundle/openvino/model-a.xml"  # 70 characters
ROWS = [["openvino-int8", LONG_PATH, Text("PASS", style="green")], ["onnx-fp32", "onnx/model.onnx", "FAIL"]]
NOISE = ("MLModelProxy", "has not been tested", "TracerWarning", "Running MIL")  # the last: coremltools tqdm bars


def test_table_in_a_log_keeps_every_cell_whole() -> None:
    """Not a terminal, 80 columns (CI): plain aligned text, no cell cut, no ellipsis."""
    assert len(LONG_PATH) == 70
    log = Console(file=io.StringIO(), width=80)
    print_table(log, "post-export check", ["artifact", "path", "result"], ROWS, justify=["left", "left", "right"])
    lines = log.file.getvalue().splitlines()
    assert lines[0] == "post-export check"
    assert lines[1].split() == ["artifact", "path", "result"]
    assert lines[3].split() == ["openvino-int8", LONG_PATH, "PASS"]
    assert lines[4].split() == ["onnx-fp32", "onnx/model.onnx", "FAIL"]
    # aligned: every row's path starts in the same column, results are right-aligned
    assert lines[3].index(LONG_PATH) == lines[4].index("onnx/model.onnx") == lines[1].index("path")
    assert len(lines[3]) == len(lines[4]) == len(lines[1]) > 80
    assert "…" not in log.file.getvalue()


def test_cells_are_text_not_markup() -> None:
    log = Console(file=io.StringIO(), width=80)
    print_table(log, "labels", ["label"], [["[neg]"], ["[bold]x"]])
    assert log.file.getvalue().split()[3:] == ["[neg]", "[bold]x"]


def test_table_on_a_terminal_folds_long_cells() -> None:
    tty = Console(file=io.StringIO(), width=80, force_terminal=True, color_system=None)
    print_table(tty, "post-export check", ["artifact", "path", "result"], ROWS)
    out = tty.file.getvalue()
    assert "…" not in out and "openvino-int8" in out and "┃" in out
    path_column = "".join(line.split("│")[2].strip() for line in out.splitlines() if line.startswith("│"))
    assert LONG_PATH in path_column  # folded over lines, not cut


def test_console_off_a_terminal_never_truncates_rich_tables(capsys: pytest.CaptureFixture[str],
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    """Tables other modules build (metrics, data report) print through this console whole too."""
    monkeypatch.setenv("COLUMNS", "80")
    table = Table("artifact", "path", title="built elsewhere")
    table.add_row("openvino-int8", LONG_PATH)
    console = make_console()
    console.print(table)
    console.print(f"report: {LONG_PATH}{LONG_PATH}")
    out = capsys.readouterr().out
    assert "openvino-int8" in out and LONG_PATH in out and f"report: {LONG_PATH}{LONG_PATH}\n" in out
    assert "…" not in out


@pytest.fixture(scope="module")
def bundle(tiny_onnx_bundle: Path) -> Path:
    return tiny_onnx_bundle


def test_info_in_80_columns_prints_whole_cells(bundle: Path, capsys: pytest.CaptureFixture[str],
                                               monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.bundle import read_manifest

    monkeypatch.setenv("COLUMNS", "80")
    manifest = read_manifest(bundle)
    assert cli.main(["info", str(bundle)]) == 0
    out = capsys.readouterr().out
    engine = manifest.parity["onnx-fp32"]["engine"]
    assert len(engine) > 30  # "onnxruntime 1.xx CPUExecutionProvider", cut to "onnxrun…" before
    for whole in ("onnx-fp32", "onnx/model.onnx", engine, manifest.contract, ", ".join(manifest.labels)):
        assert whole in out, whole
    assert "…" not in out


def test_verbose_is_accepted_before_and_after_the_verb() -> None:
    assert cli.parse(["--verbose", "info", "b"]).verbose
    assert cli.parse(["info", "b", "--verbose"]).verbose
    assert cli.parse(["--debug", "--verbose", "info", "b"]).debug
    args = cli.parse(["info", "b"])
    assert not args.verbose and not args.debug


def _noisy_verb(monkeypatch: pytest.MonkeyPatch, seen: list[dict]) -> None:
    """`edgekd info X` replaced by a verb that logs and draws a progress bar as the libraries do;
    `info outer` runs `info inner` in-process, as `edgekd run` runs its steps."""
    from rich.progress import track

    def run(args: object) -> int:
        bundle = args.bundle  # type: ignore[attr-defined]
        logging.getLogger("coremltools").warning("Failed to load _MLModelProxy: (test)")
        list(track(range(3), description="Statistics collection"))  # NNCF's progress bar: rich's global console
        seen.append({"bundle": bundle, "log_disabled": logging.root.manager.disable})
        if bundle == "outer":
            cli.main(["info", "inner"])
        return 0

    monkeypatch.setattr("edgekd.commands.info.run", run)


def test_library_noise_hidden_by_default_and_state_restored(monkeypatch: pytest.MonkeyPatch,
                                                            caplog: pytest.LogCaptureFixture,
                                                            capsys: pytest.CaptureFixture[str]) -> None:
    from rich import get_console

    seen: list[dict] = []
    _noisy_verb(monkeypatch, seen)
    before = (logging.root.manager.disable, list(warnings.filters), get_console().quiet)
    caplog.set_level(logging.INFO)
    assert cli.main(["info", "outer"]) == 0
    assert [s["bundle"] for s in seen] == ["outer", "inner"]
    assert all(s["log_disabled"] == logging.WARNING for s in seen)
    assert "MLModelProxy" not in caplog.text
    assert "Statistics collection" not in capsys.readouterr().out
    assert (logging.root.manager.disable, list(warnings.filters), get_console().quiet) == before


def test_verbose_shows_library_noise_in_nested_steps_too(monkeypatch: pytest.MonkeyPatch,
                                                         caplog: pytest.LogCaptureFixture,
                                                         capsys: pytest.CaptureFixture[str]) -> None:
    seen: list[dict] = []
    _noisy_verb(monkeypatch, seen)
    caplog.set_level(logging.INFO)
    assert cli.main(["--verbose", "info", "outer"]) == 0
    assert [s["log_disabled"] for s in seen] == [logging.NOTSET, logging.NOTSET]  # the inner step inherits
    assert caplog.text.count("Failed to load _MLModelProxy") == 2
    assert capsys.readouterr().out.count("Statistics collection") == 2


def test_warnings_hidden_unless_verbose(monkeypatch: pytest.MonkeyPatch) -> None:
    def run(args: object) -> int:
        warnings.warn("TracerWarning-like library warning", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setattr("edgekd.commands.info.run", run)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cli.main(["info", "b"])
        assert caught == []
        cli.main(["info", "b", "--verbose"])
        assert [str(w.message) for w in caught] == ["TracerWarning-like library warning"]


def _export(tiny_bert: Path, out: Path, *flags: str) -> subprocess.CompletedProcess[str]:
    # A fresh process: coremltools' notices come once per process, when it is first imported.
    argv = [sys.executable, "-m", "edgekd", *flags, "export", str(tiny_bert), "--target", "onnx,coreml",
            "--data", str(SHARED_DATA / "ag_news"), "--max-train-samples", "100", "--out", str(out)]
    return subprocess.run(argv, capture_output=True, text=True, timeout=600, check=False)


def test_export_is_quiet_by_default_and_verbose_shows_the_libraries(tiny_bert: Path, tmp_path: Path) -> None:
    quiet = _export(tiny_bert, tmp_path / "quiet")
    assert quiet.returncode == 0, quiet.stderr
    assert "onnx-fp32" in quiet.stdout and "coreml-fp16" in quiet.stdout
    for noise in NOISE:
        assert noise not in quiet.stdout + quiet.stderr, noise
    assert "export wrote" in quiet.stderr  # our own progress lines still show

    verbose = _export(tiny_bert, tmp_path / "verbose", "--verbose")
    assert verbose.returncode == 0, verbose.stderr
    assert verbose.stderr.count("Failed to load _MLModelProxy") >= 1
    for noise in NOISE:
        assert noise in verbose.stderr, noise
