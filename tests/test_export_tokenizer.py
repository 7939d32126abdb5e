"""The tokenizer that ships is the one verified: the export check (its PyTorch reference and every
artifact) and verify's PyTorch student are fed the ids of the bundle's own tokenizer.json, not the
checkpoint's Hugging Face tokenizer.

The proof: export a bundle whose tokenizer.json differs from the checkpoint's in a way the Hugging
Face tokenizer cannot see (two vocabulary ids swapped), then look at the ids the reference and the
artifact were fed. Before, both were fed the Hugging Face tokenizer's ids, so a check that passed said
nothing about the file that ships."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from conftest import read_texts

import edgekd
from edgekd import bundle as bundle_mod
from edgekd.exporters import bundle_writer
from edgekd.exporters.bundle_writer import ExportData, ExportOptions, export_bundle
from edgekd.runtimes.onnx import OnnxSession
from edgekd.runtimes.tokenizer import BundleTokenizer
from edgekd.runtimes.torch import TorchSession

SWAP = ("the", "of")  # frequent in AG News: almost every text holds one of them


def _swapped_tokenizer_json(model_dir: Path) -> bytes:
    """The checkpoint's tokenizer.json with the ids of the two SWAP tokens exchanged."""
    data = json.loads((model_dir / "tokenizer.json").read_text(encoding="utf-8"))
    vocab = data["model"]["vocab"]
    a, b = SWAP
    vocab[a], vocab[b] = vocab[b], vocab[a]
    return json.dumps(data, ensure_ascii=False).encode("utf-8")


def _rows(inputs: dict[str, np.ndarray]) -> list[tuple[int, ...]]:
    """The unpadded id rows of one batch of model inputs."""
    ids, mask = np.asarray(inputs["input_ids"]), np.asarray(inputs["attention_mask"])
    return [tuple(int(x) for x in row[m.astype(bool)]) for row, m in zip(ids, mask, strict=True)]


@pytest.fixture(scope="module")
def swapped(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    """An ONNX bundle exported with the swapped tokenizer.json, and the id rows every torch and ONNX
    session was fed during the export (the reference and the post-export check)."""
    fed: dict[str, list[tuple[int, ...]]] = {"torch": [], "onnx": []}

    def spy(backend: str, run: Any) -> Any:
        def wrapped(self: Any, inputs: dict[str, np.ndarray]) -> np.ndarray:
            fed[backend] += _rows(inputs)
            return run(self, inputs)
        return wrapped

    texts, _ = read_texts("ag_news", "test", 40)
    out = tmp_path_factory.mktemp("swapped") / "bundle"
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(bundle_writer, "_tokenizer_json", lambda model_dir, tokenizer: _swapped_tokenizer_json(model_dir))
        mp.setattr(TorchSession, "run", spy("torch", TorchSession.run))
        mp.setattr(OnnxSession, "run", spy("onnx", OnnxSession.run))
        manifest = export_bundle(tiny_bert, out, ExportData(test_texts=texts), ExportOptions(targets=["onnx"],
                                 check_per_class=6), log=lambda m: None)
    yield {"bundle": out, "manifest": manifest, "fed": fed, "texts": texts}


def test_the_export_check_feeds_the_shipped_tokenizer(swapped: dict[str, Any], tiny_bert: Path) -> None:
    from transformers import AutoTokenizer

    bundle, manifest, fed = swapped["bundle"], swapped["manifest"], swapped["fed"]
    assert (bundle / bundle_mod.TOKENIZER).read_bytes() == _swapped_tokenizer_json(tiny_bert)  # what ships
    shipped = BundleTokenizer(bundle / bundle_mod.TOKENIZER, manifest.tokenizer)
    hf = AutoTokenizer.from_pretrained(str(tiny_bert))
    # the swap is invisible to the Hugging Face tokenizer and visible in the shipped file
    assert shipped.encode([SWAP[0]])[0][1:-1] == [hf.convert_tokens_to_ids(SWAP[1])]

    groups = _check_texts(tiny_bert, swapped["texts"])
    shipped_rows = {tuple(r) for group in groups for r in shipped.encode(group)}
    hf_rows = {tuple(r) for group in groups for r in hf(group, truncation=True, max_length=128)["input_ids"]}
    assert len(shipped_rows - hf_rows) > len(shipped_rows) // 2  # mostly ids the HF tokenizer never produces
    # every row the artifact was checked on is the shipped tokenizer's encoding of a check text ...
    assert set(fed["onnx"]) == shipped_rows
    # ... and the PyTorch reference (the torch backend) saw exactly the same rows, in the same order
    assert fed["torch"] == fed["onnx"]
    assert manifest.parity["onnx-fp32"]["status"] == "passed"


def _check_texts(model_dir: Path, texts: list[str]) -> list[list[str]]:
    """The check's length classes, as the export chose them (the HF tokenizer picks texts by length)."""
    from transformers import AutoTokenizer

    from edgekd.exporters.check import check_texts

    return list(check_texts(AutoTokenizer.from_pretrained(str(model_dir)), texts, 128, 6).values())


def test_verify_student_reference_runs_on_the_shipped_tokenizer(swapped: dict[str, Any], tiny_bert: Path,
                                                                monkeypatch: pytest.MonkeyPatch) -> None:
    from edgekd.verify.runner import _student_forward

    bundle, texts = swapped["bundle"], swapped["texts"][:12]
    fed: list[tuple[int, ...]] = []
    run = TorchSession.run
    monkeypatch.setattr(TorchSession, "run", lambda self, inputs: fed.extend(_rows(inputs)) or run(self, inputs))
    model, logits_of = _student_forward(bundle, tiny_bert)
    got = logits_of(texts)
    shipped = BundleTokenizer(bundle / bundle_mod.TOKENIZER, swapped["manifest"].tokenizer)
    assert fed == [tuple(r) for r in shipped.encode(texts)]  # the shipped tokenizer's ids, in text order
    monkeypatch.setattr(TorchSession, "run", run)
    torch_backend = edgekd.load(str(bundle), backend="torch", checkpoint=str(tiny_bert)).logits(texts)
    onnx = edgekd.load(str(bundle), backend="onnx", precision="fp32").logits(texts)
    assert np.abs(got - torch_backend).max() <= 1e-5  # the runtime's torch backend
    assert np.abs(got - onnx).max() <= 1e-3
    assert hasattr(model, "classifier")  # the module verify hooks for the embedding map
