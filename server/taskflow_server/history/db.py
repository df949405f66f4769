"""The PostgreSQL side of the task history: one connection pool and the schema migrations.

Migrations are the numbered ``migrations/NNNN_name.sql`` files beside this module. At start-up
:meth:`HistoryDB.migrate` applies, in order, each one the database has not seen, each in its own
transaction together with its row in ``schema_version``; an advisory lock makes concurrent
start-ups (a server and its workers) apply each file exactly once.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass
from importlib import resources
from typing import Any

log = logging.getLogger(__name__)

_MIGRATION_NAME = re.compile(r"^(\d{4})_[a-z0-9_]+\.sql$")
_LOCK_ID = 0x7A5C_F10E  # pg_advisory_xact_lock key: "taskflow migrations"


class HistoryUnavailable(RuntimeError):
    """The history extra (psycopg) is missing or the database cannot be reached."""


@dataclass(frozen=True)
class Migration:
    """One schema step: its version number, file name and SQL."""

    version: int
    name: str
    sql: str


def migrations() -> list[Migration]:
    """Every migration shipped with the package, by version."""
    found: list[Migration] = []
    for entry in resources.files("taskflow_server.history").joinpath("migrations").iterdir():
        match = _MIGRATION_NAME.match(entry.name)
        if match:
            found.append(Migration(int(match.group(1)), entry.name, entry.read_text("utf-8")))
    return sorted(found, key=lambda m: m.version)


class HistoryDB:
    """A psycopg 3 async connection pool on the history database.

    Args:
        url: ``postgresql://user@host:port/dbname``.
        min_size, max_size: the pool's bounds.
    """

    def __init__(self, url: str, *, min_size: int = 1, max_size: int = 4) -> None:
        try:
            from psycopg_pool import AsyncConnectionPool
        except ImportError as exc:  # pragma: no cover - depends on the installed extras
            raise HistoryUnavailable(
                "TASKFLOW_DATABASE_URL is set but psycopg is not installed: "
                "pip install 'asynctaskflow[history]'"
            ) from exc
        self.url = url
        # Each connection is checked as it is handed out, so one cut by a PostgreSQL restart is
        # replaced instead of failing the next transaction. The pool's own reconnect warnings
        # (one per try) are left out: the recorder says once per outage that it is down.
        if logging.getLogger("psycopg.pool").level == logging.NOTSET:
            logging.getLogger("psycopg.pool").setLevel(logging.ERROR)
        self.pool: Any = AsyncConnectionPool(
            url,
            min_size=min_size,
            max_size=max_size,
            open=False,
            kwargs={"autocommit": False},
            check=AsyncConnectionPool.check_connection,
        )

    async def open(self, *, timeout: float = 10.0, wait: bool = True) -> None:
        """Open the pool; with ``wait``, until one connection works (else
        :class:`psycopg_pool.PoolTimeout`, and the pool is closed for good).

        Without ``wait`` the pool connects in the background and keeps trying while the
        database is down: callers get errors until it answers, then it just works.
        """
        await self.pool.open(wait=wait, timeout=timeout)

    async def close(self) -> None:
        """Close every connection of the pool."""
        await self.pool.close()

    async def migrate(self, *, timeout: float = 30.0) -> list[int]:
        """Apply the migrations the database lacks; returns the versions applied now.

        ``timeout``: how long to wait for a connection (:class:`psycopg_pool.PoolTimeout`).
        """
        applied: list[int] = []
        async with self.pool.connection(timeout=timeout) as conn:
            async with conn.transaction():
                await conn.execute(
                    "CREATE TABLE IF NOT EXISTS schema_version ("
                    " version integer PRIMARY KEY, name text NOT NULL,"
                    " applied_at timestamptz NOT NULL DEFAULT now())"
                )
            for step in migrations():
                async with conn.transaction():
                    await conn.execute("SELECT pg_advisory_xact_lock(%s)", (_LOCK_ID,))
                    cur = await conn.execute(
                        "SELECT 1 FROM schema_version WHERE version = %s", (step.version,)
                    )
                    if await cur.fetchone():
                        continue
                    await conn.execute(step.sql.encode())
                    await conn.execute(
                        "INSERT INTO schema_version (version, name) VALUES (%s, %s)",
                        (step.version, step.name),
                    )
                    applied.append(step.version)
                    log.info("history: applied migration %s", step.name)
        return applied

    async def version(self) -> int:
        """The newest schema version applied (0 on an empty database)."""
        async with self.pool.connection() as conn:
            cur = await conn.execute("SELECT coalesce(max(version), 0) FROM schema_version")
            row = await cur.fetchone()
            return int(row[0]) if row else 0
