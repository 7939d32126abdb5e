"""`edgekd info bundle/`: the manifest as readable tables (artifacts, labels, tokenizer, contract,
provenance, export-time parity). Torch-free."""

from __future__ import annotations

import argparse
import json
from typing import Any

HELP = "show a bundle's artifacts, labels, tokenizer settings, contract and parity"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("bundle", help="bundle directory or .zip")
    parser.add_argument("--json", action="store_true", help="print the manifest as JSON")


def run(args: argparse.Namespace) -> int:
    """Read the manifest (checking its contract) and print it."""
    from rich.console import Console

    from edgekd.bundle import open_bundle, read_manifest

    manifest = read_manifest(open_bundle(args.bundle))
    console = Console()
    if args.json:
        print(json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False))
        return 0
    console.print(_artifacts_table(manifest))
    console.print(_settings_table(manifest))
    console.print(_parity_table(manifest))
    return 0


def _artifacts_table(manifest: Any) -> Any:
    from rich.table import Table

    table = Table(title=f"artifacts ({len(manifest.artifacts)})")
    for col in ("backend", "precision", "path", "size", "sha256", "quantization", "float ops"):
        table.add_column(col)
    for a in manifest.artifacts:
        q = a.quantization or {}
        quant = ", ".join(str(q[k]) for k in ("variant", "mode", "tool") if k in q) or "-"
        table.add_row(a.backend, a.precision, a.path, _size(a.bytes), a.sha256[:12], quant,
                      str(len(a.float_ops)) if a.quantization else "-")
    return table


def _settings_table(manifest: Any) -> Any:
    from rich.table import Table

    t = manifest.tokenizer
    prov = manifest.provenance
    cal = manifest.calibration or {}
    table = Table(title="bundle", show_header=False)
    table.add_column("key", style="bold")
    table.add_column("value")
    rows = [
        ("labels", ", ".join(manifest.labels)),
        ("tokenizer", f"max_length={t.max_length}, inputs={','.join(t.inputs)}, pad_id={t.pad_id}, "
                      f"truncation={t.truncation_side}"),
        ("contract", manifest.contract),
        ("model", str(prov.get("model_dir", "-"))),
        ("dataset fingerprint", str(prov.get("dataset_fingerprint") or "-")[:16]),
        ("created", str(prov.get("created", "-"))),
        ("versions", ", ".join(f"{k} {v}" for k, v in (prov.get("versions") or {}).items())),
    ]
    if cal:
        rows.append(("calibration", f"{cal.get('size')} texts, seed {cal.get('seed')}, "
                                    f"labels {cal.get('label_counts')}"))
    for key, value in rows:
        table.add_row(key, value)
    return table


def _parity_table(manifest: Any) -> Any:
    from rich.table import Table

    table = Table(title="export-time parity (artifact vs PyTorch)")
    for col in ("artifact", "status", "n", "max |dlogit|", "max |dprob|", "agreement", "flips", "engine / reason"):
        table.add_column(col)
    for name, p in manifest.parity.items():
        cells = [_cell(p, k, f) for k, f in (("n", "{}"), ("max_abs_logit", "{:.2e}"), ("max_abs_prob", "{:.2e}"),
                                            ("agreement", "{:.4f}"), ("flips", "{}"))]
        table.add_row(name, p.get("status", "-"), *cells, p.get("engine") or p.get("reason", ""))
    return table


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    return fmt.format(row[key]) if key in row else "-"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"
