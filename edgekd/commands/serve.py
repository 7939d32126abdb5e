"""`edgekd serve bundle/`: the bundle behind an HTTP API and a page, torch-free (`pip install edgekd[serve]`).

    edgekd serve bundle/                          http://127.0.0.1:8000 (loopback only)
    edgekd serve bundle.zip --port 9000 --backend onnx --precision int8 --threads 2
    curl --json '{"inputs": "Stocks rallied"}' http://127.0.0.1:8000/predict

Routes: GET / (page), POST /predict, GET /health, GET /info, GET /report (edgekd/serve/app.py).
Ctrl-C stops it (exit 0).
"""

from __future__ import annotations

import argparse
import sys

from edgekd.errors import RecipeError

HELP = "serve a bundle over HTTP: a page, /predict (Hugging Face JSON), /info, /health (torch-free)"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from edgekd.serve.server import DEFAULT_HOST, DEFAULT_PORT

    parser.add_argument("bundle", help="bundle directory or .zip")
    parser.add_argument("--host", default=DEFAULT_HOST,
                        help=f"address to listen on (default {DEFAULT_HOST}: this machine only; 0.0.0.0: every interface)")
    parser.add_argument("--port", type=int, default=DEFAULT_PORT, help=f"TCP port (default {DEFAULT_PORT}; 0: any free port)")
    parser.add_argument("--backend", default="auto",
                        help="auto (default), onnx, openvino, coreml, coreml-reference")
    parser.add_argument("--precision", default="auto", help="auto (default: fastest measured here, else int8 if "
                                                                 "present), fp32, fp16, int8")
    parser.add_argument("--prefer", default="latency", choices=("latency", "throughput"),
                        help="what auto ranks this device's verify report by: batch-1 p50 (default) or texts/s")
    parser.add_argument("--threads", type=int, default=None, help="backend intra-op threads (default: backend's)")


def run(args: argparse.Namespace) -> int:
    """Check the options and dependencies, load the bundle, bind, then serve until Ctrl-C."""
    import edgekd
    from edgekd.errors import require
    from edgekd.serve import server

    if args.threads is not None and args.threads < 1:
        raise RecipeError(f"--threads must be a positive int, got {args.threads}")
    require("starlette", "serve", "edgekd serve")
    require("uvicorn", "serve", "edgekd serve")
    from edgekd.serve.app import create_app

    clf = edgekd.load(args.bundle, backend=args.backend, precision=args.precision, threads=args.threads,
                      prefer=args.prefer)
    app = create_app(clf, source=args.bundle)
    sock = server.bind(args.host, args.port)
    print(f"edgekd serve: {server.url(sock)}  ({clf.backend}-{clf.precision}, {len(clf.labels)} labels; Ctrl-C to stop)",
          flush=True)
    if getattr(args, "verbose", False):
        print(f"edgekd serve: {clf.backend}-{clf.precision} ({clf.choice.rule}: {clf.choice.reason})", file=sys.stderr,
              flush=True)
    if not server.is_loopback(args.host):
        print(f"edgekd serve: listening on {args.host}: any machine that reaches this one can call the model",
              file=sys.stderr, flush=True)
    try:
        server.run(app, sock, verbose=bool(getattr(args, "verbose", False)))
    except KeyboardInterrupt:  # uvicorn shuts down on SIGINT, then re-raises it
        pass
    finally:
        sock.close()
    print("edgekd serve: stopped", flush=True)
    return 0
