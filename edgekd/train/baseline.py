"""TF-IDF (word 1-2 grams) + logistic regression baseline, saved without pickle.

A baseline directory holds:

    baseline.json     format, labels, vectorizer and classifier settings, library versions
    vocabulary.json   the n-gram terms, position = feature index
    weights.npz       idf [n_features], coef [n_classes or 1, n_features], intercept
    metrics.json + confusion_matrix.png + class_distribution.png   (test split)

`load_baseline(dir)` rebuilds the exact predictor from these files: scikit-learn's
`TfidfVectorizer` with the saved vocabulary and idf, and the linear layer in numpy.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from edgekd.errors import ModelError

if TYPE_CHECKING:
    from edgekd.data import DataSpec


BASELINE_JSON = "baseline.json"
VOCABULARY_JSON = "vocabulary.json"
WEIGHTS_NPZ = "weights.npz"
FORMAT = "edgekd-baseline/1"

# Why each setting: 1-2 grams is the classic strong bag-of-words baseline; sublinear tf damps
# repeated words; min_df=2 drops hapax n-grams (half the vocabulary, no accuracy).
VECTORIZER_SETTINGS: dict[str, Any] = {
    "ngram_range": [1, 2], "lowercase": True, "sublinear_tf": True, "min_df": 2,
    "norm": "l2", "use_idf": True, "smooth_idf": True, "strip_accents": None,
    "token_pattern": r"(?u)\b\w\w+\b",
}
# C=10: TF-IDF features are l2-normalised, so a weak penalty fits best on news-sized data.
CLASSIFIER_SETTINGS: dict[str, Any] = {"C": 10.0, "max_iter": 1000}


class BaselineModel:
    """A fitted TF-IDF vectorizer plus a linear layer; `logits(texts)` -> [n, num_labels]."""

    def __init__(self, vectorizer: Any, coef: np.ndarray, intercept: np.ndarray, labels: list[str]) -> None:
        self.vectorizer = vectorizer
        self.coef = np.asarray(coef, dtype=np.float64)  # [n_classes or 1 (binary), n_features]
        self.intercept = np.asarray(intercept, dtype=np.float64)
        self.labels = list(labels)
        self.sklearn_classifier: Any = None  # the fitted LogisticRegression, in memory only

    def logits(self, texts: list[str]) -> np.ndarray:
        """Decision scores [n, num_labels]; binary models get [0, z] so softmax = sklearn's proba."""
        x = self.vectorizer.transform(texts)
        z = np.asarray(x @ self.coef.T) + self.intercept
        if self.coef.shape[0] == 1:
            z = np.hstack([np.zeros_like(z), z])
        return z

    def predict_proba(self, texts: list[str]) -> np.ndarray:
        """Class probabilities [n, num_labels] (softmax of `logits`)."""
        z = self.logits(texts)
        z = np.exp(z - z.max(axis=1, keepdims=True))
        return z / z.sum(axis=1, keepdims=True)

    def save(self, out_dir: str | Path) -> None:
        """Write baseline.json, vocabulary.json and weights.npz (no pickle)."""
        import sklearn

        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        vocab = self.vectorizer.vocabulary_
        terms = [""] * len(vocab)
        for term, index in vocab.items():
            terms[index] = term
        (out / VOCABULARY_JSON).write_text(json.dumps(terms, ensure_ascii=False), encoding="utf-8")
        np.savez_compressed(out / WEIGHTS_NPZ, idf=self.vectorizer.idf_, coef=self.coef,
                            intercept=self.intercept)
        meta = {"format": FORMAT, "labels": self.labels, "vectorizer": VECTORIZER_SETTINGS,
                "classifier": CLASSIFIER_SETTINGS, "n_features": len(terms),
                "versions": {"scikit-learn": sklearn.__version__, "numpy": np.__version__}}
        (out / BASELINE_JSON).write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")


def _vectorizer(settings: dict[str, Any], vocabulary: dict[str, int] | None = None) -> Any:
    from sklearn.feature_extraction.text import TfidfVectorizer

    kwargs = dict(settings)
    kwargs["ngram_range"] = tuple(kwargs["ngram_range"])
    if vocabulary is not None:
        kwargs.pop("min_df")  # the vocabulary is fixed; min_df only applies when fitting
    return TfidfVectorizer(vocabulary=vocabulary, dtype=np.float64, **kwargs)


def fit_baseline(texts: list[str], y: np.ndarray, labels: list[str], seed: int = 42) -> BaselineModel:
    """Fit TF-IDF + logistic regression on `texts` with label ids `y` (indices into `labels`)."""
    from sklearn.linear_model import LogisticRegression

    from edgekd.blas import blas_threads

    vectorizer = _vectorizer(VECTORIZER_SETTINGS)
    x = vectorizer.fit_transform(texts)
    # One BLAS thread: lbfgs on sparse TF-IDF gains nothing from threads, and on a busy machine
    # the thread pool oversubscribes the cores (measured 30x slower on 2 shared cores).
    with blas_threads(1):
        clf = LogisticRegression(random_state=seed, **CLASSIFIER_SETTINGS).fit(x, y)
    if list(clf.classes_) != list(range(len(labels))):
        raise ModelError(f"the train split holds label ids {list(clf.classes_)} but {len(labels)} "
                         "labels were given; every label needs training rows")
    model = BaselineModel(vectorizer, clf.coef_, clf.intercept_, labels)
    model.sklearn_classifier = clf
    return model


def is_baseline_dir(path: str | Path) -> bool:
    """True when `path` is a directory written by `BaselineModel.save`."""
    return (Path(path) / BASELINE_JSON).is_file()


def load_baseline(path: str | Path) -> BaselineModel:
    """Rebuild the predictor saved in `path` (no pickle involved)."""
    base = Path(path)
    if not is_baseline_dir(base):
        raise ModelError(f"'{path}' is not a baseline directory (no {BASELINE_JSON}); run "
                         "'edgekd baseline --data D --out DIR' first")
    meta = json.loads((base / BASELINE_JSON).read_text(encoding="utf-8"))
    if meta.get("format") != FORMAT:
        raise ModelError(f"baseline format {meta.get('format')!r} in '{path}' is not {FORMAT!r}; "
                         "retrain it with this edgekd version")
    terms = json.loads((base / VOCABULARY_JSON).read_text(encoding="utf-8"))
    with np.load(base / WEIGHTS_NPZ, allow_pickle=False) as weights:
        idf, coef, intercept = weights["idf"], weights["coef"], weights["intercept"]
    vectorizer = _vectorizer(meta["vectorizer"], {t: i for i, t in enumerate(terms)})
    vectorizer.idf_ = idf
    return BaselineModel(vectorizer, coef, intercept, meta["labels"])


def train_baseline(spec: DataSpec, out_dir: str | Path, console: Any = None) -> dict[str, Any]:
    """Load the data of `spec` (a DataSpec), fit, save and evaluate on the test split.

    Writes the model files, metrics.json and the PNGs into `out_dir`; returns the metrics (with
    `train_seconds`, `fit_rows` and the dataset fingerprint added).
    """
    from edgekd.data import load_splits, print_data_report
    from edgekd.metrics import evaluate_logits, split_counts, write_metrics

    splits = load_splits(spec)
    print_data_report(splits, console)
    start = time.perf_counter()
    model = fit_baseline(splits.train.texts, splits.train.labels, splits.labels, seed=spec.seed)
    seconds = time.perf_counter() - start
    model.save(out_dir)
    metrics = evaluate_logits(model.logits(splits.test.texts), splits.test.labels, splits.labels)
    metrics.update({"model": "tfidf-logreg", "train_seconds": round(seconds, 2),
                    "fit_rows": len(splits.train), "dataset_fingerprint": splits.fingerprint,
                    "data": spec.to_dict()})
    write_metrics(metrics, out_dir, split_counts(splits.report), title="(baseline, test)")
    return metrics
