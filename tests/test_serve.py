"""`edgekd serve`: the /predict API in the Hugging Face shape (labels equal `edgekd.load(b).predict`),
every bad request a JSON 4xx after which the server still serves, /info and /report for this device,
the page, the command (port 0, a port in use, Ctrl-C), the torch-free boundary, and the page driven in
headless Chromium."""

from __future__ import annotations

import json
import math
import shutil
import socket
import subprocess
import sys
import threading
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from conftest import read_texts
from runtime_conformance import build_onnx_bundle

import edgekd
from edgekd.serve.api import LIMITS
from edgekd.serve.app import create_app
from edgekd.serve.server import Background
from edgekd.verify.report import report_path

starlette_testclient = pytest.importorskip("starlette.testclient", reason="pip install 'edgekd[serve,dev]'")

DEVICE = {"device_id": "linux-x86_64-test-cpu-0123abcd", "os": "linux", "arch": "x86_64", "cpu_model": "Test CPU",
          "logical_cores": 2, "usable_cores": 2, "memory_bytes": 2**33, "python": "3.11"}
GOOD = {"inputs": "Stocks rallied after the central bank held rates."}


@pytest.fixture(scope="module")
def bundle(trained_tiny_bert: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    # The trained tiny BERT: its predictions vary with the text, so label equality is not trivially true.
    return build_onnx_bundle(trained_tiny_bert, tmp_path_factory.getbasetemp() / "serve_bundle", int8=False,
                             max_length=64)


@pytest.fixture(scope="module")
def clf(bundle: Path) -> edgekd.Classifier:
    return edgekd.load(bundle)


@pytest.fixture(scope="module")
def client(clf: edgekd.Classifier) -> Iterator[object]:
    with starlette_testclient.TestClient(create_app(clf, device=DEVICE)) as c:
        yield c


def _post(client: object, body: bytes, content_type: str = "application/json") -> object:
    return client.post("/predict", content=body, headers={"content-type": content_type})  # type: ignore[attr-defined]


def test_single_text_returns_every_label_sorted(client: object, clf: edgekd.Classifier) -> None:
    r = client.post("/predict", json=GOOD)  # type: ignore[attr-defined]
    assert r.status_code == 200 and r.headers["server-timing"].startswith("model;dur=")
    out = r.json()
    expected = clf.predict(GOOD["inputs"])
    assert [d["label"] for d in out] == sorted(clf.labels, key=lambda k: -expected.scores[k])
    assert out[0]["label"] == expected.label and out[0]["score"] == pytest.approx(expected.score, abs=1e-6)
    assert math.fsum(d["score"] for d in out) == pytest.approx(1.0)
    assert all(set(d) == {"label", "score"} for d in out)


def test_list_returns_a_list_per_text_with_top_k(client: object, clf: edgekd.Classifier) -> None:
    texts, _ = read_texts("ag_news", "test", 40)
    out = client.post("/predict", json={"inputs": texts, "parameters": {"top_k": 2}}).json()  # type: ignore[attr-defined]
    assert len(out) == len(texts) and all(len(row) == 2 for row in out)
    labels = [row[0]["label"] for row in out]
    assert labels == [clf.predict(t).label for t in texts]
    assert len(set(labels)) > 1  # the comparison would be weak if every text got one label
    assert all(row[0]["score"] >= row[1]["score"] for row in out)


@pytest.mark.parametrize(("parameters", "n"), [({"top_k": 1}, 1), ({"top_k": 99}, 4), ({"top_k": None}, 4), ({}, 4)])
def test_top_k(client: object, parameters: dict, n: int) -> None:
    out = client.post("/predict", json={"inputs": "a text", "parameters": parameters}).json()  # type: ignore[attr-defined]
    assert len(out) == n


def test_function_to_apply(client: object, clf: edgekd.Classifier) -> None:
    logits = clf.logits(["the match ended in a draw"])[0]
    by_label = dict(zip(clf.labels, logits.tolist(), strict=True))
    for function, f in [("none", lambda x: x), ("sigmoid", lambda x: 1 / (1 + math.exp(-x)))]:
        out = client.post("/predict", json={"inputs": "the match ended in a draw",  # type: ignore[attr-defined]
                                            "parameters": {"function_to_apply": function}}).json()
        assert {d["label"]: d["score"] for d in out} == pytest.approx({k: f(v) for k, v in by_label.items()}, abs=1e-6)


def test_hf_options_key_is_accepted(client: object) -> None:
    r = client.post("/predict", json={**GOOD, "options": {"wait_for_model": True}})  # type: ignore[attr-defined]
    assert r.status_code == 200


# (body, content type, status, words the error must contain)
BAD_REQUESTS = [
    (b'{"inputs": ', "application/json", 400, "not valid JSON"),
    (b"", "application/json", 400, "body is empty"),
    (b'{"inputs": "caf\xe9"}', "application/json", 400, "not valid UTF-8 (byte 0xe9 at offset 15)"),
    (b"[" * 50_000 + b"]" * 50_000, "application/json", 400, "nested too deeply"),
    (b'["a"]', "application/json", 422, "must be a JSON object"),
    (b'{"text": "a"}', "application/json", 422, "unknown key(s) ['text']"),
    (b'{"parameters": {}}', "application/json", 422, 'no "inputs"'),
    (b'{"inputs": 3}', "application/json", 422, "got a number"),
    (b'{"inputs": null}', "application/json", 422, "got null"),
    (b'{"inputs": ["a", 7]}', "application/json", 422, "inputs[1] must be a string, got a number"),
    (b'{"inputs": ["a", ["b"]]}', "application/json", 422, "inputs[1] must be a string, got an array"),
    (b'{"inputs": ""}', "application/json", 422, "inputs is empty"),
    (b'{"inputs": ["ok", " \\n\\t"]}', "application/json", 422, "inputs[1] is empty"),
    (b'{"inputs": []}', "application/json", 422, "empty list"),
    (b'{"inputs": "a\\ud800b"}', "application/json", 422, "lone surrogate at position 1"),
    (b'{"inputs": "a", "parameters": {"top_k": 0}}', "application/json", 422, '"top_k" must be a positive integer'),
    (b'{"inputs": "a", "parameters": {"top_k": "2"}}', "application/json", 422, 'got "2"'),
    (b'{"inputs": "a", "parameters": {"top_k": true}}', "application/json", 422, "got true"),
    (b'{"inputs": "a", "parameters": {"top_k": 1.5}}', "application/json", 422, "got 1.5"),
    (b'{"inputs": "a", "parameters": [1]}', "application/json", 422, '"parameters" must be an object'),
    (b'{"inputs": "a", "parameters": {"topk": 1}}', "application/json", 422, "unknown parameter(s) ['topk']"),
    (b'{"inputs": "a", "parameters": {"function_to_apply": "relu"}}', "application/json", 422, "softmax, sigmoid, none"),
    (b'{"inputs": "a", "parameters": {"function_to_apply": []}}', "application/json", 422, "got []"),
    (json.dumps(GOOD).encode(), "text/plain", 415, "Content-Type must be application/json"),
    (json.dumps(GOOD).encode(), "", 415, "got 'none'"),
    (json.dumps({"inputs": ["x"] * (LIMITS.max_texts + 1)}).encode(), "application/json", 413,
     f"has {LIMITS.max_texts + 1} texts; at most {LIMITS.max_texts}"),
    (json.dumps({"inputs": ["ok", "y" * (LIMITS.max_text_chars + 1)]}).encode(), "application/json", 413,
     f"inputs[1] has {LIMITS.max_text_chars + 1} characters; at most {LIMITS.max_text_chars}"),
    (json.dumps({"inputs": "z " * LIMITS.max_body_bytes}).encode(), "application/json", 413,
     f"at most {LIMITS.max_body_bytes}"),
]


@pytest.mark.parametrize(("body", "content_type", "status", "words"), BAD_REQUESTS,
                         ids=[f"{s}-{w[:30]}" for _, _, s, w in BAD_REQUESTS])
def test_bad_request_is_a_json_error_and_the_server_keeps_serving(client: object, clf: edgekd.Classifier, body: bytes,
                                                                  content_type: str, status: int, words: str) -> None:
    r = _post(client, body, content_type)
    assert r.status_code == status, r.text
    assert r.headers["content-type"] == "application/json" and words in r.json()["error"], r.json()
    again = client.post("/predict", json=GOOD).json()  # type: ignore[attr-defined]
    assert again[0]["label"] == clf.predict(GOOD["inputs"]).label


def test_oversize_body_without_content_length_is_cut_off(client: object) -> None:
    sent = []

    def chunks() -> Iterator[bytes]:  # streamed (chunked): the size is only known while reading
        for _ in range(64):
            sent.append(1)
            yield b" " * (64 << 10)

    r = client.post("/predict", content=chunks(), headers={"content-type": "application/json"})  # type: ignore[attr-defined]
    assert r.status_code == 413 and "over 1048576 bytes" in r.json()["error"]


def test_body_far_over_the_limit_is_refused_from_its_content_length(client: object) -> None:
    from edgekd.serve.app import DRAIN_FACTOR

    body = b" " * (DRAIN_FACTOR * LIMITS.max_body_bytes + 1)
    r = _post(client, body)
    assert r.status_code == 413 and r.json()["error"] == f"the body is {len(body)} bytes; at most {LIMITS.max_body_bytes}"


def test_at_the_limits_is_accepted(client: object) -> None:
    texts = ["w" * LIMITS.max_text_chars] + ["short"] * (LIMITS.max_texts - 1)
    r = client.post("/predict", json={"inputs": texts, "parameters": {"top_k": 1}})  # type: ignore[attr-defined]
    assert r.status_code == 200 and len(r.json()) == LIMITS.max_texts


def test_health_info_and_json_errors_for_unknown_routes(client: object, clf: edgekd.Classifier, bundle: Path) -> None:
    used = clf.manifest.artifact(clf.backend, clf.precision)  # auto: openvino-fp32 where OpenVINO is installed
    assert client.get("/health").json() == {"status": "ok", "artifact": used.name, "labels": 4}  # type: ignore[attr-defined]
    info = client.get("/info").json()  # type: ignore[attr-defined]
    assert info["labels"] == clf.labels
    assert {k: info["artifact"][k] for k in ("backend", "precision", "path", "bundle", "sha256", "engine")} == {
        "backend": used.backend, "precision": used.precision, "path": used.path, "bundle": str(bundle),
        "sha256": used.sha256, "engine": clf.engine}
    assert info["contract"]["sha256"] == clf.manifest.contract and info["contract"]["max_length"] == 64
    assert info["parity"] is None and info["verify"] is None  # the test bundle has neither
    assert info["device"]["device_id"] == DEVICE["device_id"] and info["limits"]["max_texts"] == LIMITS.max_texts
    for method, path, status in [("GET", "/nope", 404), ("GET", "/predict", 405), ("GET", "/report", 404)]:
        r = client.request(method, path)  # type: ignore[attr-defined]
        assert r.status_code == status and r.headers["content-type"] == "application/json" and r.json()["error"]
    assert "edgekd verify" in client.get("/report").json()["error"]  # type: ignore[attr-defined]


def _write_report(reports: Path, device_id: str, passed: bool) -> None:
    """A verify report's JSON (the fields /info reads) and HTML for one device."""
    row = {"name": "onnx-fp32", "accuracy": {"accuracy": 0.81, "f1_macro": 0.8, "f1_weighted": 0.8},
           "parity": {"agreement": 1.0, "flipped": [1, 2]}, "latency": {"batch1": {"p50_ms": 1.5, "p99_ms": 3.0, "runs": 30}}}
    doc = {"created": "2026-01-01T00:00:00Z", "passed": passed, "data": {"path": "d", "n": 500}, "models": [row],
           "gates": []}
    reports.mkdir(parents=True, exist_ok=True)
    report_path(reports, device_id).write_text(json.dumps(doc))
    report_path(reports, device_id).with_suffix(".html").write_text(f"<html>report of {device_id} in {reports.name}</html>")


def test_info_and_report_are_this_devices(bundle: Path, tmp_path: Path) -> None:
    copy = Path(shutil.copytree(bundle, tmp_path / "bundle"))
    parity = {"status": "passed", "n": 192, "agreement": 1.0, "flips": 0, "max_abs_logit": 2e-6,
              "by_length": {"short": {}}}
    manifest = json.loads((copy / "edgekd.json").read_text())
    manifest["parity"] = {"onnx-fp32": parity}
    (copy / "edgekd.json").write_text(json.dumps(manifest))
    reports = copy / "reports"
    _write_report(reports, DEVICE["device_id"], passed=True)
    _write_report(reports, "linux-x86_64-other-cpu-ffffffff", passed=False)
    with starlette_testclient.TestClient(create_app(edgekd.load(copy, backend="onnx"), device=DEVICE)) as c:
        info = c.get("/info").json()
        assert info["parity"] == {k: v for k, v in parity.items() if k != "by_length"}
        verify = info["verify"]
        assert verify["passed"] is True and verify["path"] == str(report_path(reports, DEVICE["device_id"]))
        assert verify["artifact"]["accuracy"]["accuracy"] == 0.81 and verify["artifact"]["parity"] == {"agreement": 1.0}
        assert verify["artifact"]["latency_ms"] == {"p50_ms": 1.5, "p99_ms": 3.0, "runs": 30} and verify["html"] == "/report"
        r = c.get("/report")
        assert r.status_code == 200 and r.text == f"<html>report of {DEVICE['device_id']} in reports</html>"
        page = c.get("/").text
        assert "accuracy 0.8100 on 500 texts" in page and 'href="report"' in page


def test_a_zip_bundle_reads_the_report_verify_wrote_beside_it(bundle: Path, tmp_path: Path,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("EDGEKD_CACHE", str(tmp_path / "cache"))  # where edgekd.load extracts the zip
    packed = tmp_path / "model.zip"
    with zipfile.ZipFile(packed, "w") as zf:
        for f in sorted(p for p in bundle.rglob("*") if p.is_file()):
            zf.write(f, f.relative_to(bundle).as_posix())
    _write_report(tmp_path / "model-reports", DEVICE["device_id"], passed=True)  # `edgekd verify model.zip` writes here
    clf = edgekd.load(packed, backend="onnx")
    with starlette_testclient.TestClient(create_app(clf, device=DEVICE, source=packed)) as c:
        info = c.get("/info").json()
        assert info["artifact"]["source"] == str(packed) and info["artifact"]["bundle"] == str(clf.bundle)
        assert info["verify"]["path"] == str(report_path(tmp_path / "model-reports", DEVICE["device_id"]))
        assert c.get("/report").text == f"<html>report of {DEVICE['device_id']} in model-reports</html>"


def test_page_is_self_contained(client: object, clf: edgekd.Classifier) -> None:
    r = client.get("/")  # type: ignore[attr-defined]
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/html")
    page = r.text
    for outside in ("http://", "https://", "//fonts", "<link", "@import", "src="):
        assert outside not in page, outside
    assert all(label in page for label in clf.labels) and f"{clf.backend}-{clf.precision}" in page
    assert DEVICE["cpu_model"] in page
    assert 'id="text"' in page and 'id="classify"' in page and 'id="label"' in page


def test_concurrent_requests_on_a_real_server(bundle: Path, clf: edgekd.Classifier) -> None:
    import httpx

    texts, _ = read_texts("ag_news", "test", 48)
    expected = [clf.predict(t).label for t in texts]
    errors: list[str] = []
    got: dict[int, str] = {}
    with Background(bundle) as server:
        def worker(k: int) -> None:
            try:
                with httpx.Client(base_url=server.url, timeout=60) as http:
                    for i in range(k, len(texts), 8):
                        r = http.post("/predict", json={"inputs": texts[i]})
                        if r.status_code != 200:
                            errors.append(r.text)
                        else:
                            got[i] = r.json()[0]["label"]
            except Exception as exc:  # a dead client thread must show why, not as a missing answer
                errors.append(f"client {k}: {type(exc).__name__}: {exc}")

        threads = [threading.Thread(target=worker, args=(k,)) for k in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert errors == [] and [got[i] for i in range(len(texts))] == expected
    assert server.returncode == 0


def test_real_server_survives_bad_requests_and_stops_on_ctrl_c(bundle: Path, clf: edgekd.Classifier) -> None:
    import httpx

    with Background(bundle) as server, httpx.Client(base_url=server.url, timeout=60) as http:
        assert server.url.startswith("http://127.0.0.1:")  # loopback by default
        assert http.get("/health").json()["status"] == "ok"
        json_type = {"content-type": "application/json"}
        for body, status in [(b'{"inputs": "caf\xe9"}', 400), (b"{", 400), (b'{"inputs": 1}', 422),
                             (b" " * (3 * LIMITS.max_body_bytes), 413)]:
            assert http.post("/predict", content=body, headers=json_type).status_code == status
            assert http.post("/predict", json=GOOD).json()[0]["label"] == clf.predict(GOOD["inputs"]).label
        with socket.create_connection(("127.0.0.1", int(server.url.rsplit(":", 1)[1]))) as raw:
            raw.sendall(b"NOT HTTP AT ALL\r\n\r\n")  # not even HTTP: uvicorn answers 400 and closes
            assert raw.recv(100).startswith(b"HTTP/1.1 400")
        assert http.post("/predict", json=GOOD).status_code == 200
    # Background sent SIGINT, as Ctrl-C does
    assert server.returncode == 0 and server.stdout.strip() == "edgekd serve: stopped"
    assert "Traceback" not in server.stderr, server.stderr


def test_port_in_use_and_bad_options_are_one_line_errors(bundle: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        for args, words in [(["--port", str(port)], f"cannot listen on 127.0.0.1:{port}"),
                            (["--threads", "0"], "--threads must be a positive int"),
                            (["--port", "70000"], "--port must be 0..65535"),
                            (["--backend", "onnx", "--precision", "int8"], "no onnx-int8 artifact")]:
            proc = subprocess.run([sys.executable, "-m", "edgekd", "serve", str(bundle), *args], capture_output=True,
                                  text=True, timeout=120)
            assert proc.returncode == 2 and words in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
            assert len(proc.stderr.strip().splitlines()) == 1


def test_serve_imports_no_torch(bundle: Path) -> None:
    heavy = ("torch", "transformers", "optimum")
    code = (
        "import json, sys\n"
        "import edgekd, edgekd.commands.serve, edgekd.serve.app, edgekd.serve.server\n"
        "from starlette.testclient import TestClient\n"
        f"app = edgekd.serve.app.create_app(edgekd.load({str(bundle)!r}))\n"
        "with TestClient(app) as c:\n"
        "    out = [c.post('/predict', json={'inputs': 'x'}).status_code, c.get('/info').status_code,\n"
        "           c.get('/').status_code]\n"
        f"print(json.dumps({{'status': out, 'heavy': [m for m in {heavy!r} if m in sys.modules]}}))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120,
                          env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert json.loads(proc.stdout.strip().splitlines()[-1]) == {"status": [200, 200, 200], "heavy": []}


# Headless Chromium as root in a closed network: no sandbox, GPU or QUIC, and none of the background
# connections (component updates, sync, ...) that the network would refuse.
CHROMIUM_FLAGS = ("--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync",
                  "--disable-dev-shm-usage", "--window-size=1000,1200")


def chromium(profile: Path) -> object:
    """A Selenium driver for the system's Chromium (never a downloaded browser); skips, saying what to
    install, when chromium, chromedriver or selenium are missing."""
    paths = {name: shutil.which(name) for name in ("chromium", "chromedriver")}
    missing = [name for name, path in paths.items() if path is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed: apt-get install -y chromium chromium-driver")
    webdriver = pytest.importorskip("selenium.webdriver", reason="selenium not installed: pip install 'edgekd[dev]'")
    options = webdriver.ChromeOptions()
    options.binary_location = paths["chromium"]
    for flag in (*CHROMIUM_FLAGS, f"--user-data-dir={profile}"):
        options.add_argument(flag)
    return webdriver.Chrome(options=options, service=webdriver.ChromeService(executable_path=paths["chromedriver"]))


@pytest.mark.slow
def test_page_in_headless_chromium_shows_the_runtime_label(bundle: Path, clf: edgekd.Classifier, tmp_path: Path) -> None:
    from selenium.webdriver.common.by import By
    from selenium.webdriver.support.ui import WebDriverWait

    driver = chromium(tmp_path / "profile")
    texts = ["Stocks rallied after the central bank held rates.", read_texts("ag_news", "test", 3)[0][2]]
    try:
        with Background(bundle) as server:
            driver.get(server.url + "/")
            for calls, text in enumerate(texts, start=1):
                box = driver.find_element(By.ID, "text")
                box.clear()
                box.send_keys(text)
                driver.find_element(By.ID, "classify").click()
                done = str(calls)
                WebDriverWait(driver, 30).until(
                    lambda d, done=done: d.find_element(By.ID, "result").get_attribute("data-calls") == done)
                assert driver.find_element(By.ID, "label").text == clf.predict(text).label
                bars = driver.find_elements(By.CSS_SELECTOR, "#bars .bar")
                assert [b.find_element(By.CLASS_NAME, "name").text for b in bars][0] == clf.predict(text).label
                assert len(bars) == len(clf.labels) and "ms" in driver.find_element(By.ID, "latency").text
            assert driver.find_element(By.ID, "error").text == ""
    finally:
        driver.quit()
    assert server.returncode == 0
