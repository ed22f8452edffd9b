"""A throwaway PostgreSQL cluster for tests: initdb + pg_ctl on a free port, removed afterwards.

Debian's postgresql-15 puts the server binaries under /usr/lib/postgresql/<version>/bin (not
on PATH). The server refuses to run as root, so as root the cluster belongs to `postgres`
and every server command runs through runuser.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

USER = "lenspipe"
PASSWORD = "s3cret-for-tests"  # only this throwaway cluster knows it


def server_bin() -> Optional[Path]:
    """The newest installed PostgreSQL server's bin folder, or None."""
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"), key=lambda p: int(Path(p).parts[-3]))
    if found:
        return Path(found[-1]).parent
    initdb = shutil.which("initdb")
    return Path(initdb).parent if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Cluster:
    root: Path
    port: int
    bin: Path
    owner: Optional[str]

    def _run(self, *cmd: str, check: bool = True) -> subprocess.CompletedProcess:
        full = [str(self.bin / cmd[0]), *cmd[1:]]
        if self.owner:
            full = ["runuser", "-u", self.owner, "--", *full]
        return subprocess.run(full, capture_output=True, text=True, check=check, timeout=120)

    def url(self, database: str, scheme: str = "postgresql") -> str:
        """A URL without the password, as runtime.metadata takes it."""
        return f"{scheme}://{USER}@127.0.0.1:{self.port}/{database}"

    def sqlalchemy_url(self, database: str) -> str:
        return f"postgresql+psycopg2://{USER}:{PASSWORD}@127.0.0.1:{self.port}/{database}"

    def create_database(self, name: str) -> None:
        self._run("createdb", "-h", str(self.root), "-p", str(self.port), "-U", USER, name)

    def databases(self) -> list[str]:
        out = self._run(
            "psql", "-h", str(self.root), "-p", str(self.port), "-U", USER, "-d", "postgres", "-Atc",
            "SELECT datname FROM pg_database",
        ).stdout
        return out.split()

    def stop(self) -> None:
        self._run("pg_ctl", "-D", str(self.root / "data"), "-m", "fast", "-w", "stop", check=False)
        shutil.rmtree(self.root, ignore_errors=True)


def start() -> Cluster:
    """initdb a cluster in a fresh temp folder and start it on 127.0.0.1 (password auth over TCP)."""
    bin_dir = server_bin()
    if bin_dir is None:
        raise RuntimeError("PostgreSQL server binaries not found; install Debian's postgresql-15 (make postgres-deps)")
    owner = "postgres" if os.geteuid() == 0 else None
    # Outside pytest's tmp_path: that is private to root, and the server runs as postgres.
    root = Path(tempfile.mkdtemp(prefix="lenspipe-pg-"))
    pwfile = root / "pwfile"
    pwfile.write_text(PASSWORD + "\n")
    if owner:
        shutil.chown(root, owner)
        shutil.chown(pwfile, owner)
    cluster = Cluster(root=root, port=_free_port(), bin=bin_dir, owner=owner)
    try:
        cluster._run(
            "initdb", "-D", str(root / "data"), "-U", USER, f"--pwfile={pwfile}",
            "--auth-host=scram-sha-256", "--auth-local=trust", "-E", "UTF8", "--no-sync",
        )
        cluster._run(
            "pg_ctl", "-D", str(root / "data"), "-l", str(root / "server.log"), "-w", "-t", "60",
            "-o", f"-p {cluster.port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off", "start",
        )
    except subprocess.CalledProcessError as e:
        log = (root / "server.log").read_text() if (root / "server.log").exists() else ""
        cluster.stop()
        raise RuntimeError(f"PostgreSQL did not start: {e.stderr.strip()} {log[-2000:]}") from None
    return cluster
