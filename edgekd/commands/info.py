"""`edgekd info bundle/`: the manifest as readable tables (artifacts, labels, tokenizer, contract,
provenance, export-time parity) and which artifact `edgekd.load` picks on this device, and why. Torch-free."""

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
    from edgekd.bundle import open_bundle, read_manifest
    from edgekd.console import make_console

    root = open_bundle(args.bundle)
    manifest = read_manifest(root)
    if args.json:
        print(json.dumps(manifest.to_dict(), indent=2, ensure_ascii=False))
        return 0
    console = make_console()
    _print_artifacts(console, manifest)
    _print_settings(console, manifest)
    _print_parity(console, manifest)
    _print_choice(console, root, manifest, args.bundle)
    return 0


def _print_choice(console: Any, root: Any, manifest: Any, source: str) -> None:
    """What backend="auto", precision="auto" loads here, for each `prefer`, and why."""
    from edgekd.console import print_table
    from edgekd.errors import EdgekdError
    from edgekd.runtimes.choice import PREFER
    from edgekd.runtimes.classifier import choose

    rows = []
    for prefer in PREFER:
        try:
            _, _, choice = choose(root, manifest, prefer=prefer, source=source)
        except EdgekdError as exc:  # e.g. no engine here runs any artifact of the bundle
            rows.append([prefer, "-", "none", str(exc)])
            continue
        rows.append([prefer, choice.artifact, choice.rule, choice.reason])
    print_table(console, "edgekd.load(bundle) on this device (backend and precision auto)",
                ("prefer", "artifact", "rule", "why"), rows)


def _print_artifacts(console: Any, manifest: Any) -> None:
    from edgekd.console import print_table

    rows = []
    for a in manifest.artifacts:
        q = a.quantization or {}
        quant = ", ".join(str(q[k]) for k in ("variant", "mode", "tool") if k in q) or "-"
        rows.append([a.backend, a.precision, a.path, _size(a.bytes), a.sha256[:12], quant,
                     str(len(a.float_ops)) if a.quantization else "-"])
    print_table(console, f"artifacts ({len(manifest.artifacts)})",
                ("backend", "precision", "path", "size", "sha256", "quantization", "float ops"), rows)


def _print_settings(console: Any, manifest: Any) -> None:
    from rich.text import Text

    from edgekd.console import print_table

    t = manifest.tokenizer
    prov = manifest.provenance
    cal = manifest.calibration or {}
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
    print_table(console, "bundle", ("key", "value"), [[Text(key, style="bold"), value] for key, value in rows],
                show_header=False)


def _print_parity(console: Any, manifest: Any) -> None:
    from edgekd.console import print_table

    rows = []
    for name, p in manifest.parity.items():
        cells = [_cell(p, k, f) for k, f in (("n", "{}"), ("max_abs_logit", "{:.2e}"), ("max_abs_prob", "{:.2e}"),
                                            ("agreement", "{:.4f}"), ("flips", "{}"))]
        rows.append([name, p.get("status", "-"), *cells, p.get("engine") or p.get("reason", "")])
    print_table(console, "export-time parity (artifact vs PyTorch)",
                ("artifact", "status", "n", "max |dlogit|", "max |dprob|", "agreement", "flips", "engine / reason"),
                rows)


def _cell(row: dict[str, Any], key: str, fmt: str) -> str:
    return fmt.format(row[key]) if key in row else "-"


def _size(n: int) -> str:
    return f"{n / 1e6:.2f} MB" if n >= 1e5 else f"{n / 1e3:.1f} kB"
