"""Dataset file readers: a dataset spec's path -> one pandas DataFrame of strings per split.

A path is a directory holding `train`, `validation` (or `valid`, `dev`, `val`) and `test` files, each
CSV, TSV, JSONL or Parquet, optionally gzipped; a single file (the train pool); or `hf:NAME[:CONFIG]`
(a Hugging Face dataset through `datasets.load_dataset`, ClassLabel ids turned into names). Cleaning,
label maps, carving and sampling are `edgekd.data`'s; this module only reads.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any

from edgekd.errors import DataError

if TYPE_CHECKING:
    import pandas as pd

# File stems accepted for each split, first match wins.
SPLIT_STEMS = {"train": ("train",), "validation": ("validation", "valid", "dev", "val"), "test": ("test",)}
# Suffix -> reader kind; each may also end in .gz.
FORMATS = {".csv": "csv", ".tsv": "tsv", ".jsonl": "jsonl", ".json": "jsonl", ".parquet": "parquet"}


def read_frames(path: str) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """{split: DataFrame} for the splits that exist, and {split: where it came from}."""
    if path.startswith("hf:"):
        return read_hf(path[3:])
    p = Path(path).expanduser()
    if not p.exists():
        raise DataError(f"dataset path '{path}' does not exist; give a directory with train/test "
                        "files, a single CSV/TSV/JSONL/Parquet file, or hf:NAME")
    if p.is_file():
        return {"train": read_file(p)}, {"train": str(p)}
    frames, origins = {}, {}
    for split, stems in SPLIT_STEMS.items():
        found = find_split_file(p, stems)
        if found is not None:
            frames[split], origins[split] = read_file(found), str(found)
    if "train" not in frames:
        have = sorted(x.name for x in p.iterdir())[:10]
        raise DataError(f"no train file in '{p}' (found: {', '.join(have) or 'nothing'}); add "
                        "train.csv (or .tsv/.jsonl/.parquet, optionally .gz)")
    return frames, origins


def find_split_file(directory: Path, stems: tuple[str, ...]) -> Path | None:
    """The first `<stem><suffix>[.gz]` file of `directory`, stems in order, then FORMATS in order."""
    for stem in stems:
        for suffix in FORMATS:
            for name in (f"{stem}{suffix}", f"{stem}{suffix}.gz"):
                if (directory / name).is_file():
                    return directory / name
    return None


def read_file(path: Path) -> pd.DataFrame:
    """A DataFrame of strings from one CSV/TSV/JSONL/Parquet file (optionally gzipped)."""
    import pandas as pd

    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes = suffixes[:-1]
    kind = FORMATS.get(suffixes[-1] if suffixes else "")
    if kind is None:
        raise DataError(f"unsupported data file '{path.name}'; use .csv, .tsv, .jsonl or .parquet "
                        "(optionally .gz)")
    try:
        if kind in ("csv", "tsv"):
            return pd.read_csv(path, sep="," if kind == "csv" else "\t", dtype=str,
                               keep_default_na=False)
        if kind == "jsonl":
            return pd.read_json(path, lines=True, dtype=False)
        return pd.read_parquet(path)
    except (ValueError, OSError, pd.errors.ParserError) as exc:
        first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise DataError(f"cannot read '{path}' as {kind}: {first}; fix or re-export the file") from exc


def read_hf(ref: str) -> tuple[dict[str, pd.DataFrame], dict[str, str]]:
    """Splits of a Hugging Face dataset `NAME[:CONFIG]`, ClassLabel ids turned into names."""
    datasets = _require_datasets()
    name, _, config = ref.partition(":")
    try:
        dsd = datasets.load_dataset(name, config or None)
    except Exception as exc:  # noqa: BLE001 - datasets raises many types (hub, offline, file)
        raise DataError(f"cannot load Hugging Face dataset '{ref}': {str(exc).splitlines()[0]}; "
                        "check the name, or download it and pass a local directory") from exc
    frames, origins = {}, {}
    for split, stems in SPLIT_STEMS.items():
        key = next((s for s in stems if s in dsd), None)
        if key is None:
            continue
        ds = dsd[key]
        frame = ds.to_pandas()
        for column, feature in ds.features.items():
            if hasattr(feature, "int2str"):  # ClassLabel: store names, not ids
                frame[column] = [feature.int2str(int(v)) for v in frame[column]]
        frames[split], origins[split] = frame, f"hf:{ref}[{key}]"
    if "train" not in frames:
        raise DataError(f"Hugging Face dataset '{ref}' has no train split (has: {', '.join(dsd)})")
    return frames, origins


def _require_datasets() -> Any:  # the `datasets` module
    from edgekd.errors import require

    return require("datasets", "train", "Loading an hf: dataset")
