"""The runtime boundary, enforced: importing edgekd and edgekd.runtimes, loading a bundle and
predicting (API and `edgekd predict`) never imports torch, transformers or optimum."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
from runtime_conformance import build_onnx_bundle

HEAVY = ("torch", "transformers", "optimum")


@pytest.fixture(scope="module")
def bundle(tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_onnx_bundle(tiny_bert, tmp_path_factory.getbasetemp() / "runtime_bundle")


def _run(code: str) -> dict:
    env = {"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr[-2000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_load_and_predict_import_no_torch(bundle: Path) -> None:
    out = _run(
        "import json, sys\n"
        "import edgekd, edgekd.runtimes, edgekd.bundle\n"
        f"clf = edgekd.load({str(bundle)!r})\n"
        "p = clf.predict('x')\n"
        "clf.predict(['a', 'b']); clf.logits(['c'])\n"
        f"edgekd.load({str(bundle)!r}, backend='onnx', precision='int8').predict('y')\n"
        f"print(json.dumps({{'label': p.label, 'backend': clf.backend, 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))\n"
    )
    assert out["heavy"] == [] and out["backend"] in ("onnx", "openvino") and out["label"] in ("World", "Sports", "Business", "Sci/Tech")


def test_predict_command_imports_no_torch(bundle: Path) -> None:
    out = _run(
        "import contextlib, io, json, sys\n"
        "from edgekd.cli import main\n"
        "buf = io.StringIO()\n"
        "with contextlib.redirect_stdout(buf):\n"
        f"    rc = main(['predict', {str(bundle)!r}, 'some text', '--json'])\n"
        f"print(json.dumps({{'rc': rc, 'n': len(json.loads(buf.getvalue())['predictions']), 'heavy': [m for m in {HEAVY!r} if m in sys.modules]}}))\n"
    )
    assert out == {"rc": 0, "n": 1, "heavy": []}
