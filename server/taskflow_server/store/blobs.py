"""Blob storage for large inputs (the claim-check pattern).

An uploaded file is stored once under its sha256 and tasks carry only that reference, so a task
hash never holds a PDF and uploading the same file twice costs nothing. Tasks hold references:
the submit script counts each task whose payload names a blob, and the delete and retention
scripts delete the blob with the last task that refers to it. A blob no task refers to (an
upload whose submit was refused, say) is kept ``ttl_seconds``. Every blob counts against a
total-bytes quota (``max_bytes``), checked in the same script that stores the bytes.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from redis.asyncio import Redis
from redis.commands.core import AsyncScript

from taskflow_server.errors import TaskflowError
from taskflow_server.store.keys import Keys
from taskflow_server.store.queue import load_script_source


class BlobQuotaExceededError(TaskflowError):
    """Storing a blob would take the total size of all blobs over the quota."""

    def __init__(self, size: int, total: int, limit: int) -> None:
        self.size = size
        self.total = total
        self.limit = limit
        super().__init__(
            f"storing {size} bytes would take uploaded files to {total + size} bytes, over the "
            f"quota of {limit} bytes (TASKFLOW_MAX_BLOB_BYTES); delete tasks that refer to "
            "uploaded files, or raise the quota"
        )


@dataclass(frozen=True)
class BlobUsage:
    """How many blobs are stored and their total size in bytes (plus the quota)."""

    count: int
    bytes: int
    max_bytes: int


class BlobStore:
    """Content-addressed bytes in Redis, reference-counted by tasks, within a quota.

    Args:
        redis: an async client (``decode_responses=False``).
        keys: the key builder.
        ttl_seconds: how long a blob no task refers to is kept after its (last) upload.
        max_bytes: the most bytes all blobs may hold together.
    """

    def __init__(
        self, redis: Redis, keys: Keys, ttl_seconds: int, max_bytes: int = 2 * 1024**3
    ) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = ttl_seconds
        self.max_bytes = max_bytes
        self._put_script: AsyncScript | None = None

    @staticmethod
    def digest(data: bytes) -> str:
        """The sha256 hex digest that names ``data``."""
        return hashlib.sha256(data).hexdigest()

    async def put(self, data: bytes) -> str:
        """Store ``data`` (once) and return its sha256.

        Re-uploading a stored file costs nothing (an unreferenced one's retention restarts).
        Raises :class:`BlobQuotaExceededError` when a new file would take the total over the quota.
        """
        sha = self.digest(data)
        if self._put_script is None:
            self._put_script = self._redis.register_script(load_script_source("blob_put"))
        raw: Any = await self._put_script(
            keys=[self._keys.counts],
            args=[self._keys.tag, 0, sha, data, self._ttl, self.max_bytes],
        )
        outcome = raw[0].decode() if isinstance(raw[0], bytes) else str(raw[0])
        if outcome == "quota":
            raise BlobQuotaExceededError(len(data), int(raw[1]), self.max_bytes)
        return sha

    async def get(self, sha: str) -> bytes | None:
        """The bytes stored under ``sha``, or ``None`` when unknown or expired."""
        value: Any = await self._redis.get(self._keys.blob(sha))
        return bytes(value) if value is not None else None

    async def size(self, sha: str) -> int | None:
        """The stored size in bytes, or ``None`` when unknown or expired."""
        key = self._keys.blob(sha)
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.exists(key)
            pipe.strlen(key)
            exists, length = await pipe.execute()
        return int(length) if exists else None

    async def exists(self, sha: str) -> bool:
        """Whether a blob with this digest is stored."""
        return bool(await self._redis.exists(self._keys.blob(sha)))

    async def usage(self) -> BlobUsage:
        """The number of stored blobs and their total size."""
        async with self._redis.pipeline(transaction=False) as pipe:
            pipe.hlen(self._keys.blob_sizes)
            pipe.get(self._keys.blob_bytes)
            count, total = await pipe.execute()
        return BlobUsage(int(count), max(0, int(total or 0)), self.max_bytes)
