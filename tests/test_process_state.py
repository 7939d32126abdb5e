"""Library code leaves the host process as it found it: an export changes no working directory, no
environment variable and leaves no scratch file in the caller's cwd, and two exports can run in
two threads of one process. The torch reference backend's `threads` is restored after each call."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest
from conftest import AG_LABELS, read_texts

from edgekd import bundle as bundle_mod
from edgekd.exporters.bundle_writer import ExportData, ExportOptions, export_bundle


def _int8_data() -> ExportData:
    train, train_labels = read_texts("ag_news", "train", 64)
    val, val_labels = read_texts("ag_news", "test", 90)
    return ExportData(test_texts=val[60:], train=(train, [AG_LABELS.index(n) for n in train_labels]),
                      validation=(val[:60], [AG_LABELS.index(n) for n in val_labels[:60]]))


def _options(int8: bool, embedding_bits: int = 8) -> ExportOptions:
    return ExportOptions(targets=["onnx"], int8=int8, calibration_size=16, check_per_class=8,
                         embedding_bits=embedding_bits)


def _assert_valid_bundle(out: Path) -> None:
    manifest = bundle_mod.read_manifest(out)
    assert manifest.artifact("onnx", "fp32") is not None
    for artifact in manifest.artifacts:
        assert bundle_mod.check_artifact(out, artifact).is_file()
    # ORT's scratch (`*-inferred.onnx`, `<uuid>.data`) never lands in the bundle either.
    assert not [p.name for p in out.rglob("*") if p.name.endswith(("-inferred.onnx", ".data"))]


@pytest.mark.parametrize("embedding_bits", [8, 4])  # 4: ORT's weight-only quantizer runs too
def test_int8_export_to_relative_spaced_path_leaves_cwd_and_environ(
        tiny_bert: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, embedding_bits: int) -> None:
    caller = tmp_path / "caller cwd"
    (caller / "runs dir").mkdir(parents=True)
    (caller / "notes.txt").write_text("the caller's own file\n")
    monkeypatch.chdir(caller)
    cwd, environ, chdirs, real_chdir = os.getcwd(), dict(os.environ), [], os.chdir
    monkeypatch.setattr(os, "chdir", lambda path: (chdirs.append(path), real_chdir(path)))
    before = sorted(str(p.relative_to(caller)) for p in caller.rglob("*"))

    out = Path("runs dir") / "my bundle"  # relative, with spaces, below the caller's cwd
    export_bundle(tiny_bert, out, _int8_data(), _options(int8=True, embedding_bits=embedding_bits), log=lambda m: None)

    assert chdirs == [] and os.getcwd() == cwd  # not even a chdir that is undone afterwards
    assert dict(os.environ) == environ
    after = sorted(str(p.relative_to(caller)) for p in caller.rglob("*") if caller / out not in p.parents)
    assert after == before + ["runs dir/my bundle"]  # nothing else: no scratch, no staging leftovers
    _assert_valid_bundle(caller / out)


def test_two_exports_in_two_threads(tiny_bert: Path, tmp_path: Path) -> None:
    jobs = {"fp32": (tmp_path / "a" / "bundle", False), "int8": (tmp_path / "b" / "bundle", True)}
    errors: dict[str, BaseException] = {}

    def run(name: str) -> None:
        out, int8 = jobs[name]
        try:
            export_bundle(tiny_bert, out, _int8_data(), _options(int8), log=lambda m: None)
        except BaseException as exc:  # reported by the main thread below
            errors[name] = exc

    threads = [threading.Thread(target=run, args=(name,)) for name in jobs]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors, errors
    for out, _ in jobs.values():
        _assert_valid_bundle(out)


def test_torch_backend_threads_is_restored_after_each_call(tiny_bert: Path, tmp_path: Path) -> None:
    import torch

    import edgekd

    out = tmp_path / "bundle"
    export_bundle(tiny_bert, out, _int8_data(), _options(int8=False), log=lambda m: None)
    before = torch.get_num_threads()
    wanted = 1 if before > 1 else 2
    clf = edgekd.load(out, backend="torch", threads=wanted)
    assert torch.get_num_threads() == before  # loading does not set it
    model, seen = clf.session._model, []
    original = model.forward

    def spy(*args: object, **kwargs: object) -> object:  # the thread count the forward pass runs with
        seen.append(torch.get_num_threads())
        return original(*args, **kwargs)

    model.forward = spy
    clf.predict(["a short text", "another text about sports"])
    assert seen == [wanted] and torch.get_num_threads() == before
