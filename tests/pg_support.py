"""A real PostgreSQL for the history tests: the one that answers, or a private one we start.

``TASKFLOW_TEST_DATABASE_URL`` (default ``postgresql://postgres@127.0.0.1:5432/postgres``) names a
server and a database to connect to for administration; each test gets a database of its own,
created and dropped around it. When nothing answers there, :func:`start_private_postgres` runs
``initdb`` and ``postgres`` from the machine's PostgreSQL binaries on a free loopback port (as the
``postgres`` user when we are root, because PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import glob
import os
import shutil
import subprocess
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

from support import free_port

DEFAULT_ADMIN_URL = "postgresql://postgres@127.0.0.1:5432/postgres"


def admin_url() -> str:
    """The URL the tests administer databases through."""
    return os.environ.get("TASKFLOW_TEST_DATABASE_URL", DEFAULT_ADMIN_URL)


def answers(url: str) -> bool:
    """Whether a PostgreSQL accepts a connection at ``url`` within two seconds."""
    try:
        import psycopg
    except ImportError:
        return False
    try:
        with psycopg.connect(url, connect_timeout=2) as conn:
            conn.execute("SELECT 1")
        return True
    except psycopg.Error:
        return False


def with_database(url: str, dbname: str) -> str:
    """``url`` with its database replaced by ``dbname``."""
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "/" + dbname, parts.query, parts.fragment))


def create_database(admin: str, prefix: str = "taskflow_test") -> str:
    """Create a fresh empty database; returns its URL."""
    import psycopg

    name = f"{prefix}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    return with_database(admin, name)


def drop_database(admin: str, url: str) -> None:
    """Drop the database ``url`` names, closing its other connections first."""
    import psycopg

    name = urlsplit(url).path.lstrip("/")
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


@dataclass
class PrivatePostgres:
    """A PostgreSQL server of our own: its data folder, port and process."""

    datadir: Path
    port: int
    proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The admin URL (user ``postgres``, database ``postgres``)."""
        return f"postgresql://postgres@127.0.0.1:{self.port}/postgres"

    def _cmd(self, args: list[str]) -> list[str]:
        if os.geteuid() == 0:
            return ["runuser", "-u", "postgres", "--", *args]
        return args

    def start(self, timeout: float = 30.0) -> None:
        """Start (or restart) the server and wait until it answers."""
        exe = _bin("postgres")
        assert exe is not None
        self.proc = subprocess.Popen(
            self._cmd(
                [
                    exe,
                    "-D",
                    str(self.datadir),
                    "-p",
                    str(self.port),
                    "-h",
                    "127.0.0.1",
                    "-k",
                    str(self.datadir),
                    "-c",
                    "fsync=off",
                ]
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if answers(self.url):
                return
            if self.proc.poll() is not None:
                raise RuntimeError(f"postgres exited with {self.proc.returncode}")
            time.sleep(0.1)
        raise RuntimeError(f"postgres on port {self.port} did not answer within {timeout:g} s")

    def stop(self) -> None:
        """Stop the server (fast shutdown: open connections are cut) and wait until it is down."""
        pg_ctl = _bin("pg_ctl")
        assert pg_ctl is not None
        subprocess.run(
            self._cmd([pg_ctl, "stop", "-D", str(self.datadir), "-m", "fast", "-w", "-t", "20"]),
            capture_output=True,
            check=False,
        )
        if self.proc is not None:
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(timeout=10)
        self.proc = None

    def destroy(self) -> None:
        """Stop the server and remove its data folder."""
        self.stop()
        shutil.rmtree(self.datadir, ignore_errors=True)


def start_private_postgres() -> PrivatePostgres:
    """``initdb`` a fresh cluster in a temporary folder and start it on a free port."""
    initdb = _bin("initdb")
    if initdb is None or _bin("postgres") is None:
        raise RuntimeError("PostgreSQL's server binaries (initdb, postgres) are not installed")
    datadir = Path(tempfile.mkdtemp(prefix="taskflow-pg-"))
    server = PrivatePostgres(datadir, free_port())
    if os.geteuid() == 0:
        shutil.chown(datadir, "postgres", "postgres")
    result = subprocess.run(
        server._cmd([initdb, "-D", str(datadir), "-U", "postgres", "--auth=trust", "-E", "UTF8"]),
        capture_output=True,
        text=True,
        check=False,
    )
    if result.returncode != 0:
        shutil.rmtree(datadir, ignore_errors=True)
        raise RuntimeError(f"initdb failed: {result.stderr.strip()[-300:]}")
    server.start()
    return server
