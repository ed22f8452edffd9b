"""A throwaway Redis server for tests: Debian's redis-server on a free loopback port, removed afterwards.

No persistence (no RDB snapshots, no AOF) and a private temp folder as its working directory;
`make redis-deps` installs the binary.
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from tests.postgres import _free_port


def _ping(port: int) -> bool:
    """True once the server on ``port`` answers PING (RESP inline command) with +PONG."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=2) as s:
            s.sendall(b"PING\r\n")
            return s.recv(64).startswith(b"+PONG")
    except OSError:
        return False


@dataclass
class Server:
    root: Path
    port: int
    process: subprocess.Popen

    def url(self, db: int = 0) -> str:
        return f"redis://127.0.0.1:{self.port}/{db}"

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        shutil.rmtree(self.root, ignore_errors=True)


def start(timeout_s: float = 30.0) -> Server:
    """Start redis-server on 127.0.0.1:<free port>; raises RuntimeError naming the fix if it cannot."""
    binary = shutil.which("redis-server")
    if binary is None:
        raise RuntimeError("redis-server not found; install Debian's redis-server (make redis-deps)")
    root = Path(tempfile.mkdtemp(prefix="lenspipe-redis-"))
    port = _free_port()
    log = open(root / "server.log", "w")
    process = subprocess.Popen(
        [
            binary, "--port", str(port), "--bind", "127.0.0.1", "--dir", str(root),
            "--save", "", "--appendonly", "no", "--daemonize", "no", "--protected-mode", "yes",
        ],
        stdout=log, stderr=subprocess.STDOUT,
    )
    server = Server(root=root, port=port, process=process)
    deadline = time.monotonic() + timeout_s
    while not _ping(port):
        if process.poll() is not None or time.monotonic() > deadline:
            text = (root / "server.log").read_text()[-2000:]
            server.stop()
            raise RuntimeError(f"redis-server did not start on port {port}: {text}")
        time.sleep(0.1)
    return server
