"""verify's embedding map: the PCA of what the student's classification head reads, for the right
test rows; a seeded, capped sample; optional in the report schema; an extra chart in the HTML; and
reports carrying it still merge across devices."""

from __future__ import annotations

import copy
import json
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from conftest import AG_LABELS, read_texts

from edgekd.errors import EdgekdError
from edgekd.verify.embedding import capture_head_inputs, embedding_map
from edgekd.verify.merge import write_merged
from edgekd.verify.report import load_schema, read_report, to_html, validate, write_report
from tests.test_report import make_report


def _svd_pca(x: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Independent PCA: (points [n, 2], explained variance ratio [2]) from numpy's SVD."""
    centred = x - x.mean(axis=0)
    u, s, _ = np.linalg.svd(centred, full_matrices=False)
    return u[:, :2] * s[:2], s[:2] ** 2 / (s**2).sum()


def _assert_same_up_to_sign(points: np.ndarray, expected: np.ndarray) -> None:
    scale = np.abs(expected).max()
    for k in range(2):  # a principal axis is defined up to its sign
        sign = np.sign(points[:, k] @ expected[:, k])
        np.testing.assert_allclose(points[:, k], sign * expected[:, k], atol=1e-3 * scale)


def test_map_is_the_pca_of_the_pooled_output_of_the_sampled_rows(tiny_bert: Path) -> None:
    import torch

    from edgekd.train.infer import load_checkpoint, torch_logits

    texts, names = read_texts("ag_news", "test", 60)
    labels = np.array([AG_LABELS.index(n) for n in names])
    model, tok = load_checkpoint(tiny_bert)
    with capture_head_inputs(model) as batches:
        logits = torch_logits(model, tok, texts, 128, batch_size=16)  # 4 batches, each padded its own way
    torch_logits(model, tok, texts[:3], 128)  # after the block: not captured
    emb = embedding_map(batches, labels, logits.argmax(axis=1), max_points=25)

    rows = np.array(emb["rows"])
    assert emb["method"] == "pca" and emb["n"] == 60 and len(emb["points"]) == 25
    assert list(rows) == sorted(set(rows)) and rows.max() < 60
    assert emb["labels"] == labels[rows].tolist() and emb["predicted"] == logits.argmax(axis=1)[rows].tolist()
    # BERT's classifier reads the pooler output: recompute it text by text (no padding) with transformers
    with torch.inference_mode():
        pooled = np.stack([model.bert(**tok(texts[i], truncation=True, max_length=128, return_tensors="pt"))
                           .pooler_output[0].numpy() for i in rows])
    expected, ratio = _svd_pca(pooled.astype(np.float64))
    _assert_same_up_to_sign(np.array(emb["points"]), expected)
    np.testing.assert_allclose(emb["explained_variance"], ratio, rtol=1e-3)


def test_a_head_reading_the_sequence_maps_the_first_token() -> None:
    import torch
    from transformers import RobertaConfig, RobertaForSequenceClassification

    torch.manual_seed(0)
    config = RobertaConfig(vocab_size=50, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
                           intermediate_size=32, num_labels=3, max_position_embeddings=40)
    model = RobertaForSequenceClassification(config).eval()
    ids = torch.randint(3, 50, (12, 7))
    with torch.inference_mode(), capture_head_inputs(model) as batches:
        model(input_ids=ids[:5])
        model(input_ids=ids[5:])
    with torch.inference_mode():
        first_token = model.roberta(input_ids=ids).last_hidden_state[:, 0, :].numpy()  # [12, 16]
    np.testing.assert_allclose(np.concatenate(batches), first_token, atol=1e-5)


def test_sample_is_seeded_capped_and_checked() -> None:
    rng = np.random.default_rng(1)
    batches = [rng.normal(size=(30, 8)), rng.normal(size=(20, 8))]
    labels, predicted = rng.integers(0, 3, 50), rng.integers(0, 3, 50)
    a = embedding_map(batches, labels, predicted, max_points=20)
    assert a == embedding_map(batches, labels, predicted, max_points=20)  # the same sample every run
    assert a["rows"] != embedding_map(batches, labels, predicted, max_points=20, seed=1)["rows"]
    assert len(a["points"]) == 20 and a["n"] == 50
    whole = embedding_map(batches, labels, predicted)
    assert whole["rows"] == list(range(50))
    _assert_same_up_to_sign(np.array(whole["points"]), _svd_pca(np.concatenate(batches))[0])
    assert embedding_map([], labels, predicted) is None  # no head captured
    assert embedding_map([batches[0][:2]], labels[:2], predicted[:2]) is None  # too few texts to map
    with pytest.raises(EdgekdError, match="called for 30 texts, not the 50"):
        embedding_map(batches[:1], labels, predicted)


def _with_map(report: dict) -> dict:
    rng = np.random.default_rng(0)
    report = copy.deepcopy(report)
    student = next(m for m in report["models"] if m["kind"] == "student")
    student["embedding_map"] = embedding_map([rng.normal(size=(300, 16))], rng.integers(0, 2, 300),
                                             rng.integers(0, 2, 300), max_points=200)
    return report


def test_schema_with_and_without_the_map_and_the_html_chart(tmp_path: Path) -> None:
    plain, mapped = make_report(), _with_map(make_report())
    for report in (plain, mapped):
        jsonschema.validate(report, load_schema())
        validate(report)
    broken = copy.deepcopy(mapped)
    broken["models"][1]["embedding_map"]["points"][0] = [1.0, 2.0, 3.0]
    with pytest.raises(EdgekdError, match="models/1/embedding_map/points/0"):
        validate(broken)
    assert to_html(plain).count("data:image/png;base64,") == 4
    html = to_html(mapped)
    assert html.count("data:image/png;base64,") == 5 and 'alt="embedding map of student-torch"' in html

    paths = write_report(mapped, tmp_path)
    assert read_report(paths["json"]) == json.loads(json.dumps(mapped))
    text = paths["json"].read_text()
    assert f"\"rows\": {json.dumps(mapped['models'][1]['embedding_map']['rows'])}" in text  # one line, not 200
    assert len(text) < 0.6 * len(json.dumps(mapped, indent=2))


def test_reports_with_maps_merge_across_devices(tmp_path: Path) -> None:
    a, b = _with_map(make_report()), _with_map(make_report())
    b["device"] = {**b["device"], "device_id": "macos-arm64-apple-m2-0123abcd", "os": "darwin"}
    paths = []
    for name, report in (("a", a), ("b", b)):
        paths.append(write_report(report, tmp_path / name)["json"])
    out = write_merged(paths, tmp_path / "merged.html")
    assert "macos-arm64-apple-m2-0123abcd" in out["md"].read_text()
