"""edgekd.data: formats, carving, sampling, label maps, the report, and every data error
(through the API and through the CLI: one line on stderr, exit 2)."""

from __future__ import annotations

from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from conftest import read_texts

from edgekd.cli import main
from edgekd.data import DataSpec, load_splits, print_data_report
from edgekd.errors import DataError


def _frame(n: int = 60, labels: tuple[str, ...] = ("a", "b", "c"), offset: int = 0) -> pd.DataFrame:
    return pd.DataFrame({
        "text": [f"row {i + offset} about {labels[i % len(labels)]}" for i in range(n)],
        "label": [labels[i % len(labels)] for i in range(n)],
        "title": [f"title {i + offset}" for i in range(n)],
    })


def _write(df: pd.DataFrame, path: Path) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    name = path.name.removesuffix(".gz")
    compression = "gzip" if path.name.endswith(".gz") else None
    if name.endswith(".csv"):
        df.to_csv(path, index=False, compression=compression)
    elif name.endswith(".tsv"):
        df.to_csv(path, index=False, sep="\t", compression=compression)
    elif name.endswith(".jsonl"):
        df.to_json(path, orient="records", lines=True, compression=compression)
    else:
        df.to_parquet(path, index=False)
    return path


def _dataset(root: Path, suffix: str = ".csv", **frames: pd.DataFrame) -> Path:
    frames = frames or {"train": _frame(60), "validation": _frame(15, offset=100),
                        "test": _frame(30, offset=200)}
    for split, df in frames.items():
        _write(df, root / f"{split}{suffix}")
    return root


def test_ag_news_directory_loads_with_carved_validation(shared_data: Path) -> None:
    splits = load_splits(DataSpec(str(shared_data / "ag_news")))
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (21058, 2340, 7600)
    assert splits.labels == ["Business", "Sci/Tech", "Sports", "World"]
    texts, names = read_texts("ag_news", "test", 5)
    assert splits.test.texts[:5] == texts  # dataset order is kept
    assert [splits.labels[i] for i in splits.test.labels[:5]] == names
    assert "carved" in splits.report["splits"]["validation"]["origin"]
    counts = splits.report["splits"]["validation"]["counts"]
    assert max(counts.values()) - min(counts.values()) < 60  # stratified: classes near 585 each


@pytest.mark.parametrize("suffix", [".csv", ".tsv", ".jsonl", ".parquet", ".csv.gz", ".jsonl.gz"])
def test_every_format_gives_the_same_splits(tmp_path: Path, suffix: str) -> None:
    reference = load_splits(DataSpec(str(_dataset(tmp_path / "csv"))))
    other = load_splits(DataSpec(str(_dataset(tmp_path / "other", suffix))))
    assert other.fingerprint == reference.fingerprint
    assert other.train.texts == reference.train.texts
    np.testing.assert_array_equal(other.test.labels, reference.test.labels)


def test_single_file_carves_stratified_test_and_validation(tmp_path: Path) -> None:
    path = _write(_frame(300), tmp_path / "all.csv")
    splits = load_splits(DataSpec(str(path)))
    assert (len(splits.train), len(splits.validation), len(splits.test)) == (243, 27, 30)
    for split in (splits.test, splits.validation):
        assert set(Counter(split.labels.tolist()).values()) == {len(split) // 3}
    all_texts = splits.train.texts + splits.validation.texts + splits.test.texts
    assert len(set(all_texts)) == 300  # disjoint and complete


def test_label_order_follows_given_labels(tmp_path: Path) -> None:
    splits = load_splits(DataSpec(str(_dataset(tmp_path))), labels=["c", "a", "b"])
    assert splits.labels == ["c", "a", "b"]
    assert splits.train.texts[0].endswith("about a") and splits.train.labels[0] == 1


def test_text_columns_are_joined(tmp_path: Path) -> None:
    splits = load_splits(DataSpec(str(_dataset(tmp_path)), text_columns=["title", "text"]))
    assert splits.train.texts[0] == "title 0 row 0 about a"


def test_max_train_samples_is_stratified_and_seeded(shared_data: Path) -> None:
    spec = DataSpec(str(shared_data / "ag_news"), max_train_samples=400)
    a, b = load_splits(spec), load_splits(spec)
    c = load_splits(DataSpec(str(shared_data / "ag_news"), max_train_samples=400, seed=7))
    assert len(a.train) == 400 and a.train.texts == b.train.texts and a.fingerprint == b.fingerprint
    assert a.train.texts != c.train.texts
    counts = np.bincount(a.train.labels)
    assert counts.min() >= 95 and counts.max() <= 105  # ~100 per class, like the full train split
    assert len(a.validation) == 40  # carved validation sized from the sample


def test_empty_texts_are_dropped_and_counted(tmp_path: Path) -> None:
    train = _frame(60)
    train.loc[[3, 7], "text"] = ["", "   "]
    splits = load_splits(DataSpec(str(_dataset(tmp_path, train=train, test=_frame(30, offset=200)))))
    assert splits.report["splits"]["train"]["empty_dropped"] == 2
    assert len(splits.train) + len(splits.validation) == 58


def test_label_map_merges_groups(tmp_path: Path) -> None:
    (tmp_path / "groups.yaml").write_text("vowel: [a]\nconsonant: [b, c]\n")
    splits = load_splits(DataSpec(str(_dataset(tmp_path / "d")), label_map=str(tmp_path / "groups.yaml")))
    assert splits.labels == ["consonant", "vowel"]
    assert np.bincount(splits.test.labels).tolist() == [20, 10]


def test_print_data_report_shows_counts(tmp_path: Path) -> None:
    from rich.console import Console

    console = Console(record=True, width=120)
    print_data_report(load_splits(DataSpec(str(_dataset(tmp_path)))), console)
    text = console.export_text()
    assert "empty texts dropped" in text and "│ a " in text and " 10 " in text  # 10 'a' rows in test


def _error_cases(tmp: Path) -> dict[str, tuple[DataSpec, str]]:
    """name -> (spec, a fragment the one-line message must contain)."""
    one_class = _dataset(tmp / "one", train=_frame(20, labels=("a",)), test=_frame(5, labels=("a",)))
    empty_test = _frame(10)
    empty_test["text"] = " "
    (tmp / "map.yaml").write_text("vowel: [a]\n")
    (tmp / "nofile").mkdir()
    return {
        "missing path": (DataSpec(str(tmp / "nope")), "does not exist"),
        "missing train file": (DataSpec(str(tmp / "nofile")), "no train file"),
        "missing column": (DataSpec(str(_dataset(tmp / "col")), text_columns=["body"]),
                           "columns: text, label, title"),
        "one class only": (DataSpec(str(one_class)), "one class only"),
        "empty split": (DataSpec(str(_dataset(tmp / "empty", train=_frame(30), test=empty_test))),
                        "the test split"),
        "unknown test label": (DataSpec(str(_dataset(tmp / "unk", train=_frame(30, labels=("a", "b")),
                                                     test=_frame(9)))), "'c'"),
        "unmapped raw label": (DataSpec(str(_dataset(tmp / "map")), label_map=str(tmp / "map.yaml")),
                               "'b', 'c'"),
        "missing label map": (DataSpec(str(_dataset(tmp / "m2")), label_map=str(tmp / "none.yaml")),
                              "none.yaml"),
        "unsupported format": (DataSpec(str(_write(_frame(5), tmp / "x.csv").rename(tmp / "x.xlsx"))),
                               "unsupported data file"),
    }


CASES = ["missing path", "missing train file", "missing column", "one class only", "empty split",
         "unknown test label", "unmapped raw label", "missing label map", "unsupported format"]


@pytest.mark.parametrize("case", CASES)
def test_data_error(tmp_path: Path, case: str) -> None:
    spec, fragment = _error_cases(tmp_path)[case]
    with pytest.raises(DataError, match=None) as info:
        load_splits(spec)
    assert fragment in str(info.value)


@pytest.mark.parametrize("case", CASES)
def test_data_error_through_cli(tmp_path: Path, case: str, capsys: pytest.CaptureFixture) -> None:
    spec, fragment = _error_cases(tmp_path)[case]
    argv = ["baseline", "--data", spec.path, "--out", str(tmp_path / "out"),
            "--text-column", ",".join(spec.text_columns)]
    if spec.label_map:
        argv += ["--label-map", str(spec.label_map)]
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("edgekd baseline: error:") and fragment in err
    assert not (tmp_path / "out").exists()  # validated before any work


def test_text_column_flag_accepts_repeats_and_commas() -> None:
    from edgekd.commands._common import text_columns_from_args

    assert text_columns_from_args(["title,description", "extra"]) == ["title", "description", "extra"]
    assert text_columns_from_args(None) == ["text"]


def test_hf_spec_converts_class_labels_and_split_names(monkeypatch: pytest.MonkeyPatch) -> None:
    # Offline: a real DatasetDict, handed out by a stand-in for load_dataset (which would download).
    import datasets

    features = datasets.Features({"sentence": datasets.Value("string"),
                                  "label": datasets.ClassLabel(names=["neg", "pos"])})
    rows = {"sentence": [f"s {i}" for i in range(40)], "label": [i % 2 for i in range(40)]}
    dsd = datasets.DatasetDict({"train": datasets.Dataset.from_dict(rows, features=features),
                                "dev": datasets.Dataset.from_dict(rows, features=features).select(range(6))})
    calls = []
    monkeypatch.setattr(datasets, "load_dataset", lambda *a: calls.append(a) or dsd)
    splits = load_splits(DataSpec("hf:glue:sst2", text_columns=["sentence"]))
    assert calls == [("glue", "sst2")]
    assert splits.labels == ["neg", "pos"] and len(splits.validation) == 6
    assert splits.report["splits"]["validation"]["origin"] == "hf:glue:sst2[dev]"
    assert "carved" in splits.report["splits"]["test"]["origin"] and len(splits.test) == 4
