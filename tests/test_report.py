"""Report JSON schema, Markdown, HTML (embedded PNG charts) and merging devices."""

from __future__ import annotations

import base64
import copy
import json
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from edgekd.errors import EdgekdError
from edgekd.verify.device import fingerprint
from edgekd.verify.merge import merge_reports, merged_markdown, write_merged
from edgekd.verify.parity import GateSet, evaluate_gates
from edgekd.verify.report import (
    load_schema,
    read_report,
    report_path,
    to_html,
    to_markdown,
    validate,
    write_report,
)


def _model(name: str, kind: str, acc: float, p50: float, size: int | None, parity: dict | None = None) -> dict:
    samples = [p50 * f for f in (0.9, 1.0, 1.0, 1.1, 1.6)]
    return {"name": name, "kind": kind, "backend": name.split("-")[0], "precision": "fp32",
            "engine": f"{name} engine", "bytes": size,
            "accuracy": {"accuracy": acc, "f1_macro": acc - 0.01, "f1_weighted": acc},
            "parity": parity, "gap": {"accuracy_gap": 0.9 - acc, "agreement": 0.95, "flips": 3, "teacher_accuracy": 0.9},
            "latency": {"batch1": {"p50_ms": p50, "p90_ms": p50 * 1.1, "p99_ms": p50 * 1.6, "runs": 5,
                                   "samples_ms": samples},
                        "throughput": {"batch_size": 32, "texts_per_s": 1000 / p50},
                        "cold_start": {"import_s": 0.1, "load_s": 0.2, "first_predict_s": 0.01, "total_s": 0.31,
                                       "process_s": 0.5, "peak_rss_bytes": 80_000_000}},
            "flipped_examples": []}


def make_report(int8_agreement: float = 0.995) -> dict[str, Any]:
    par = {"n": 200, "max_abs_logit": 0.04, "mean_abs_logit": 0.01, "max_abs_prob": 0.02,
           "agreement": int8_agreement, "flips": 1, "flipped": [7], "accuracy_drop": 0.002}
    int8 = _model("onnx-int8", "artifact", 0.88, 1.5, 6_000_000, par)
    int8["precision"] = "int8"
    int8["flipped_examples"] = [{"index": 7, "text": "Stocks <b>rally</b>", "source": "Business", "artifact": "World"}]
    models = [_model("teacher", "teacher", 0.90, 12.0, 90_000_000),
              _model("student-torch", "student", 0.885, 4.0, 20_000_000), int8]
    return {"schema": "edgekd.verify.report", "schema_version": 1, "created": "2026-11-23T10:00:00Z",
            "device": fingerprint(), "bundle": {"path": "runs/b", "contract": "ab" * 32, "labels": ["a", "b"]},
            "data": {"path": "test.csv", "n": 300}, "models": models,
            "gates": evaluate_gates("onnx-int8", "int8", par, GateSet()), "gate_thresholds": GateSet().to_dict(),
            "passed": int8_agreement >= 0.99, "notes": ["coreml-fp16: ran the MIL reference"]}


def test_report_validates_against_schema() -> None:
    report = make_report()
    jsonschema.validate(report, load_schema())
    validate(report)
    broken = copy.deepcopy(report)
    del broken["models"][0]["accuracy"]
    with pytest.raises(EdgekdError, match="models/0"):
        validate(broken)
    with pytest.raises(EdgekdError, match="schema version 1"):
        validate({**report, "schema_version": 2})


def test_write_report_json_md_html(tmp_path: Path) -> None:
    report = make_report()
    paths = write_report(report, tmp_path)
    assert paths["json"].name == f"{report['device']['device_id']}.json"
    assert read_report(paths["json"]) == json.loads(json.dumps(report))
    md = paths["md"].read_text()
    assert "| onnx-int8 | onnx-int8 engine | 6.0 MB | 88.00% |" in md
    # agreement with how sure it is: flips of n and the Wilson 95% interval of 199/200
    assert "| onnx-int8 | agreement | 99.50% (1/200 flips; 95% CI 97.22-99.91%) | >= 0.99 | PASS |" in md
    assert "Business → World" in md and "all gates passed" in md
    html = paths["html"].read_text()
    pngs = html.split("data:image/png;base64,")[1:]
    assert len(pngs) == 4  # accuracy, size, latency, distribution
    for chunk in pngs:
        assert base64.b64decode(chunk.split('"', 1)[0]).startswith(b"\x89PNG")
    assert "Stocks &lt;b&gt;rally&lt;/b&gt;" in html and "<b>rally" not in html  # texts are escaped
    assert "http" not in html.replace("https://", "").split("<style>")[0]  # no external resources


def test_partial_report_lists_skipped_artifacts(tmp_path: Path) -> None:
    report = make_report()
    assert "Not verified" not in to_markdown(report)  # a complete report has no such section
    reason = "backend openvino is not installed here (pip install 'edgekd[openvino]')"
    report["skipped"] = [{"artifact": "openvino-int8", "backend": "openvino", "reason": reason}]
    jsonschema.validate(report, load_schema())
    md = to_markdown(report)
    assert "all gates passed · **partial: 1 artifact(s) not verified**" in md
    assert f"## Not verified on this device\n\n| artifact | not verified because |\n|---|---|\n| openvino-int8 | {reason} |" in md
    html = to_html(report)
    assert "verdict bad'>All gates passed · partial: 1 artifact(s) not verified" in html
    assert "<td>openvino-int8</td><td>backend openvino is not installed here (pip install &#x27;edgekd[openvino]&#x27;)" in html
    with pytest.raises(EdgekdError, match="skipped/0"):
        validate({**report, "skipped": [{"artifact": "openvino-int8"}]})  # a skip names its reason
    assert write_report(report, tmp_path)["json"] == report_path(tmp_path)  # this device's file


def test_failed_report_says_so() -> None:
    md = to_markdown(make_report(int8_agreement=0.9))
    assert "**GATES FAILED**" in md and "| onnx-int8 | agreement | 90.00% (1/200 flips; 95% CI " in md
    assert "| >= 0.99 | FAIL |" in md


def test_merge_two_devices_keeps_both(tmp_path: Path) -> None:
    a = make_report()
    b = copy.deepcopy(a)
    b["device"].update(device_id="darwin-arm64-apple-m2-0123abcd", os="darwin", arch="arm64", cpu_model="Apple M2")
    b["models"][2]["latency"]["batch1"]["p50_ms"] = 0.75
    b["created"] = "2026-11-23T11:00:00Z"
    merged = merge_reports([a, b])
    assert merged["devices"] == [a["device"]["device_id"], "darwin-arm64-apple-m2-0123abcd"]
    assert merged["tables"]["batch-1 p50 latency (ms)"]["onnx-int8"] == {a["device"]["device_id"]: "1.50",
                                                                         "darwin-arm64-apple-m2-0123abcd": "0.75"}
    md = merged_markdown(merged)
    assert "Apple M2" in md and md.count("| onnx-int8 |") == len(merged["tables"]) + 1
    pa, pb = tmp_path / "a.json", tmp_path / "b.json"
    pa.write_text(json.dumps(a))
    pb.write_text(json.dumps(b))
    paths = write_merged([pa, pb], tmp_path / "out" / "report.html")
    assert paths["md"].name == "report.md" and "darwin-arm64-apple-m2-0123abcd" in paths["html"].read_text()
    # the same device twice: the later report wins, no duplicate column
    c = copy.deepcopy(b)
    c["created"] = "2026-11-23T12:00:00Z"
    c["models"][2]["latency"]["batch1"]["p50_ms"] = 0.5
    again = merge_reports([a, b, c])
    assert len(again["devices"]) == 2
    assert again["tables"]["batch-1 p50 latency (ms)"]["onnx-int8"]["darwin-arm64-apple-m2-0123abcd"] == "0.50"


def test_merge_needs_reports(tmp_path: Path) -> None:
    with pytest.raises(EdgekdError, match="no reports"):
        merge_reports([])
    with pytest.raises(EdgekdError, match="report not found"):
        read_report(tmp_path / "missing.json")
