"""The HTTP app: one loaded `Classifier` behind a Starlette application (`pip install edgekd[serve]`).

    GET  /          the page (text box, label bars, latency, model and device facts)
    POST /predict   Hugging Face text-classification JSON (edgekd/serve/api.py)
    GET  /health    {"status": "ok", ...}
    GET  /info      labels, artifact in use, contract, export parity, this device's verify summary
    GET  /report    this device's verify report (HTML) when the bundle has one

Every error is JSON `{"error": message}` with a 4xx/5xx status. Predictions run in Starlette's
threadpool: the classifier is thread-safe, so concurrent requests share one loaded model and use
every core while the event loop keeps accepting connections.
"""

from __future__ import annotations

import os
import time
from pathlib import Path
from typing import Any

from edgekd.errors import require
from edgekd.runtimes.classifier import Classifier
from edgekd.serve.api import LIMITS, Limits, RequestError, parse_predict, predictions
from edgekd.serve.info import bundle_info, device_report
from edgekd.serve.page import render_page

# Media types /predict accepts. Requiring JSON also keeps other web pages from posting to a local
# server without a CORS preflight (which this server never grants).
JSON_TYPES = ("application/json",)
# An oversize body is read and dropped up to this many times the limit before the 413 (see _read_body).
DRAIN_FACTOR = 8


def create_app(clf: Classifier, device: dict[str, Any] | None = None, limits: Limits = LIMITS,
               source: str | os.PathLike[str] | None = None) -> Any:
    """A Starlette app serving `clf`. `device`: the fingerprint to report (default: this machine's);
    `source`: the bundle path as given to `edgekd.load` (a .zip's reports may sit beside it)."""
    require("starlette", "serve", "edgekd serve")
    from starlette.applications import Starlette
    from starlette.exceptions import HTTPException
    from starlette.routing import Route

    if device is None:
        from edgekd.verify.device import fingerprint

        device = fingerprint()
    e = _Endpoints(clf, device, limits, Path(source) if source is not None else None)
    routes = [Route("/", e.home), Route("/health", e.health), Route("/info", e.info),
              Route("/report", e.report), Route("/predict", e.predict, methods=["POST"])]
    return Starlette(routes=routes, exception_handlers={HTTPException: e.http_error, Exception: e.server_error})


class _Endpoints:
    """The routes' handlers over one classifier; /info and the page are built once, at start."""

    def __init__(self, clf: Classifier, device: dict[str, Any], limits: Limits, source: Path | None) -> None:
        self.clf, self.device, self.limits = clf, device, limits
        report = device_report(clf.bundle, device["device_id"], source)
        self.report_html = report.with_suffix(".html") if report else None
        self.document = bundle_info(clf, device, limits, report, source)
        self.page = render_page(self.document)

    async def home(self, request: Any) -> Any:
        from starlette.responses import HTMLResponse

        return HTMLResponse(self.page)

    async def health(self, request: Any) -> Any:
        return _json({"status": "ok", "artifact": self.document["artifact"]["name"],
                      "labels": len(self.document["labels"])})

    async def info(self, request: Any) -> Any:
        return _json(self.document)

    async def report(self, request: Any) -> Any:
        from starlette.responses import FileResponse

        if self.report_html is None or not self.report_html.is_file():
            return _error(404, f"no verify report for this device ({self.device['device_id']}) in the bundle; "
                               "create one with: edgekd verify BUNDLE --data D")
        return FileResponse(self.report_html, media_type="text/html")

    async def predict(self, request: Any) -> Any:
        from starlette.concurrency import run_in_threadpool

        try:
            _check_media_type(request.headers.get("content-type", ""))
            body = await _read_body(request, self.limits.max_body_bytes)
            req = parse_predict(body, self.limits)
        except RequestError as exc:
            return _error(exc.status, exc.message)
        started = time.perf_counter()
        try:
            logits = await run_in_threadpool(self.clf.logits, req.texts)  # [n, num_labels]
        except ValueError as exc:  # the runtime refused a text that parse_predict let through
            return _error(422, str(exc))
        model_ms = (time.perf_counter() - started) * 1000
        return _json(predictions(logits, self.clf.labels, req), headers={"Server-Timing": f"model;dur={model_ms:.2f}"})

    async def http_error(self, request: Any, exc: Any) -> Any:  # exc: starlette HTTPException (404, 405)
        allowed = f"; allowed: {exc.headers['Allow']}" if exc.headers and "Allow" in exc.headers else ""
        return _error(exc.status_code, f"{request.method} {request.url.path}: {exc.detail}{allowed}", exc.headers)

    async def server_error(self, request: Any, exc: Exception) -> Any:
        return _error(500, f"internal error: {type(exc).__name__}: {exc}")


def _json(content: Any, status: int = 200, headers: dict[str, str] | None = None) -> Any:
    from starlette.responses import JSONResponse

    return JSONResponse(content, status_code=status, headers=headers)


def _error(status: int, message: str, headers: dict[str, str] | None = None) -> Any:
    return _json({"error": message}, status, headers)


def _check_media_type(content_type: str) -> None:
    media = content_type.split(";")[0].strip().lower()
    if media not in JSON_TYPES:
        raise RequestError(415, f"Content-Type must be application/json, got {content_type or 'none'!r} "
                                "(curl: --json '{\"inputs\": \"...\"}')")


async def _read_body(request: Any, limit: int) -> bytes:
    """The body, refused with 413 once it passes `limit` bytes; never held whole in memory. The rest of an
    oversize body is read and dropped up to DRAIN_FACTOR x `limit`, so a client still sending gets the 413
    rather than a reset connection; past that the connection is closed on it."""
    length = request.headers.get("content-length")
    if length is not None and not length.isdigit():
        raise RequestError(400, f"Content-Length {length!r} is not a byte count")
    if length is not None and int(length) > limit * DRAIN_FACTOR:
        raise RequestError(413, f"the body is {int(length)} bytes; at most {limit}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size <= limit:
            chunks.append(chunk)
        elif size >= limit * DRAIN_FACTOR:
            break
    if size > limit:
        total = f"{int(length)} bytes" if length is not None else f"over {limit} bytes"
        raise RequestError(413, f"the body is {total}; at most {limit}")
    return b"".join(chunks)
