"""Merge several devices' verification reports into one side-by-side comparison: one table per
measure with a row per model (teacher, PyTorch student, each artifact) and a column per device.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError
from edgekd.verify.report import (
    _atomic_write,
    _html_table,
    _img,
    _md_table,
    _page,
    device_line,
    html,
    read_report,
)

# The measures compared across devices: title -> cell function of one model row (None when absent).
MEASURES: dict[str, Callable[[dict[str, Any]], str | None]] = {
    "batch-1 p50 latency (ms)": lambda m: _get(m, "latency", "batch1", "p50_ms", fmt="{:.2f}"),
    "batch-1 p99 latency (ms)": lambda m: _get(m, "latency", "batch1", "p99_ms", fmt="{:.2f}"),
    "throughput (texts/s)": lambda m: _get(m, "latency", "throughput", "texts_per_s", fmt="{:.0f}"),
    "cold start (s)": lambda m: _get(m, "latency", "cold_start", "total_s", fmt="{:.2f}"),
    "accuracy (%)": lambda m: _get(m, "accuracy", "accuracy", fmt="{:.2f}", scale=100),
    "agreement with PyTorch source (%)": lambda m: _get(m, "parity", "agreement", fmt="{:.2f}", scale=100),
    "max |Δlogit| vs PyTorch source": lambda m: _get(m, "parity", "max_abs_logit", fmt="{:.2e}"),
}


def _get(m: dict[str, Any], *keys: str, fmt: str, scale: float = 1.0) -> str | None:
    v: Any = m
    for k in keys:
        if not isinstance(v, dict) or v.get(k) is None:
            return None
        v = v[k]
    return fmt.format(float(v) * scale)


def merge_reports(reports: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """{devices: [device_id...], fingerprints, models: [name...], tables: {measure: {name: {device: cell}}},
    engines: {name: {device: engine}}, passed: {device: bool}, p50: {(name, device): ms}}.
    Two reports of the same device: the later one (by `created`) wins."""
    if not reports:
        raise EdgekdError("no reports to merge; pass report files: edgekd report a.json b.json --out report.html")
    by_device: dict[str, dict[str, Any]] = {}
    for r in sorted(reports, key=lambda r: r["created"]):
        by_device[r["device"]["device_id"]] = r
    devices = list(by_device)
    names: list[str] = []
    for r in by_device.values():
        names += [m["name"] for m in r["models"] if m["name"] not in names]
    tables: dict[str, dict[str, dict[str, str]]] = {t: {n: {} for n in names} for t in MEASURES}
    engines: dict[str, dict[str, str]] = {n: {} for n in names}
    p50: dict[tuple[str, str], float] = {}
    for device, r in by_device.items():
        for m in r["models"]:
            engines[m["name"]][device] = m["engine"]
            for title, cell in MEASURES.items():
                value = cell(m)
                if value is not None:
                    tables[title][m["name"]][device] = value
            if m.get("latency"):
                p50[(m["name"], device)] = m["latency"]["batch1"]["p50_ms"]
    return {"devices": devices, "fingerprints": {d: r["device"] for d, r in by_device.items()},
            "bundles": {d: r["bundle"]["path"] for d, r in by_device.items()},
            "models": names, "tables": tables, "engines": engines,
            "passed": {d: r["passed"] for d, r in by_device.items()}, "p50": p50}


def _rows(merged: dict[str, Any], title: str) -> list[list[str]]:
    table = merged["tables"][title]
    return [[n] + [table[n].get(d, "–") for d in merged["devices"]] for n in merged["models"]]


def merged_markdown(merged: dict[str, Any]) -> str:
    """Markdown: the devices, then one table per measure (rows: models, columns: devices)."""
    header = ["model"] + merged["devices"]
    out = ["# edgekd verification across devices", ""]
    for d in merged["devices"]:
        verdict = "gates passed" if merged["passed"][d] else "GATES FAILED"
        out.append(f"- **{d}** ({verdict}): {device_line(merged['fingerprints'][d])}")
    out.append("")
    engine_rows = [[n] + [merged["engines"][n].get(d, "–") for d in merged["devices"]] for n in merged["models"]]
    out += ["## engine", "", _md_table(header, engine_rows), ""]
    for title in MEASURES:
        out += [f"## {title}", "", _md_table(header, _rows(merged, title)), ""]
    return "\n".join(out)


def merged_html(merged: dict[str, Any]) -> str:
    """Self-contained HTML: device list, grouped latency chart, one table per measure."""
    from edgekd.verify import plots

    header = ["model"] + merged["devices"]
    items = "".join(f"<li><b>{html.escape(d)}</b> ({'gates passed' if merged['passed'][d] else 'GATES FAILED'}): "
                    f"{html.escape(device_line(merged['fingerprints'][d]))}</li>" for d in merged["devices"])
    chart = _img(plots.merged_latency_chart(merged["models"], merged["devices"], merged["p50"]), "latency by device")
    engine_rows = [[n] + [merged["engines"][n].get(d, "–") for d in merged["devices"]] for n in merged["models"]]
    tables = "".join(f"<h2>{html.escape(t)}</h2>{_html_table(header, _rows(merged, t))}" for t in MEASURES)
    body = (f"<h1>edgekd verification across {len(merged['devices'])} device(s)</h1><ul class='meta'>{items}</ul>"
            f"<div class='charts'>{chart}</div><h2>engine</h2>{_html_table(header, engine_rows)}{tables}")
    return _page("edgekd merged report", body)


def write_merged(paths: Sequence[str | Path], out_html: str | Path) -> dict[str, Path]:
    """Read and validate each report, merge them, write `out_html` and the `.md` beside it."""
    merged = merge_reports([read_report(p) for p in paths])
    out = Path(out_html)
    out.parent.mkdir(parents=True, exist_ok=True)
    md = out.with_suffix(".md")
    _atomic_write(out, merged_html(merged))
    _atomic_write(md, merged_markdown(merged))
    return {"html": out, "md": md}
