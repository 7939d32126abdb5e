"""`edgekd predict`: label and score per text, --file, --json, --backend/--precision, and a one-line
error with exit code 2 on bad input."""

from __future__ import annotations

import io
import json
import sys
from pathlib import Path

import pytest
from conftest import AG_LABELS
from runtime_conformance import build_onnx_bundle

import edgekd
from edgekd.cli import main


@pytest.fixture(scope="module")
def bundle(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_onnx_bundle(tiny_bert, tmp_path_factory.getbasetemp() / "runtime_bundle")


def test_texts_print_label_and_score_per_line(bundle: Path, capsys: pytest.CaptureFixture[str]) -> None:
    texts = ["Stocks fell on Wall Street", "The striker scored twice", ""]
    assert main(["predict", str(bundle), *texts, "--backend", "onnx"]) == 0
    lines = capsys.readouterr().out.splitlines()
    expected = edgekd.load(bundle, backend="onnx").predict(texts)
    assert len(lines) == 3
    for line, text, p in zip(lines, texts, expected, strict=True):
        label, score, shown = line.split("\t")
        assert label == p.label and float(score) == pytest.approx(p.score, abs=1e-4) and shown == text


def test_file_and_json(bundle: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = tmp_path / "texts.txt"
    path.write_bytes("first line\r\n\nsecond ☕ line\n   \nthird\x0cwith form feed\n".encode())
    assert main(["predict", str(bundle), "argv text", "--file", str(path), "--json", "--precision", "fp32",
                 "--backend", "onnx", "--batch-size", "2"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert (doc["backend"], doc["precision"]) == ("onnx", "fp32") and "onnxruntime" in doc["engine"]
    texts = [p["text"] for p in doc["predictions"]]
    assert texts == ["argv text", "first line", "second ☕ line", "third\x0cwith form feed"]
    clf = edgekd.load(bundle, precision="fp32")
    for p, ref in zip(doc["predictions"], clf.predict(texts), strict=True):
        assert p["label"] == ref.label and list(p["scores"]) == AG_LABELS
        assert p["score"] == pytest.approx(ref.score, abs=1e-6)


def test_stdin(bundle: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    monkeypatch.setattr(sys, "stdin", io.TextIOWrapper(io.BytesIO(b"from stdin\nanother\n")))
    assert main(["predict", str(bundle), "--file", "-"]) == 0
    assert [line.split("\t")[2] for line in capsys.readouterr().out.splitlines()] == ["from stdin", "another"]


@pytest.mark.parametrize(("args", "message"), [
    # Options after the texts: argparse (cli.py uses parse_args) cannot take texts after options.
    (["x", "--backend", "onnx", "--precision", "fp16"], "no onnx-fp16 artifact"),
    (["x", "--backend", "coreml"], "no coreml artifact"),
    ([], "no texts to classify"),
    (["--file", "/nonexistent/texts.txt"], "cannot read texts file"),
    (["x", "--batch-size", "0"], "--batch-size must be a positive int, got 0"),
    (["x", "--threads", "-1"], "--threads must be a positive int"),
    ([b"caf\xe9".decode("utf-8", "surrogateescape")], "not valid Unicode"),
])
def test_bad_input_is_one_line_and_exit_2(bundle: Path, capsys: pytest.CaptureFixture[str], args: list[str],
                                          message: str) -> None:
    assert main(["predict", str(bundle), *args]) == 2
    err = capsys.readouterr().err
    assert err.startswith("edgekd predict: error:") and message in err and len(err.strip().splitlines()) == 1


def test_invalid_utf8_file_and_missing_bundle(bundle: Path, tmp_path: Path,
                                              capsys: pytest.CaptureFixture[str]) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_bytes(b"ok\n\xff\xfe broken\n")
    assert main(["predict", str(bundle), "--file", str(bad)]) == 2
    assert "is not valid UTF-8 (byte 3)" in capsys.readouterr().err
    assert main(["predict", str(tmp_path / "missing"), "x"]) == 2
    assert "bundle not found" in capsys.readouterr().err
