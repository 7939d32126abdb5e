"""Calibration sampling (stratified by label and token length, seeded, recorded) and the int8
accuracy-control decision."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import AG_LABELS, read_texts

from edgekd.calibration import length_bin_edges, sample_calibration
from edgekd.calibration.accuracy import Int8Candidate, accuracy, select_int8
from edgekd.errors import DataError
from edgekd.verify.parity import DEFAULT_GATES, GateSet


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


def _gates(drop: float = 0.005, agreement: float = 0.99) -> GateSet:
    gates = GateSet()
    gates.override("int8", "accuracy_drop", drop)
    gates.override("int8", "agreement", agreement)
    return gates


def test_select_int8_takes_first_that_passes_the_int8_gates() -> None:
    labels = np.array([0, 1, 2, 3] * 500)
    ref = np.eye(4)[labels] * 5.0  # 100% accurate float model
    worse = ref.copy()
    worse[:20] = np.eye(4)[(labels[:20] + 1) % 4] * 5.0  # 20 of 2000 wrong: drop 0.01, agreement 0.99
    built: list[str] = []
    decision = select_int8(ref, labels, [_candidate("aggressive", worse, built), _candidate("safe", ref, built),
                                         _candidate("never-built", ref, built)], _gates())
    assert decision.chosen.name == "safe" and built == ["aggressive", "safe"]
    rec = decision.record()
    assert rec["tried"][0]["accepted"] is False and rec["tried"][0]["accuracy_drop"] == pytest.approx(0.01)
    # 20 texts right -> wrong, none the other way: the paired interval 0.01 +- 1.96 sqrt(b+c-(b-c)^2/n)/n lies
    # wholly above the 0.005 budget, so the drop is a FAIL, not noise
    assert rec["tried"][0]["accuracy_drop_ci"][0] == pytest.approx(0.01 - 1.96 * np.sqrt(20 - 20**2 / 2000) / 2000)
    assert "accuracy_drop 0.01 (needs <= 0.005, 95% CI" in rec["tried"][0]["failed"]
    assert rec["tried"][0]["verdicts"] == {"agreement": "PASS", "accuracy_drop": "FAIL"}
    assert rec["tried"][0]["flips"] == 20 and rec["tried"][0]["n"] == 2000
    lo, hi = rec["tried"][0]["agreement_ci"]
    assert lo < 0.99 < hi and hi < 1.0  # the Wilson interval around 1980/2000
    assert rec["tried"][1]["agreement"] == 1.0
    assert [g["metric"] for g in rec["gates"]] == ["agreement", "accuracy_drop"]
    # A generous budget accepts the aggressive one, but flips beyond the agreement gate still reject it.
    assert select_int8(ref, labels, [_candidate("a", worse, [])], _gates(0.05, 0.99)).chosen.name == "a"
    assert select_int8(ref, labels, [_candidate("a", worse, [])], _gates(0.05, 0.995)).chosen is None


def test_an_accuracy_drop_a_small_split_cannot_resolve_does_not_reject() -> None:
    """120 labelled texts: one text is 0.83 points. One right -> wrong flip measures a 0.0083 drop,
    but its interval reaches the 0.005 budget (INCONCLUSIVE), and agreement on all 1,000 decision
    texts passes: the setting is kept. Agreement that misses its gate is never kept, even when its
    interval would reach it: the decision keeps only what it measured within the gate."""
    labels = np.array([0, 1] * 60)
    ref = np.eye(2)[np.concatenate([labels, np.zeros(880, dtype=int)])] * 3.0
    one = ref.copy()
    one[0] = np.eye(2)[1 - labels[0]] * 3.0  # the one flip, right -> wrong, on a labelled text
    decision = select_int8(ref, labels, [_candidate("one-flip", one, [])], _gates())
    assert decision.chosen is not None
    assert decision.tried[0]["verdicts"] == {"agreement": "PASS", "accuracy_drop": "INCONCLUSIVE"}
    many = ref.copy()
    many[120:132] = np.eye(2)[np.ones(12, dtype=int)] * 3.0  # 12 flips of 1000 unlabelled: 0.988
    rejected = select_int8(ref, labels, [_candidate("many", many, [])], _gates())
    assert rejected.chosen is None and rejected.tried[0]["verdicts"]["agreement"] == "INCONCLUSIVE"


def test_select_int8_reads_the_default_gate_table() -> None:
    labels = np.array([0, 1] * 100)
    ref = np.eye(2)[labels] * 3.0
    cand = ref.copy()
    cand[:3] = np.eye(2)[1 - labels[:3]] * 3.0  # 3 flips of 200: agreement 0.985 < the table's 0.99
    decision = select_int8(ref, labels, [_candidate("c", cand, [])])
    assert decision.chosen is None
    assert {"metric": "agreement", "op": ">=", "threshold": DEFAULT_GATES["int8"][0].threshold} in decision.gates


def test_select_int8_counts_agreement_on_extra_unlabelled_rows() -> None:
    labels = np.array([0, 1] * 50)  # 100 labelled validation rows ...
    ref = np.eye(2)[np.concatenate([labels, np.zeros(300, dtype=int)])] * 3.0  # ... then 300 unlabelled
    cand = ref.copy()
    cand[100:110] = np.eye(2)[np.ones(10, dtype=int)] * 3.0  # 10 flips, all on the unlabelled rows
    decision = select_int8(ref, labels, [_candidate("c", cand, [])], _gates())
    tried = decision.record()["tried"][0]
    assert tried["accuracy_drop"] == 0.0 and tried["n"] == 400 and tried["n_accuracy"] == 100
    assert tried["agreement"] == pytest.approx(390 / 400) and decision.chosen is None


def test_a_candidate_that_raises_is_rejected_and_the_next_tried() -> None:
    labels = np.array([0, 1] * 50)
    ref = np.eye(2)[labels] * 3.0

    def broken() -> np.ndarray:
        raise RuntimeError("quantizer exploded\nsecond line")

    decision = select_int8(ref, labels, [Int8Candidate("broken", {}, broken), _candidate("ok", ref, [])], _gates())
    assert decision.chosen.name == "ok"
    assert decision.tried[0] == {"name": "broken", "accepted": False, "error": "RuntimeError: quantizer exploded"}


def test_accuracy() -> None:
    assert accuracy(np.array([[1.0, 0.0], [0.0, 1.0], [1.0, 0.0]]), [0, 1, 1]) == pytest.approx(2 / 3)
