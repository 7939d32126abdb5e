"""`GET /`: one self-contained page (inline CSS and script; no fonts, scripts or CDNs, so it works
offline): a text box, the label scores as bars, the call's latency, and the model and device facts
from `/info`, rendered on the server."""

from __future__ import annotations

import html
from pathlib import Path
from typing import Any

_CSS = """
*{box-sizing:border-box}
body{font-family:system-ui,-apple-system,"Segoe UI",Roboto,sans-serif;margin:0;color:#1d2330;background:#f5f6f8}
main{max-width:880px;margin:0 auto;padding:28px 20px}
h1{font-size:22px;margin:0 0 4px}
.sub{color:#5b6372;margin:0 0 20px;font-size:14px}
.card{background:#fff;border:1px solid #dde1e7;border-radius:10px;padding:18px 20px;margin-bottom:16px}
textarea{width:100%;min-height:96px;font:inherit;font-size:15px;padding:10px;border:1px solid #c4cad3;border-radius:8px;resize:vertical}
.row{display:flex;align-items:center;gap:14px;margin-top:10px}
button{font:inherit;font-size:15px;background:#2656c9;color:#fff;border:0;border-radius:8px;padding:9px 20px;cursor:pointer}
button:disabled{background:#8ea6dd;cursor:wait}
.hint{color:#7a8291;font-size:13px}
#label{font-size:26px;font-weight:650;margin:0}
#latency{color:#5b6372;font-size:13px;margin:4px 0 12px}
.bar{display:grid;grid-template-columns:160px 1fr 64px;align-items:center;gap:10px;margin:6px 0;font-size:14px}
.track{background:#edf0f4;border-radius:5px;height:18px;overflow:hidden}
.fill{background:#9fb3e3;height:100%;width:0}
.top .fill{background:#2656c9}
.top .name{font-weight:650}
.num{text-align:right;font-variant-numeric:tabular-nums}
#error{color:#b3261e;margin:8px 0 0;white-space:pre-wrap}
table{border-collapse:collapse;width:100%;font-size:13.5px}
td{padding:5px 8px;border-top:1px solid #edf0f4;vertical-align:top}
td:first-child{color:#5b6372;width:190px}
h2{font-size:15px;margin:0 0 8px}
.ok{color:#1b7f3b;font-weight:600}.bad{color:#b3261e;font-weight:600}
code{font-size:12.5px}
"""

# Calls /predict with every label, draws the bars, shows the model time (Server-Timing) and the
# round trip. Untrusted strings go in through textContent only.
_SCRIPT = """
const $ = (id) => document.getElementById(id);
async function classify() {
  const text = $("text").value;
  $("error").textContent = "";
  $("classify").disabled = true;
  const started = performance.now();
  try {
    const response = await fetch("predict", {method: "POST", headers: {"Content-Type": "application/json"},
                                             body: JSON.stringify({inputs: text})});
    const roundTrip = performance.now() - started;
    const body = await response.json();
    if (!response.ok) { $("error").textContent = body.error || ("HTTP " + response.status); return; }
    show(body, roundTrip, response.headers.get("Server-Timing") || "");
  } catch (err) {
    $("error").textContent = "request failed: " + err;
  } finally {
    $("classify").disabled = false;
  }
}
function show(scores, roundTrip, timing) {
  $("label").textContent = scores[0].label;
  const model = /dur=([0-9.]+)/.exec(timing);
  $("latency").textContent = (model ? "model " + Number(model[1]).toFixed(1) + " ms \\u00b7 " : "") +
                             "round trip " + roundTrip.toFixed(1) + " ms";
  const bars = $("bars");
  bars.replaceChildren();
  scores.forEach((s, i) => {
    const row = document.createElement("div");
    row.className = "bar" + (i === 0 ? " top" : "");
    const name = document.createElement("span"); name.className = "name"; name.textContent = s.label;
    const track = document.createElement("div"); track.className = "track";
    const fill = document.createElement("div"); fill.className = "fill";
    fill.style.width = (100 * s.score).toFixed(1) + "%";
    track.appendChild(fill);
    const num = document.createElement("span"); num.className = "num"; num.textContent = s.score.toFixed(3);
    row.append(name, track, num);
    bars.appendChild(row);
  });
  $("result").hidden = false;
  $("result").dataset.calls = String(Number($("result").dataset.calls || 0) + 1);  // tests wait on it
}
$("classify").addEventListener("click", classify);
$("text").addEventListener("keydown", (e) => { if (e.key === "Enter" && (e.ctrlKey || e.metaKey)) classify(); });
"""


def render_page(info: dict[str, Any]) -> str:
    """The whole page as one HTML string; every value from `info` is escaped."""
    artifact = info["artifact"]
    model = Path(info["model"]).name if info["model"] else "model"
    title = f"{model} · {artifact['name']}"
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width,initial-scale=1">
<title>{_e(title)} — edgekd</title><style>{_CSS}</style></head>
<body><main>
<h1>{_e(model)}</h1>
<p class="sub">edgekd serve · {_e(artifact['name'])} · {len(info['labels'])} labels: {_e(', '.join(info['labels']))}</p>
<div class="card">
<textarea id="text" placeholder="Type or paste a text to classify" autofocus></textarea>
<div class="row"><button id="classify" type="button">Classify</button>
<span class="hint">Ctrl+Enter · POST /predict · GET /info</span></div>
<p id="error" role="alert"></p>
<div id="result" hidden><p id="label"></p><p id="latency"></p><div id="bars"></div></div>
</div>
<div class="card"><h2>Model</h2><table>{_rows(_model_facts(info))}</table></div>
<div class="card"><h2>Device</h2><table>{_rows(_device_facts(info))}</table></div>
</main><script>{_SCRIPT}</script></body></html>
"""


def _model_facts(info: dict[str, Any]) -> list[tuple[str, str]]:
    a, c = info["artifact"], info["contract"]
    rows = [("model", _e(info["model"] or "-")),
            ("artifact", _e(f"{a['name']} ({a['path']}, {_mb(a['bytes'])})")),
            ("engine", _e(a["engine"])),
            ("why this artifact", _e(a["choice"]["reason"]) if a.get("choice") else "-"),
            ("tokenizer", _e(f"max_length {c['max_length']}, inputs {', '.join(c['inputs'])}")),
            ("contract", f"<code>{_e(c['sha256'][:16])}</code>"),
            ("export parity", _e(_parity_line(info["parity"])))]
    verify = info["verify"]
    if verify is None:
        rows.append(("verified on this device", "not yet: <code>edgekd verify BUNDLE --data D</code>"))
    else:
        rows.append(("verified on this device", _verify_line(verify)))
    return rows


def _device_facts(info: dict[str, Any]) -> list[tuple[str, str]]:
    d = info["device"]
    memory = f", {d['memory_bytes'] / 2**30:.0f} GiB" if d.get("memory_bytes") else ""
    return [("cpu", _e(f"{d['cpu_model']} ({d['usable_cores']} of {d['logical_cores']} cores usable{memory})")),
            ("system", _e(f"{d['os']} {d['arch']}, Python {d['python']}, edgekd {info['edgekd_version']}")),
            ("device id", f"<code>{_e(d['device_id'])}</code>")]


def _parity_line(parity: dict[str, Any] | None) -> str:
    if not parity:
        return "not recorded in the manifest"
    from edgekd.verify.parity import describe_agreement

    decision = parity.get("decision") if parity.get("decided_by") else None
    if decision and decision.get("n"):  # int8: accuracy control's decision on its >= 1,000 texts
        return f"{parity.get('status', '?')} by {parity['decided_by']} · top-1 agreement {describe_agreement(decision)}"
    parts = [str(parity.get("status", "?"))]
    if "agreement" in parity:
        parts.append(f"top-1 agreement {describe_agreement(parity)}")
    if "max_abs_logit" in parity:
        parts.append(f"max |Δlogit| {parity['max_abs_logit']:.3g}")
    return " · ".join(parts)


def _verify_line(verify: dict[str, Any]) -> str:
    if "error" in verify:
        return _e(verify["error"])
    verdict = '<span class="ok">passed</span>' if verify.get("passed") else '<span class="bad">failed</span>'
    parts = [verdict]
    row = verify.get("artifact") or {}
    if row.get("accuracy"):
        parts.append(_e(f"accuracy {row['accuracy']['accuracy']:.4f} on {(verify.get('data') or {}).get('n', '?')} texts"))
    if row.get("latency_ms"):
        lat = row["latency_ms"]
        parts.append(_e(f"batch-1 p50 {lat.get('p50_ms', 0):.2f} ms, p99 {lat.get('p99_ms', 0):.2f} ms"))
    parts.append(_e(str(verify.get("created", ""))))
    if verify.get("html"):
        parts.append('<a href="report">full report</a>')
    return " · ".join(parts)


def _rows(rows: list[tuple[str, str]]) -> str:
    """Table rows; values are already escaped HTML."""
    return "".join(f"<tr><td>{_e(k)}</td><td>{v}</td></tr>" for k, v in rows)


def _mb(n: int | None) -> str:
    return "-" if not n else f"{n / 1e6:.1f} MB"


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)
