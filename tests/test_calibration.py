"""Calibration sampling (stratified by label and token length, seeded, recorded) and the int8
accuracy-control decision."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import AG_LABELS, read_texts

from edgekd.calibration import length_bin_edges, sample_calibration
from edgekd.calibration.accuracy import Int8Candidate, accuracy, select_int8
from edgekd.errors import DataError


@pytest.fixture(scope="module")
def pool() -> tuple[list[str], list[int], list[int]]:
    texts, names = read_texts("ag_news", "train", 1200)
    lengths = [len(t.split()) for t in texts]  # a stand-in for token lengths: same ordering role
    return texts, [AG_LABELS.index(n) for n in names], lengths


def test_sample_is_deterministic_and_seed_dependent(pool: tuple) -> None:
    texts, labels, lengths = pool
    a = sample_calibration(texts, labels, lengths, size=300, seed=0, label_names=AG_LABELS)
    b = sample_calibration(texts, labels, lengths, size=300, seed=0, label_names=AG_LABELS)
    c = sample_calibration(texts, labels, lengths, size=300, seed=1, label_names=AG_LABELS)
    assert a.texts == b.texts and a.record == b.record
    assert a.texts != c.texts and a.record["fingerprint"] != c.record["fingerprint"]
    assert len(a.texts) == len(set(a.texts)) == 300 and set(a.texts) <= set(texts)


def test_sample_is_stratified_by_label_and_length(pool: tuple) -> None:
    texts, labels, lengths = pool
    cal = sample_calibration(texts, labels, lengths, size=300, seed=0, label_names=AG_LABELS)
    pool_share = np.bincount(labels, minlength=4) / len(labels)
    got = np.array([cal.record["label_counts"][n] for n in AG_LABELS]) / 300
    assert np.abs(got - pool_share).max() < 0.01  # proportional to within rounding
    edges = cal.record["length_bin_edges"]
    assert edges == length_bin_edges(lengths) and len(edges) == 3
    bins = np.searchsorted(edges, lengths, side="right")
    pool_bins = np.bincount(bins, minlength=4) / len(bins)
    assert np.abs(np.array(cal.record["length_bin_counts"]) / 300 - pool_bins).max() < 0.02
    assert cal.record["size"] == 300 and cal.record["pool_size"] == 1200 and cal.record["seed"] == 0


def test_sample_caps_at_pool_and_rejects_bad_input(pool: tuple) -> None:
    texts, labels, lengths = pool
    small = sample_calibration(texts[:50], labels[:50], lengths[:50], size=300)
    assert small.record["size"] == 50 and sorted(small.texts) == sorted(texts[:50])
    with pytest.raises(DataError, match="calibration-size must be positive, got 0"):
        sample_calibration(texts, labels, lengths, size=0)
    with pytest.raises(DataError, match="pool sizes differ"):
        sample_calibration(texts, labels[:10], lengths)
    with pytest.raises(DataError, match="empty"):
        sample_calibration([], [], [], size=10)


def _candidate(name: str, logits: np.ndarray, built: list[str]) -> Int8Candidate:
    def build() -> np.ndarray:
        built.append(name)
        return logits
    return Int8Candidate(name, {"mode": name}, build)


def test_select_int8_takes_first_within_budget_and_agreement() -> None:
    labels = np.array([0, 1, 2, 3] * 50)
    ref = np.eye(4)[labels] * 5.0  # 100% accurate float model
    worse = ref.copy()
    worse[:2] = np.eye(4)[(labels[:2] + 1) % 4] * 5.0  # 2 of 200 wrong: drop 0.01, agreement 0.99
    built: list[str] = []
    decision = select_int8(ref, labels, [_candidate("aggressive", worse, built), _candidate("safe", ref, built),
                                         _candidate("never-built", ref, built)], max_drop=0.005)
    assert decision.chosen.name == "safe" and built == ["aggressive", "safe"]
    rec = decision.record()
    assert rec["tried"][0]["accepted"] is False and rec["tried"][0]["drop"] == pytest.approx(0.01)
    assert rec["tried"][1]["agreement_with_float"] == 1.0
    # A generous budget accepts the aggressive one, but flips beyond the agreement bar still reject it.
    assert select_int8(ref, labels, [_candidate("a", worse, [])], max_drop=0.05, min_agreement=0.99).chosen.name == "a"
    assert select_int8(ref, labels, [_candidate("a", worse, [])], max_drop=0.05).chosen is None  # default 0.995


def test_select_int8_counts_agreement_on_extra_unlabelled_rows() -> None:
    labels = np.array([0, 1] * 50)  # 100 labelled validation rows ...
    ref = np.eye(2)[np.concatenate([labels, np.zeros(300, dtype=int)])] * 3.0  # ... then 300 unlabelled
    cand = ref.copy()
    cand[100:110] = np.eye(2)[np.ones(10, dtype=int)] * 3.0  # 10 flips, all on the unlabelled rows
    decision = select_int8(ref, labels, [_candidate("c", cand, [])], max_drop=0.005)
    tried = decision.record()["tried"][0]
    assert tried["drop"] == 0.0 and tried["n_agreement"] == 400
    assert tried["agreement_with_float"] == pytest.approx(390 / 400) and decision.chosen is None


def test_accuracy() -> None:
    assert accuracy(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), [0, 1, 1]) == pytest.approx(2 / 3)
