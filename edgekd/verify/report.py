"""Verification reports: the JSON (versioned schema `report.schema.json`), a Markdown summary and
a self-contained HTML page with embedded PNG charts; and the merge of several devices' reports.
"""

from __future__ import annotations

import base64
import html
import json
import os
import re
from collections.abc import Sequence
from importlib import resources
from pathlib import Path
from typing import Any

from edgekd.errors import EdgekdError
from edgekd.metrics import report_warnings
from edgekd.verify.parity import wilson_interval

SCHEMA_NAME = "edgekd.verify.report"
SCHEMA_VERSION = 1


def load_schema() -> dict[str, Any]:
    """The report JSON schema shipped with edgekd."""
    return json.loads(resources.files("edgekd.verify").joinpath("report.schema.json").read_text(encoding="utf-8"))


def validate(report: dict[str, Any]) -> None:
    """Validate a report against the schema (jsonschema when installed, else the header checks)."""
    if report.get("schema") != SCHEMA_NAME or report.get("schema_version") != SCHEMA_VERSION:
        raise EdgekdError(f"not an edgekd report of schema version {SCHEMA_VERSION} (schema={report.get('schema')!r}, "
                          f"version={report.get('schema_version')!r}); re-run: edgekd verify BUNDLE --data D")
    try:
        import jsonschema
    except ImportError:
        return
    try:
        jsonschema.validate(report, load_schema())
    except jsonschema.ValidationError as exc:
        where = "/".join(str(p) for p in exc.absolute_path) or "(top)"
        raise EdgekdError(f"report does not match its schema at {where}: {exc.message}") from exc


def read_report(path: str | Path) -> dict[str, Any]:
    """Read and validate a report JSON file."""
    path = Path(path)
    try:
        report = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise EdgekdError(f"report not found: {path}; create one with: edgekd verify BUNDLE --data D") from exc
    except json.JSONDecodeError as exc:
        raise EdgekdError(f"{path} is not valid JSON ({exc})") from exc
    validate(report)
    return report


def _atomic_write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def report_path(out_dir: str | Path, device_id: str | None = None) -> Path:
    """`out_dir/<device-id>.json`: where `write_report` puts the report of `device_id` (default: this
    device), so a reader picks this device's report, not whichever file sorts last."""
    if device_id is None:
        from edgekd.verify.device import fingerprint

        device_id = fingerprint()["device_id"]
    return Path(out_dir) / f"{device_id}.json"


def reports_dir(bundle: str | Path) -> Path:
    """Where `edgekd verify BUNDLE` writes its reports by default: `BUNDLE/reports/` for a bundle
    directory; `BUNDLE-reports/` beside a .zip (its extraction lives in a private cache)."""
    bundle = Path(bundle)
    return bundle.with_name(f"{bundle.stem}-reports") if bundle.is_file() else bundle / "reports"


def device_report(root: str | Path, device_id: str, source: str | Path | None = None) -> Path | None:
    """This device's `edgekd verify` report JSON for a bundle, else None. `root`: the bundle directory
    (for a .zip, its extraction); `source`: the path the user gave. For a .zip, the reports `edgekd verify
    BUNDLE.zip` writes beside it (`reports_dir`) come first, then the `reports/` packed inside."""
    dirs = [Path(root) / "reports"]
    if source is not None and Path(source).is_file():
        dirs.insert(0, reports_dir(source))
    return next((p for p in (report_path(d, device_id) for d in dirs) if p.is_file()), None)


def write_report(report: dict[str, Any], out_dir: str | Path) -> dict[str, Path]:
    """Write `<device-id>.json`, `.md` and `.html` into `out_dir`; returns their paths."""
    validate(report)
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    stem = report_path(out, report["device"]["device_id"]).with_suffix("")
    paths = {"json": stem.with_suffix(".json"), "md": stem.with_suffix(".md"), "html": stem.with_suffix(".html")}
    _atomic_write(paths["json"], to_json(report))
    _atomic_write(paths["md"], to_markdown(report))
    _atomic_write(paths["html"], to_html(report))
    return paths


# An indented list of numbers (json.dumps puts each on its own line). Newlines inside JSON strings
# are always escaped, so a match never starts or ends inside a text.
_NUMBER_LIST = re.compile(r"\[\n\s*(-?[0-9.eE+-]+(?:,\n\s*-?[0-9.eE+-]+)*)\n\s*\]")


def to_json(report: dict[str, Any]) -> str:
    """The report as indented JSON with every list of numbers on one line (an embedding map's
    [x, y] points, its rows and labels, latency samples): a 2,000-point map takes 85 kB, not 215 kB."""
    text = json.dumps(report, indent=2, ensure_ascii=False)
    return _NUMBER_LIST.sub(lambda m: "[" + re.sub(r",\n\s*", ", ", m.group(1)) + "]", text) + "\n"


# --- formatting helpers --------------------------------------------------------------------------


def _pct(v: float | None) -> str:
    return "–" if v is None else f"{v * 100:.2f}%"


def _num(v: float | None, fmt: str = "{:.3g}") -> str:
    return "–" if v is None else fmt.format(v)


def _agree(m: dict[str, Any]) -> str:
    """An agreement cell with how sure it is: '99.50% (2/400 flips; 95% CI 98.20-99.86%)'."""
    if m.get("agreement") is None:
        return "–"
    if not m.get("n") or m.get("flips") is None:
        return _pct(m["agreement"])
    lo, hi = m.get("agreement_ci") or wilson_interval(m["n"] - m["flips"], m["n"])
    return f"{_pct(m['agreement'])} ({m['flips']}/{m['n']} flips; 95% CI {lo * 100:.2f}-{hi * 100:.2f}%)"


def _mb(v: int | None) -> str:
    return "–" if not v else f"{v / 1e6:.1f} MB"


def model_rows(report: dict[str, Any]) -> list[list[str]]:
    """The summary table of one report: one row per model, cells as display strings."""
    rows = []
    for m in report["models"]:
        lat = m.get("latency") or {}
        b1, tp, cold = lat.get("batch1") or {}, lat.get("throughput") or {}, lat.get("cold_start") or {}
        par, gap = m.get("parity") or {}, m.get("gap") or {}
        rows.append([
            m["name"], m["engine"], _mb(m.get("bytes")), _pct(m["accuracy"]["accuracy"]),
            _num(m["accuracy"]["f1_macro"], "{:.3f}"),
            _agree(gap), _num(par.get("max_abs_logit"), "{:.2e}"), _agree(par),
            _num(b1.get("p50_ms"), "{:.2f}"), _num(b1.get("p90_ms"), "{:.2f}"), _num(b1.get("p99_ms"), "{:.2f}"),
            _num(tp.get("texts_per_s"), "{:.0f}"), _num(cold.get("total_s"), "{:.2f}"),
            _mb(cold.get("peak_rss_bytes")),
        ])
    return rows


MODEL_HEADER = ["model", "engine", "size", "accuracy", "F1 macro", "agree w/ teacher", "max|Δlogit| vs src",
                "agree w/ src", "p50 ms", "p90 ms", "p99 ms", "texts/s @batch", "cold start s", "peak RSS"]
GATE_HEADER = ["artifact", "check", "value", "gate", "result"]


def gate_rows(report: dict[str, Any]) -> list[list[str]]:
    """The per-check table: one row per gate (an agreement value with its flips and 95% interval)."""
    parity = {m["name"]: m.get("parity") or {} for m in report["models"]}
    return [[g["artifact"], g["metric"],
             _agree(parity[g["artifact"]]) if g["metric"] == "agreement" and parity.get(g["artifact"])
             else _num(g["value"], "{:.6g}"), f"{g['op']} {g['threshold']:g}",
             g.get("verdict") or ("PASS" if g["passed"] else "FAIL")] for g in report["gates"]]


def per_class_rows(report: dict[str, Any]) -> list[list[str]]:
    """Header + one row per class: its test support and the F1 of the baseline, teacher and PyTorch
    student (the models the per-class chart shows); [] when the report has no per-class F1."""
    shown = [m for m in report["models"]
             if m["kind"] in ("baseline", "teacher", "student") and m["accuracy"].get("f1_per_class")]
    if not shown:
        return []
    support = shown[0]["accuracy"].get("support") or []
    rows = [["class", "test texts", *[m["name"] for m in shown]]]
    for i, label in enumerate(report["bundle"]["labels"]):
        rows.append([label, str(support[i]) if i < len(support) else "–",
                     *[f"{m['accuracy']['f1_per_class'][i]:.3f}" for m in shown]])
    return rows


SKIPPED_HEADER = ["artifact", "not verified because"]


def skipped_rows(report: dict[str, Any]) -> list[list[str]]:
    """The artifacts of the bundle this report did not verify, with the reason (empty: none)."""
    return [[s["artifact"], s["reason"]] for s in report.get("skipped", [])]


def device_line(device: dict[str, Any]) -> str:
    """One line describing the device: OS, CPU, cores, ISA, memory, accelerators."""
    isa = ", ".join(k for k, v in device.get("isa", {}).items() if v) or "none detected"
    mem = device.get("memory_bytes")
    parts = [f"{device['os']} {device['arch']}", device["cpu_model"], f"{device['logical_cores']} cores",
             f"ISA: {isa}", f"{mem / 2**30:.0f} GiB RAM" if mem else "RAM unknown", f"Python {device['python']}"]
    if device.get("accelerators"):
        parts.append("accelerators: " + "; ".join(device["accelerators"]))
    if device.get("coreml_compute_units"):
        parts.append("Core ML units: " + ", ".join(device["coreml_compute_units"]))
    return " · ".join(parts)


def _md_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(c.replace("|", "\\|") for c in row) + " |" for row in rows]
    return "\n".join(lines)


def to_markdown(report: dict[str, Any]) -> str:
    """A Markdown summary of one report."""
    dev = report["device"]
    libs = ", ".join(f"{k} {v}" for k, v in dev["libraries"].items() if v)
    verdict = "all gates passed" if report["passed"] else "**GATES FAILED**"
    skipped = skipped_rows(report)
    if skipped:
        verdict += f" · **partial: {len(skipped)} artifact(s) not verified**"
    out = [f"# edgekd verification: {dev['device_id']}", "",
           f"{report['created']} · bundle `{report['bundle']['path']}` · {report['data']['n']} texts from "
           f"`{report['data']['path']}` · {verdict}", "", f"Device: {device_line(dev)}", "", f"Libraries: {libs}", ""]
    warnings = report_warnings(report)
    if warnings:
        out += ["## Warnings", "", *[f"- **{w}**" for w in warnings], ""]
    per_class = per_class_rows(report)
    if per_class:
        out += ["## F1 per class", "", _md_table(per_class[0], per_class[1:]), ""]
    out += ["## Models", "", _md_table(MODEL_HEADER, model_rows(report)), "", "## Gates", "",
           _md_table(GATE_HEADER, gate_rows(report)) if report["gates"] else "(no artifacts gated)", ""]
    if skipped:
        out += ["## Not verified on this device", "", _md_table(SKIPPED_HEADER, skipped), ""]
    by_length = [[m["name"], group, str(p["n"]), _num(p["max_abs_logit"], "{:.2e}"), _agree(p)]
                 for m in report["models"] for group, p in ((m.get("parity") or {}).get("by_length") or {}).items()]
    if by_length:
        out += ["## Conversion parity by input length", "",
                _md_table(["artifact", "input length", "texts", "max|Δlogit|", "agreement"], by_length), ""]
    flips = [(m["name"], f) for m in report["models"] for f in m.get("flipped_examples", [])]
    if flips:
        out += ["## Flipped predictions (artifact vs its PyTorch source)", ""]
        out += [f"- {name} #{f['index']}: {f['source']} → {f['artifact']}: {f['text'][:160]!r}" for name, f in flips]
        out.append("")
    out += [f"- {n}" for n in report.get("notes", [])]
    return "\n".join(out).rstrip() + "\n"


# --- HTML ----------------------------------------------------------------------------------------

_CSS = """body{font-family:system-ui,-apple-system,Segoe UI,sans-serif;margin:24px;color:#222;max-width:1200px}
h1{font-size:22px}h2{font-size:17px;margin-top:28px;border-bottom:1px solid #ddd;padding-bottom:4px}
table{border-collapse:collapse;font-size:12px;margin:8px 0}th,td{border:1px solid #ddd;padding:4px 7px;text-align:right}
th{background:#f3f5f8}td:nth-child(n+3){white-space:nowrap}td:first-child,th:first-child{text-align:left}.pass{color:#17803d;font-weight:600}
.fail{color:#c0262d;font-weight:700}.meta{color:#555;font-size:13px}.charts{display:flex;flex-wrap:wrap;gap:10px}
.charts img{width:calc(50% - 8px);min-width:420px;box-sizing:border-box;border:1px solid #eee}.verdict{font-size:15px;padding:6px 10px;display:inline-block;border-radius:4px}
.ok{background:#e5f5ea}.bad{background:#fbe4e4}
.warning{background:#fff4d6;border-left:4px solid #d99a00;padding:6px 10px;margin:8px 0;font-size:14px}"""


def _html_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = []
    for row in rows:
        cells = []
        for c in row:
            cls = ' class="pass"' if c == "PASS" else ' class="fail"' if c == "FAIL" else ""
            cells.append(f"<td{cls}>{html.escape(c)}</td>")
        body.append("<tr>" + "".join(cells) + "</tr>")
    return f"<table><tr>{head}</tr>{''.join(body)}</table>"


def _img(png: bytes, alt: str) -> str:
    return f'<img alt="{html.escape(alt)}" src="data:image/png;base64,{base64.b64encode(png).decode()}">'


def _page(title: str, body: str) -> str:
    return (f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
            f"<style>{_CSS}</style></head><body>{body}</body></html>\n")


def to_html(report: dict[str, Any]) -> str:
    """One self-contained HTML page: verdict, device, charts (PNG, base64), model and gate tables."""
    from edgekd.verify import plots

    dev, models = report["device"], report["models"]
    ok = report["passed"]
    skipped = skipped_rows(report)
    partial = f" · partial: {len(skipped)} artifact(s) not verified" if skipped else ""
    charts = [_img(plots.accuracy_chart(models), "accuracy per model"), _img(plots.size_chart(models), "size"),
              _img(plots.latency_chart(models), "latency per model"),
              _img(plots.latency_distribution(models), "latency distribution")]
    if per_class_rows(report):
        charts.insert(1, _img(plots.per_class_f1_chart(models, report["bundle"]["labels"]), "F1 per class"))
    charts += [_img(plots.embedding_chart(m["embedding_map"], report["bundle"]["labels"], m["name"]),
                    f"embedding map of {m['name']}") for m in models if m.get("embedding_map")]
    flips = "".join(f"<li>{html.escape(m['name'])} #{f['index']}: {html.escape(f['source'])} → "
                    f"{html.escape(f['artifact'])}: <q>{html.escape(f['text'][:200])}</q></li>"
                    for m in models for f in m.get("flipped_examples", []))
    body = (f"<h1>edgekd verification · {html.escape(dev['device_id'])}</h1>"
            f"<div class='verdict {'ok' if ok and not skipped else 'bad'}'>"
            f"{'All gates passed' if ok else 'Gates FAILED'}{partial}</div>"
            f"<p class='meta'>{html.escape(report['created'])} · bundle <code>{html.escape(report['bundle']['path'])}"
            f"</code> · {report['data']['n']} test texts from <code>{html.escape(report['data']['path'])}</code></p>"
            f"<p class='meta'>{html.escape(device_line(dev))}</p>"
            + "".join(f"<div class='warning'>⚠ {html.escape(w)}</div>" for w in report_warnings(report))
            + f"<h2>Charts</h2><div class='charts'>{''.join(charts)}</div>"
            f"<h2>Models</h2>{_html_table(MODEL_HEADER, model_rows(report))}"
            f"<h2>Gates</h2>{_html_table(GATE_HEADER, gate_rows(report))}"
            + (f"<h2>Not verified on this device</h2>{_html_table(SKIPPED_HEADER, skipped)}" if skipped else "")
            + (f"<h2>Flipped predictions</h2><ul>{flips}</ul>" if flips else "")
            + "".join(f"<p class='meta'>{html.escape(n)}</p>" for n in report.get("notes", [])))
    return _page(f"edgekd report {dev['device_id']}", body)
