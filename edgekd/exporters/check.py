"""The post-export check: every artifact against the PyTorch model it came from, on real held-out
texts at several lengths, both fed the ids of the bundle's own tokenizer.json (`run_session`). The
gates are the one gate table's (`verify.parity.DEFAULT_GATES`). A failed fp32 gate is an
`ExportError` (a converter bug); a failed fp16 gate drops that artifact with the reason recorded;
int8 is decided by accuracy control on the validation split, not again here.

The length classes and calibration strata are chosen with the checkpoint's Hugging Face tokenizer
(`check_texts`, `token_lengths`: they need untruncated lengths); every id a model is fed comes from
tokenizer.json."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

# The parity metrics the check measures and gates (verify also gates accuracy_drop on labels).
CHECK_METRICS = ("agreement", "max_abs_logit", "max_abs_prob")
# How many held-out texts of each length class the check uses (short / medium / truncated-long).
CHECK_PER_CLASS = 64


def compare(reference: np.ndarray, logits: np.ndarray) -> dict[str, Any]:
    """Conversion parity of logits [n, num_labels] against the reference logits: the same
    metrics `edgekd verify` reports (`verify.parity.conversion_parity`)."""
    from edgekd.verify.parity import conversion_parity

    return conversion_parity(logits, reference)


def gates(precision: str, gate_set: Any = None) -> list[dict[str, Any]]:
    """The gates the post-export check enforces for `precision`: the gate table's rows for the
    metrics a check measures (no labels here, so no accuracy_drop)."""
    from edgekd.verify.parity import GateSet

    gate_set = gate_set or GateSet()
    return [{"metric": g.metric, "op": g.op, "threshold": g.threshold}
            for g in gate_set.gates.get(precision, []) if g.metric in CHECK_METRICS]


def gate_failures(precision: str, metrics: dict[str, Any], gate_set: Any = None) -> list[str]:
    """Human-readable list of the gates `metrics` fails for `precision` (empty when it passes).
    A precision with no gate the check can measure is an error (GateError), never a pass."""
    from edgekd.errors import GateError
    from edgekd.verify.parity import GateSet, describe_agreement, evaluate_gates

    rows = [r for r in evaluate_gates("", precision, metrics, gate_set or GateSet()) if r["metric"] in CHECK_METRICS]
    if not rows:
        raise GateError(f"no post-export gate for precision {precision!r} (it needs one of {', '.join(CHECK_METRICS)}); "
                        f"add one with --gate-{precision}-agreement X")
    names = {"max_abs_logit": "max |dlogit|", "agreement": "top-1 agreement"}
    return [f"{names.get(r['metric'], r['metric'])} "
            + (describe_agreement(metrics) if r["metric"] == "agreement" else f"{r['value']:.4g}")
            + f" (needs {r['op']} {r['threshold']:g})"
            for r in rows if not r["passed"]]


def token_lengths(tokenizer: Any, texts: Sequence[str], max_length: int) -> list[int]:
    """Token count of each text after truncation to max_length (special tokens included)."""
    enc = tokenizer(list(texts), truncation=True, max_length=max_length)
    return [len(ids) for ids in enc["input_ids"]]


def check_texts(tokenizer: Any, texts: Sequence[str], max_length: int,
                per_class: int = CHECK_PER_CLASS) -> dict[str, list[str]]:
    """Real held-out texts in three length classes: short, medium, and truncated-long.

    Long texts are real texts joined until they exceed max_length, so truncation is exercised
    even on datasets whose texts are all short (AG News is ~50 tokens)."""
    texts = [t for t in texts if t.strip()]
    full = [len(ids) for ids in tokenizer(list(texts), truncation=False)["input_ids"]]
    order = np.argsort(full, kind="stable")
    half = len(order) // 2
    short = [texts[i] for i in order[:half] if full[i] <= max_length][:per_class]
    medium = [texts[i] for i in order[half:] if full[i] <= max_length][:per_class]
    long = [texts[i] for i in order if full[i] > max_length][:per_class]
    j = 0
    while len(long) < per_class and texts:
        joined, n = "", 0
        while n <= max_length and texts:
            joined = f"{joined} {texts[j % len(texts)]}".strip()
            n += full[j % len(texts)]
            j += 1
        long.append(joined)
    return {"short": short, "medium": medium, "truncated_long": long}


def run_session(session: Any, tokenizer: Any, texts: Sequence[str], batch_size: int = 16) -> np.ndarray:
    """logits [len(texts), num_labels] of a runtime Session fed by a bundle's tokenizer (a
    `runtimes.tokenizer.BundleTokenizer` over the bundle's tokenizer.json): the ids the runtime
    computes (truncation to the manifest's max_length and side), batched in the given order, each
    batch padded to its own longest sequence by `BundleTokenizer.to_arrays`, as `Classifier.logits`
    pads. The post-export check, its PyTorch reference (the torch backend's session) and verify's
    PyTorch student all run through here, so they see the ids of the tokenizer that ships."""
    ids = tokenizer.encode(list(texts))
    out = [np.asarray(session.run(tokenizer.to_arrays(ids[i : i + batch_size], session.input_names,
                                                      session.input_dtype)), dtype=np.float32)
           for i in range(0, len(ids), batch_size)]
    return np.concatenate(out) if out else np.zeros((0, 0), dtype=np.float32)
