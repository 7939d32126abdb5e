"""Load a labelled text-classification dataset into train / validation / test splits.

A dataset spec (`DataSpec.path`) is one of:

- a directory holding `train`, `validation` (or `valid`, `dev`) and `test` files, each CSV, TSV,
  JSONL or Parquet, optionally gzipped (`train.csv.gz`, `test.jsonl`, ...). `train` is required;
- a single file: it is the train pool, and test then validation are carved from it (stratified);
- `hf:NAME` or `hf:NAME:CONFIG`: a Hugging Face dataset through `datasets.load_dataset`.

Rules, in order: several text columns are joined with a space; raw labels are merged into groups
by a label map (YAML `{group: [raw labels...]}`); rows whose text is empty or whitespace are dropped
and counted in `Splits.report`; a missing test split is carved from train (`validation_fraction`
of it, stratified, fixed seed), then a missing validation split likewise; `max_train_samples`
then keeps a stratified sample of train. A carved validation split is sized from the sampled
train size, so a small-slice run does not evaluate on thousands of rows.

Reading the files is `edgekd.readers`'; `stratified_sample` is the one stratified sampler.
"""

from __future__ import annotations

import hashlib
from collections.abc import Hashable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

import numpy as np

from edgekd.errors import DataError
from edgekd.readers import FORMATS, SPLIT_STEMS, find_split_file, read_file, read_frames

if TYPE_CHECKING:
    import pandas as pd
    from rich.console import Console

__all__ = ["FORMATS", "SPLIT_NAMES", "SPLIT_STEMS", "DataSpec", "Split", "Splits", "load_splits", "print_data_report",
           "read_test_file", "stratified_sample"]

SPLIT_NAMES = ("train", "validation", "test")
Rows = tuple[list[str], list[str]]  # (texts, raw label names) of one split while loading


@dataclass
class DataSpec:
    """Where a dataset lives and how to read it (see the module docstring)."""

    path: str
    text_columns: list[str] = field(default_factory=lambda: ["text"])
    label_column: str = "label"
    label_map: str | dict[str, list[str]] | None = None
    max_train_samples: int | None = None
    seed: int = 42
    validation_fraction: float = 0.1

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready copy (written into `edgekd-model.json`)."""
        return asdict(self)


@dataclass
class Split:
    """Texts and label ids (indices into `Splits.labels`), in dataset order."""

    texts: list[str]
    labels: np.ndarray  # [n] int64

    def __len__(self) -> int:
        return len(self.texts)


@dataclass
class Splits:
    """The three splits, the ordered label names, a content fingerprint and a load report."""

    train: Split
    validation: Split
    test: Split
    labels: list[str]
    fingerprint: str
    report: dict[str, Any]

    def items(self) -> list[tuple[str, Split]]:
        """[(split name, split)] in train, validation, test order."""
        return [(name, getattr(self, name)) for name in SPLIT_NAMES]


def load_splits(spec: DataSpec, labels: list[str] | None = None) -> Splits:
    """Read, clean, carve and sample the splits of `spec`.

    `labels` fixes the label order (e.g. a checkpoint's id2label); otherwise labels are the sorted
    train label names. Raises `DataError` naming the fix for any unusable input.
    """
    if spec.max_train_samples is not None and spec.max_train_samples < 2:
        raise DataError(f"--max-train-samples must be at least 2, got {spec.max_train_samples}")
    if not 0.0 < spec.validation_fraction < 0.5:
        raise DataError(f"validation_fraction must be in (0, 0.5), got {spec.validation_fraction}")
    frames, origins = read_frames(spec.path)
    group_of = _load_label_map(spec.label_map)
    raw: dict[str, Rows] = {}
    dropped: dict[str, int] = {}
    for name, frame in frames.items():
        texts, names, dropped[name] = _clean(frame, spec, origins[name])
        raw[name] = (texts, names)
    if group_of is not None:
        raw = _apply_label_map(raw, group_of, spec.label_map)
    for name, (texts, _) in raw.items():
        if not texts:
            raise DataError(f"the {name} split ({origins[name]}) has no rows with text "
                            f"({dropped[name]} empty texts dropped); give it labelled rows")
    _check_classes(raw["train"][1], origins["train"])
    raw, origins = _carve_missing(raw, origins, spec)
    raw["train"] = _sample_train(raw["train"], spec)
    return _assemble(raw, origins, dropped, spec, labels)


def read_test_file(path: str | Path, text_columns: list[str], label_column: str) -> tuple[list[str], list[str], str] | None:
    """(texts, raw label names, source file) of a labelled test file, or of a directory's test split
    file, read as is (no sampling, no carving, empty texts dropped); None when `path` has neither."""
    path = Path(path).expanduser()
    found = path if path.is_file() else find_split_file(path, SPLIT_STEMS["test"]) if path.is_dir() else None
    if found is None:
        return None
    spec = DataSpec(path=str(found), text_columns=text_columns, label_column=label_column)
    texts, names, _ = _clean(read_file(found), spec, str(found))
    return texts, names, str(found)


def _column_strings(frame: pd.DataFrame, column: str) -> list[str]:
    values = frame[column].tolist()
    return ["" if v is None or (isinstance(v, float) and v != v) else str(v) for v in values]


def _clean(frame: pd.DataFrame, spec: DataSpec, origin: str) -> tuple[list[str], list[str], int]:
    """(texts, raw label names, dropped count): texts joined from the text columns, empty dropped."""
    missing = [c for c in [*spec.text_columns, spec.label_column] if c not in frame.columns]
    if missing:
        have = ", ".join(map(str, frame.columns))
        raise DataError(f"column(s) {', '.join(missing)} not in {origin} (columns: {have}); "
                        "pass --text-column / --label-column")
    parts = [_column_strings(frame, c) for c in spec.text_columns]
    joined = [" ".join(p.strip() for p in row if p.strip()) for row in zip(*parts, strict=True)]
    names = [s.strip() for s in _column_strings(frame, spec.label_column)]
    keep = [i for i, t in enumerate(joined) if t and names[i]]
    no_label = sum(1 for t, n in zip(joined, names, strict=True) if t and not n)
    if no_label:
        raise DataError(f"{no_label} row(s) in {origin} have text but an empty label; fill or "
                        "remove them")
    return [joined[i] for i in keep], [names[i] for i in keep], len(joined) - len(keep)


def _load_label_map(label_map: str | dict[str, list[str]] | None) -> dict[str, str] | None:
    """{raw label: group} from a YAML file or dict `{group: [raw labels...]}`."""
    if label_map is None:
        return None
    if isinstance(label_map, dict):
        groups, where = label_map, "label map"
    else:
        import yaml

        path = Path(label_map).expanduser()
        if not path.is_file():
            raise DataError(f"label map '{label_map}' does not exist; give a YAML file "
                            "{group: [raw labels...]}")
        groups, where = yaml.safe_load(path.read_text(encoding="utf-8")), str(path)
    if not isinstance(groups, dict) or not groups:
        raise DataError(f"label map {where} must be a mapping {{group: [raw labels...]}}")
    group_of: dict[str, str] = {}
    for group, members in groups.items():
        members = [members] if isinstance(members, str) else members
        if not isinstance(members, list):
            raise DataError(f"label map {where}: group '{group}' must list raw labels, got {members!r}")
        for raw in map(str, members):
            if raw in group_of and group_of[raw] != str(group):
                raise DataError(f"label map {where}: raw label '{raw}' is in two groups "
                                f"('{group_of[raw]}', '{group}'); keep it in one")
            group_of[raw] = str(group)
    return group_of


def _apply_label_map(raw: dict[str, Rows], group_of: dict[str, str],
                     source: str | dict[str, list[str]] | None) -> dict[str, Rows]:
    unmapped = sorted({n for _, names in raw.values() for n in names if n not in group_of})
    if unmapped:
        shown = ", ".join(repr(u) for u in unmapped[:20])
        where = source if isinstance(source, str) else "the label map"
        raise DataError(f"raw label(s) {shown} are not in {where}; add them to a group")
    return {k: (texts, [group_of[n] for n in names]) for k, (texts, names) in raw.items()}


def _check_classes(names: list[str], origin: str) -> None:
    classes = sorted(set(names))
    if len(classes) < 2:
        raise DataError(f"the train split ({origin}) has one class only ({classes[0]!r}); a "
                        "classifier needs at least two: check --label-column or the label map")


def stratified_sample(labels: Sequence[Hashable] | np.ndarray, n: int, seed: int,
                      method: Literal["sklearn", "quota", "largest_remainder"] = "sklearn") -> np.ndarray:
    """Sorted indices of a stratified sample of `n` rows of `labels` (a class name, id or any sortable
    stratum key per row), fixed by `seed`.

    The one stratified sampler, with three methods because each one's output is recorded (dataset
    fingerprints, calibration records, stamps) and must stay the same for a seed:
    - "sklearn" (carving test/validation, `max_train_samples`): scikit-learn's stratified
      `train_test_split`, exactly `n` rows; plain random when a class has one row or `n` cannot hold
      every class; every row when `n` >= the rows.
    - "quota" (the pipeline's `max_test_samples`): each class gets floor(share * n) rows and at least
      one, the rounding remainder goes to the largest classes, rows drawn per class by a permutation
      (about `n` rows: more when many classes are tiny).
    - "largest_remainder" (calibration sets, strata = (label, length bin)): proportional allocation
      with largest remainders (ties: the larger stratum, then the one seen first), at most a stratum's
      size each, rows drawn per stratum in sorted key order; min(n, rows) rows.
    """
    if method == "quota":
        return _quota_sample(np.asarray(labels), n, seed)
    if method == "largest_remainder":
        return _largest_remainder_sample(labels, n, seed)
    if method != "sklearn":
        raise ValueError(f"stratified_sample method must be sklearn, quota or largest_remainder, got {method!r}")
    from sklearn.model_selection import train_test_split

    idx = np.arange(len(labels))
    if n >= len(labels):
        return idx
    counts = np.unique(labels, return_counts=True)[1]
    can_stratify = counts.min() >= 2 and len(counts) <= n <= len(labels) - len(counts)
    picked, _ = train_test_split(idx, train_size=n, random_state=seed,
                                 stratify=labels if can_stratify else None)
    return np.sort(picked)


def _quota_sample(labels: np.ndarray, n: int, seed: int) -> np.ndarray:
    rng = np.random.default_rng(seed)
    classes, counts = np.unique(labels, return_counts=True)
    quota = np.maximum(1, np.floor(counts / counts.sum() * n).astype(int))
    for i in np.argsort(-counts)[: max(0, n - int(quota.sum()))]:
        quota[i] += 1  # hand the rounding remainder to the largest classes
    picked = [rng.permutation(np.flatnonzero(labels == c))[:q] for c, q in zip(classes, quota, strict=True)]
    return np.sort(np.concatenate(picked))


def _largest_remainder_sample(keys: Sequence[Hashable], n: int, seed: int) -> np.ndarray:
    strata: dict[Hashable, list[int]] = {}  # in order of first appearance (the allocation's tie-break)
    for i, key in enumerate(keys):
        strata.setdefault(key, []).append(i)
    alloc = _allocate({k: len(v) for k, v in strata.items()}, min(n, len(keys)))
    rng = np.random.default_rng(seed)
    picked: list[int] = []
    for key in sorted(strata):
        if alloc[key]:
            picked.extend(rng.choice(strata[key], size=alloc[key], replace=False).tolist())
    return np.sort(np.asarray(picked, dtype=np.int64))


def _allocate(strata_sizes: dict[Hashable, int], size: int) -> dict[Hashable, int]:
    """Proportional allocation with largest remainders; every stratum gets at most its size."""
    total = sum(strata_sizes.values())
    raw = {k: size * n / total for k, n in strata_sizes.items()}
    alloc = {k: min(int(r), strata_sizes[k]) for k, r in raw.items()}
    left = size - sum(alloc.values())
    for k in sorted(raw, key=lambda k: (raw[k] - int(raw[k]), strata_sizes[k]), reverse=True):
        if left <= 0:
            break
        if alloc[k] < strata_sizes[k]:
            alloc[k] += 1
            left -= 1
    return alloc


def _split_off(pool: Rows, n: int, seed: int) -> tuple[Rows, Rows]:
    """(rest, carved) where carved is a stratified sample of n rows of pool, both in pool order."""
    texts, names = pool
    carved = stratified_sample(names, n, seed)
    mask = np.zeros(len(names), dtype=bool)
    mask[carved] = True
    rest, kept = np.flatnonzero(~mask), np.flatnonzero(mask)
    return ([texts[i] for i in rest], [names[i] for i in rest]), ([texts[i] for i in kept], [names[i] for i in kept])


def _carve_missing(raw: dict[str, Rows], origins: dict[str, str], spec: DataSpec
                   ) -> tuple[dict[str, Rows], dict[str, str]]:
    """Carve test, then validation, out of train when the dataset does not provide them."""
    fraction = spec.validation_fraction
    if "test" not in raw:
        n = max(2, round(fraction * len(raw["train"][0])))
        raw["train"], raw["test"] = _split_off(raw["train"], n, spec.seed)
        origins["test"] = f"carved from train ({fraction:.0%}, stratified, seed {spec.seed})"
    if "validation" not in raw:
        pool = len(raw["train"][0])
        if spec.max_train_samples is not None:
            pool = min(pool, spec.max_train_samples)
        n = max(2, round(fraction * pool))
        raw["train"], raw["validation"] = _split_off(raw["train"], n, spec.seed + 1)
        origins["validation"] = f"carved from train ({n} rows, stratified, seed {spec.seed + 1})"
    if not raw["train"][0]:
        raise DataError(f"the train split ({origins['train']}) is empty after carving validation "
                        "and test; give more rows or separate validation/test files")
    return raw, origins


def _sample_train(train: Rows, spec: DataSpec) -> Rows:
    if spec.max_train_samples is None or spec.max_train_samples >= len(train[0]):
        return train
    _, sampled = _split_off(train, spec.max_train_samples, spec.seed)
    return sampled


def _assemble(raw: dict[str, Rows], origins: dict[str, str], dropped: dict[str, int], spec: DataSpec,
              labels: list[str] | None) -> Splits:
    train_classes = set(raw["train"][1])
    for name in ("validation", "test"):
        unknown = sorted(set(raw[name][1]) - train_classes)
        if unknown:
            raise DataError(f"label(s) {', '.join(map(repr, unknown))} in the {name} split "
                            f"({origins[name]}) never occur in train; fix the data or merge them "
                            "with --label-map")
    if labels is None:
        labels = sorted(train_classes)
    else:
        labels = [str(x) for x in labels]
        unknown = sorted(train_classes - set(labels))
        if unknown:
            raise DataError(f"label(s) {', '.join(map(repr, unknown))} in the data are not among "
                            f"the model's labels {labels}; use data with the model's label set")
    index = {name: i for i, name in enumerate(labels)}
    splits = {k: Split(list(raw[k][0]), np.array([index[n] for n in raw[k][1]], dtype=np.int64))
              for k in SPLIT_NAMES}
    report = _report(splits, labels, origins, dropped, spec)
    return Splits(splits["train"], splits["validation"], splits["test"], labels,
                  _fingerprint(splits, labels), report)


def _report(splits: dict[str, Split], labels: list[str], origins: dict[str, str], dropped: dict[str, int],
            spec: DataSpec) -> dict[str, Any]:
    out: dict[str, Any] = {"source": spec.path, "labels": labels, "splits": {}}
    for name, split in splits.items():
        counts = np.bincount(split.labels, minlength=len(labels))
        out["splits"][name] = {
            "rows": len(split),
            "empty_dropped": int(dropped.get(name, 0)),
            "origin": origins[name],
            "counts": {label: int(c) for label, c in zip(labels, counts, strict=True)},
        }
    return out


def _fingerprint(splits: dict[str, Split], labels: list[str]) -> str:
    """sha256 over every split's texts and label names, in order."""
    h = hashlib.sha256()
    for name in SPLIT_NAMES:
        h.update(f"[{name}]\n".encode())
        for text, y in zip(splits[name].texts, splits[name].labels.tolist(), strict=True):
            h.update(text.encode("utf-8"))
            h.update(b"\x1f")
            h.update(labels[y].encode("utf-8"))
            h.update(b"\x1e")
    return h.hexdigest()


def print_data_report(splits: Splits, console: Console | None = None) -> None:
    """Print a table of class counts per split and the number of dropped empty texts."""
    from rich.console import Console
    from rich.table import Table

    console = console or Console(stderr=True)
    info = splits.report["splits"]
    table = Table(title=f"data: {splits.report['source']}")
    table.add_column("label")
    for name in SPLIT_NAMES:
        table.add_column(name, justify="right")
    for label in splits.labels:
        table.add_row(label, *(str(info[n]["counts"][label]) for n in SPLIT_NAMES))
    table.add_section()
    table.add_row("total", *(str(info[n]["rows"]) for n in SPLIT_NAMES))
    table.add_row("empty texts dropped", *(str(info[n]["empty_dropped"]) for n in SPLIT_NAMES))
    console.print(table)
    for name in SPLIT_NAMES:
        console.print(f"  {name}: {info[name]['origin']}")
