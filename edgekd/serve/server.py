"""Run the app under uvicorn on a socket edgekd binds itself: a port in use is a one-line error
naming the fix (uvicorn would log it and `sys.exit(1)`), and `--port 0` gets a free port whose number
is printed (tests and the load benchmark use it)."""

from __future__ import annotations

import ipaddress
import os
import re
import signal
import socket
import subprocess
import sys
import threading
from typing import Any

from edgekd.errors import EdgekdError, require

DEFAULT_HOST = "127.0.0.1"  # loopback: only this machine can reach the model unless --host says otherwise
DEFAULT_PORT = 8000
BACKLOG = 2048  # uvicorn's default


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def bind(host: str, port: int) -> socket.socket:
    """A listening TCP socket on (host, port); `EdgekdError` naming the fix when it cannot bind."""
    if not 0 <= port <= 65535:
        raise EdgekdError(f"--port must be 0..65535 (0: any free port), got {port}")
    try:
        family, kind, proto, _, address = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)[0]
    except socket.gaierror as exc:
        raise EdgekdError(f"cannot resolve --host {host!r} ({exc.strerror}); pass an address such as 127.0.0.1") from exc
    sock = socket.socket(family, kind, proto)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise EdgekdError(f"cannot listen on {host}:{port} ({exc.strerror}); pass another --port "
                          "(or --port 0 for any free one)") from exc
    sock.listen(BACKLOG)  # connections queue from here on, before the event loop starts
    return sock


def url(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"http://[{host}]:{port}" if ":" in host else f"http://{host}:{port}"


def run(app: Any, sock: socket.socket, verbose: bool = False) -> None:
    """Serve until SIGINT/SIGTERM. Access logs only when `verbose`."""
    uvicorn = require("uvicorn", "serve", "edgekd serve")
    # asyncio + h11, named, so the server runs the same stack wherever it is installed. (A hang of 8
    # concurrent clients first blamed on uvloop + httptools recurred without them: it was OpenVINO
    # infer requests deadlocking across threads, fixed in edgekd/runtimes/openvino.py.)
    config = uvicorn.Config(app, log_level="info" if verbose else "warning", access_log=verbose,
                            server_header=False, loop="asyncio", http="h11")
    uvicorn.Server(config).run(sockets=[sock])


class Background:
    """`edgekd serve BUNDLE --port 0 ...` in a child process (tests, the load benchmark): `url` once it
    listens; after the `with` block, its exit code and output (it is stopped with SIGINT, as by Ctrl-C)."""

    def __init__(self, bundle: str | os.PathLike[str], *args: str, timeout: float = 120.0) -> None:
        self.command = [sys.executable, "-m", "edgekd", "serve", str(bundle), "--port", "0", *args]
        self.timeout = timeout
        self.url = ""
        self.returncode: int | None = None
        self.stdout = self.stderr = ""

    def __enter__(self) -> Background:
        self._proc = subprocess.Popen(self.command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        # Drained while it runs, so a chatty child never blocks on a full pipe.
        self._err: list[str] = []
        self._drain = threading.Thread(target=lambda: self._err.append(self._proc.stderr.read()), daemon=True)
        self._drain.start()
        first: list[str] = []
        reader = threading.Thread(target=lambda: first.append(self._proc.stdout.readline()), daemon=True)
        reader.start()
        reader.join(self.timeout)
        found = re.search(r"http://\S+", first[0]) if first else None
        if found is None:
            self._stop()
            raise EdgekdError(f"edgekd serve did not start within {self.timeout:.0f} s: "
                              f"{(first or [''])[0]}{self.stdout}{self.stderr}")
        self.url = found.group(0)
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop()

    @property
    def pid(self) -> int:
        """The server process id (e.g. to read its CPU time)."""
        return self._proc.pid

    def _stop(self) -> None:
        if self._proc.poll() is None:
            self._proc.send_signal(signal.SIGINT)
        try:
            self._proc.wait(self.timeout)
        except subprocess.TimeoutExpired:
            self._proc.kill()
            self._proc.wait()
        self.stdout = self._proc.stdout.read()  # a few lines: the child never filled the pipe
        self._proc.stdout.close()
        self._drain.join(self.timeout)
        self.stderr = "".join(self._err)
        self.returncode = self._proc.returncode
