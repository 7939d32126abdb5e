"""edgekd.console: tables whole in logs and CI, folded on a terminal."""

from __future__ import annotations

import io
from pathlib import Path

import pytest
from conftest import read_texts
from rich.console import Console
from rich.table import Table
from rich.text import Text

from edgekd import cli
from edgekd.console import make_console, print_table

LONG_PATH = "/runs/ag_news/students/layers-3-hidden-384/bundle/openvino/model-a.xml"  # 70 characters
ROWS = [["openvino-int8", LONG_PATH, Text("PASS", style="green")], ["onnx-fp32", "onnx/model.onnx", "FAIL"]]


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
def bundle(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from edgekd.exporters.bundle_writer import ExportData, ExportOptions, export_bundle

    out = tmp_path_factory.mktemp("console") / "bundle"
    texts, _ = read_texts("ag_news", "test", 24)
    export_bundle(tiny_bert, out, ExportData(test_texts=texts), ExportOptions(targets=["onnx"], check_per_class=8),
                  log=lambda m: None)
    return out


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
