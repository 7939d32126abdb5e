"""edgekd.load(bundle) end to end on a real ONNX bundle of the tiny BERT: predictions, batching,
backend/precision choice, bad input, tampering, zip safety, thread safety, and the conformance
table (every backend available here against the onnx-fp32 reference)."""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import shutil
import stat
import sys
import threading
import zipfile
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
import pytest
from conftest import AG_LABELS, read_texts
from runtime_conformance import (
    build_exported_bundle,
    build_int8_bundle,
    build_onnx_bundle,
    conformance_table,
)

import edgekd
from edgekd.bundle import contract_hash, read_manifest
from edgekd.errors import BundleError
from edgekd.runtimes.classifier import Prediction, softmax


@pytest.fixture(scope="session")
def bundle(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_onnx_bundle(tiny_bert, tmp_path_factory.getbasetemp() / "runtime_bundle")


@pytest.fixture(scope="session")
def exported(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    sample, _ = read_texts("ag_news", "test", 24)
    return build_exported_bundle(tiny_bert, tmp_path_factory.getbasetemp() / "exported_bundle", sample)


@pytest.fixture(scope="session")
def int8_bundle(trained_tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_int8_bundle(trained_tiny_bert, tmp_path_factory.getbasetemp() / "int8_bundle")


# The fixture that holds each conformance source's bundle (BackendCase.source).
SOURCE_FIXTURES = {"built": "bundle", "exported": "exported", "int8": "int8_bundle"}


@pytest.fixture(scope="module")
def clf(bundle: Path) -> edgekd.Classifier:
    return edgekd.load(bundle, backend="onnx", precision="fp32")


@pytest.fixture(scope="module")
def texts() -> list[str]:
    ag, _ = read_texts("ag_news", "test", 40)
    imdb, _ = read_texts("imdb", "test", 10)  # long: truncated at 128 tokens
    return ag + imdb + ["", "   ", "short", "😀 emoji only 🎉"]


@pytest.fixture()
def copy(bundle: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(bundle, tmp_path / "bundle"))


def test_predict_one_text(clf: edgekd.Classifier) -> None:
    p = clf.predict("Stocks rallied as the central bank held rates.")
    assert isinstance(p, Prediction)
    assert list(p.scores) == AG_LABELS == clf.labels
    assert p.label == max(p.scores, key=p.scores.get) and p.score == p.scores[p.label]
    assert abs(sum(p.scores.values()) - 1.0) < 1e-12
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.label = "x"  # type: ignore[misc]
    assert (clf.backend, clf.precision) == ("onnx", "fp32") and "onnxruntime" in clf.engine


def test_logits_match_pytorch_reference(clf: edgekd.Classifier, tiny_bert: Path, texts: list[str]) -> None:
    from edgekd.train.infer import load_checkpoint, torch_logits

    model, tokenizer = load_checkpoint(tiny_bert)
    reference = torch_logits(model, tokenizer, texts, max_length=128, batch_size=8)
    logits = clf.logits(texts)
    assert logits.shape == (len(texts), 4) and logits.dtype == np.float32
    assert np.abs(logits - reference).max() < 1e-4
    assert np.array_equal(logits.argmax(1), reference.argmax(1))


def test_length_sorted_batches_restore_input_order(clf: edgekd.Classifier, texts: list[str]) -> None:
    one_by_one = np.concatenate([clf.logits([t]) for t in texts])
    for batch_size in (1, 3, 32, 1000):
        assert np.allclose(clf.logits(texts, batch_size=batch_size), one_by_one, atol=1e-5), batch_size
    reversed_rows = clf.logits(texts[::-1], batch_size=7)[::-1]
    assert np.allclose(reversed_rows, one_by_one, atol=1e-5)
    preds = clf.predict(texts, batch_size=5)
    assert [p.label for p in preds] == [AG_LABELS[i] for i in one_by_one.argmax(1)]
    assert np.allclose([[p.scores[name] for name in AG_LABELS] for p in preds], softmax(one_by_one), atol=1e-5)
    proba = clf.predict_proba(texts, batch_size=5)
    assert proba.dtype == np.float64 and np.allclose(proba, softmax(one_by_one), atol=1e-5)
    assert np.allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    single = clf.predict(texts[0])
    assert single.label == preds[0].label and np.isclose(single.score, preds[0].score, atol=1e-6)


def test_auto_precision_prefers_int8_and_explicit_choices(bundle: Path, clf: edgekd.Classifier) -> None:
    # auto backend: OpenVINO where installed (the bundle has openvino fp32/fp16, no int8 -> fp32).
    expected = ("openvino", "fp32") if importlib.util.find_spec("openvino") else ("onnx", "int8")
    assert (edgekd.load(bundle).backend, edgekd.load(bundle).precision) == expected
    auto = edgekd.load(bundle, backend="onnx")
    assert (auto.backend, auto.precision) == ("onnx", "int8")  # int8 preferred when present
    sample, _ = read_texts("ag_news", "test", 32)
    agreement = (auto.logits(sample).argmax(1) == clf.logits(sample).argmax(1)).mean()
    assert agreement >= 0.8
    with pytest.raises(BundleError, match=r"no onnx-fp16 artifact \(it has: onnx-fp32, onnx-int8"):
        edgekd.load(bundle, backend="onnx", precision="fp16")
    with pytest.raises(BundleError, match=r"no openvino-int8 artifact \(it has: .*openvino-fp16"):
        edgekd.load(bundle, backend="openvino", precision="int8")
    with pytest.raises(BundleError, match=r"no coreml artifact .*\(it has: onnx, openvino\)"):
        edgekd.load(bundle, backend="coreml-reference")
    with pytest.raises(BundleError, match="unknown backend 'tensorrt'"):
        edgekd.load(bundle, backend="tensorrt")
    with pytest.raises(BundleError, match="unknown precision 'int4'"):
        edgekd.load(bundle, precision="int4")
    with pytest.raises(ValueError, match="threads must be a positive int"):
        edgekd.load(bundle, threads=0)
    assert edgekd.load(bundle, precision="fp32", threads=1).predict("x").label in AG_LABELS


def test_empty_whitespace_and_very_long_text_have_defined_results(clf: edgekd.Classifier) -> None:
    empty, blank = clf.predict(""), clf.predict(" \t\n ")
    assert empty == blank  # both encode to [CLS] [SEP]
    long_text = "The match went to extra time. " * 3400  # ~100k characters
    assert len(long_text) > 100_000
    # Truncated to 128 tokens: same result as a prefix that is already longer than 128 tokens.
    assert np.allclose(clf.logits([long_text]), clf.logits([long_text[:2000]]), atol=1e-6)
    assert clf.logits([]).shape == (0, 4)


@pytest.mark.parametrize("bad", [b"bytes are not text", 42, None, 3.5])
def test_non_string_input_is_a_value_error(clf: edgekd.Classifier, bad: object) -> None:
    with pytest.raises(ValueError, match=f"is a {type(bad).__name__}, not a str"):
        clf.predict(bad)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=f"text 2 is a {type(bad).__name__}"):
        clf.predict(["a", "b", bad])  # type: ignore[list-item]


def test_invalid_utf8_and_single_str_to_logits_are_value_errors(clf: edgekd.Classifier) -> None:
    with pytest.raises(ValueError, match="decode bytes first"):
        clf.predict(b"\xff\xfe invalid utf-8")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="not valid Unicode"):
        clf.predict(b"\xff ok".decode("utf-8", "surrogateescape"))
    with pytest.raises(ValueError, match="takes a list of str"):
        clf.logits("one string")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="batch_size must be a positive int"):
        clf.logits(["a"], batch_size=0)


def test_eight_threads_give_the_sequential_results(clf: edgekd.Classifier, texts: list[str]) -> None:
    work = (texts * 5)[:200]
    expected = [clf.predict(t) for t in work]
    results: dict[int, list[Prediction]] = {}
    errors: list[BaseException] = []

    def worker(k: int) -> None:
        try:
            results[k] = [clf.predict(t) for t in work]
        except BaseException as exc:  # reported below: a thread must not die silently
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    for k in range(8):
        assert [p.label for p in results[k]] == [p.label for p in expected]
        assert np.allclose([p.score for p in results[k]], [p.score for p in expected], atol=1e-6)


def test_modified_artifact_is_refused_naming_the_file(copy: Path) -> None:
    with open(copy / "onnx" / "model.int8.onnx", "ab") as f:
        f.write(b"\0")
    with pytest.raises(BundleError, match=r"onnx-int8 was modified after export: .*onnx/model.int8.onnx"):
        edgekd.load(copy, backend="onnx", precision="int8")
    assert edgekd.load(copy, backend="onnx", precision="fp32").precision == "fp32"  # only the artifact in use is checked
    (copy / "onnx" / "model.onnx").unlink()
    with pytest.raises(BundleError, match="onnx-fp32 is missing"):
        edgekd.load(copy, backend="onnx", precision="fp32")


def test_edited_tokenizer_or_labels_break_the_contract(copy: Path) -> None:
    tok = json.loads((copy / "tokenizer.json").read_text())
    tok["model"]["vocab"]["hello"], tok["model"]["vocab"]["world"] = 2088, 7592
    (copy / "tokenizer.json").write_text(json.dumps(tok))
    with pytest.raises(BundleError, match="contract mismatch"):
        edgekd.load(copy)


def test_artifact_exported_for_another_label_map_is_refused(copy: Path) -> None:
    # A self-consistent manifest (its own contract recomputed) whose artifacts carry the old contract.
    manifest = read_manifest(copy)
    data = json.loads((copy / "edgekd.json").read_text())
    data["labels"] = list(reversed(manifest.labels))
    data["contract"] = contract_hash((copy / "tokenizer.json").read_bytes(), data["labels"], manifest.tokenizer)
    (copy / "edgekd.json").write_text(json.dumps(data))
    with pytest.raises(BundleError, match="exported for another tokenizer or label map"):
        edgekd.load(copy, backend="onnx", precision="fp32")


def test_missing_bundle_and_non_bundle(tmp_path: Path) -> None:
    with pytest.raises(BundleError, match="bundle not found"):
        edgekd.load(tmp_path / "nope")
    with pytest.raises(BundleError, match="is not an edgekd bundle"):
        edgekd.load(tmp_path)
    (tmp_path / "file.txt").write_text("x")
    with pytest.raises(BundleError, match="neither a bundle directory nor a .zip"):
        edgekd.load(tmp_path / "file.txt")


def _zip_dir(src: Path, dest: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(dest, "w") as zf:
        for p in sorted(src.rglob("*")):
            if p.is_file():
                zf.write(p, prefix + p.relative_to(src).as_posix())
    return dest


def test_zip_bundle_loads_like_the_directory(bundle: Path, clf: edgekd.Classifier, tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEKD_CACHE", str(tmp_path / "cache"))
    for name, prefix in (("flat.zip", ""), ("nested.zip", "my_bundle/")):
        zipped = edgekd.load(_zip_dir(bundle, tmp_path / name, prefix), backend="onnx", precision="fp32")
        assert zipped.bundle.is_relative_to(tmp_path / "cache")
        assert zipped.predict("a zipped bundle") == clf.predict("a zipped bundle")


# The zip is extracted into a staging directory <EDGEKD_CACHE>/bundles/.<name>.partial, three levels
# below tmp_path when EDGEKD_CACHE is tmp_path/cache: each '..' member below, and the absolute one,
# names tmp_path/escaped.txt, where the file would land if _safe_member let it through.
@pytest.mark.parametrize("member", ["../../../escaped.txt", "a/../../../../escaped.txt", "{tmp}/escaped.txt",
                                    "link"])
def test_zip_with_unsafe_members_is_refused(bundle: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            member: str) -> None:
    monkeypatch.setenv("EDGEKD_CACHE", str(tmp_path / "cache"))
    member = member.format(tmp=tmp_path.as_posix())
    evil = _zip_dir(bundle, tmp_path / "evil.zip")
    with zipfile.ZipFile(evil, "a") as zf:
        info = zipfile.ZipInfo(member)
        if member == "link":  # a symlink entry pointing outside the bundle
            info.external_attr = (stat.S_IFLNK | 0o777) << 16
            zf.writestr(info, "/etc/passwd")
        else:
            zf.writestr(info, "pwned")
    try:
        edgekd.load(evil)
        error = ""
    except BundleError as exc:
        error = str(exc)
    # Checked before the error: without the guard the member is written here and the load succeeds.
    assert not (tmp_path / "escaped.txt").exists()
    assert "refusing unsafe path in bundle zip" in error
    cache = tmp_path / "cache" / "bundles"
    assert not cache.exists() or not any((p / "edgekd.json").exists() for p in cache.iterdir())


@pytest.mark.parametrize("case", conformance_table(), ids=lambda c: f"{c.backend}-{c.precision}")
def test_conformance(case, request: pytest.FixtureRequest, texts: list[str]) -> None:
    """Every backend: same labels, logits within the case's tolerance of onnx-fp32 on the same bundle."""
    if case.skip:
        pytest.skip(case.skip)
    bundle = request.getfixturevalue(SOURCE_FIXTURES[case.source])
    reference = edgekd.load(bundle, backend="onnx", precision="fp32")
    other = edgekd.load(bundle, backend=case.backend, precision=case.precision)
    assert (other.backend, other.precision, other.labels) == (case.backend, case.precision, reference.labels)
    expected, logits = reference.logits(texts), other.logits(texts, batch_size=8)
    assert logits.shape == expected.shape and logits.dtype == np.float32
    assert np.abs(logits - expected).max() <= case.atol, case.reason
    assert (logits.argmax(1) == expected.argmax(1)).mean() >= case.min_agreement, case.reason
    assert other.predict("").label in reference.labels
    # The session is shared between threads: concurrent predictions equal sequential ones.
    sample = texts[:24]
    with ThreadPoolExecutor(max_workers=4) as pool:
        concurrent = list(pool.map(other.predict, sample))
    sequential = [other.predict(t) for t in sample]
    assert [p.label for p in concurrent] == [p.label for p in sequential]
    assert np.allclose([p.score for p in concurrent], [p.score for p in sequential], atol=1e-6)


def test_exported_bundle_provenance_finds_the_reference_checkpoint(exported: Path, tiny_bert: Path) -> None:
    manifest = read_manifest(exported)
    assert Path(manifest.provenance["model_dir"]) == tiny_bert.resolve()
    assert edgekd.load(exported, backend="torch").engine.startswith("torch ")
    if sys.platform != "darwin":
        with pytest.raises(BundleError, match="coreml-reference"):
            edgekd.load(exported, backend="coreml")


def test_non_finite_logits_are_an_error_not_a_prediction(clf: edgekd.Classifier) -> None:
    class NanSession:  # stands in for an artifact whose fp16 math overflowed
        input_names, input_dtype, engine = clf.session.input_names, np.int64, "nan"

        def run(self, inputs: dict[str, np.ndarray]) -> np.ndarray:
            out = np.zeros((len(inputs["input_ids"]), 4), dtype=np.float32)
            out[:, 1] = np.nan
            return out

    broken = edgekd.Classifier(NanSession(), clf.tokenizer, clf.manifest, "onnx", "fp16", clf.bundle)
    with pytest.raises(BundleError, match="onnx-fp16 artifact returned non-finite logits"):
        broken.predict("x")
    with pytest.raises(BundleError, match="non-finite"):
        broken.predict(["x", "y"])


def test_auto_falls_back_to_onnx_and_missing_engines_name_the_extra(bundle: Path,
                                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.errors import MissingDependency
    from edgekd.runtimes import classifier

    real = classifier._importable
    monkeypatch.setattr(classifier, "_importable", lambda m: m != "openvino" and real(m))
    auto = edgekd.load(bundle)  # no OpenVINO here: ONNX Runtime, int8 preferred
    assert (auto.backend, auto.precision) == ("onnx", "int8")
    with pytest.raises(MissingDependency, match=r"pip install 'edgekd\[openvino\]'"):
        edgekd.load(bundle, backend="openvino")
    monkeypatch.setattr(classifier, "_importable", lambda m: False)
    with pytest.raises(MissingDependency, match=r"pip install 'edgekd\[onnx\]'"):
        edgekd.load(bundle)
