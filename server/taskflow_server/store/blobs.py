"""Blob storage for large inputs (the claim-check pattern).

An uploaded file is stored once under its sha256 and tasks carry only that reference, so a task
hash never holds a PDF and uploading the same file twice costs nothing. Blobs expire after the
configured retention.
"""

from __future__ import annotations

import hashlib
from typing import Any

from redis.asyncio import Redis

from taskflow_server.store.keys import Keys


class BlobStore:
    """Content-addressed bytes in Redis, each kept ``ttl_seconds`` after its last upload."""

    def __init__(self, redis: Redis, keys: Keys, ttl_seconds: int) -> None:
        self._redis = redis
        self._keys = keys
        self._ttl = ttl_seconds

    @staticmethod
    def digest(data: bytes) -> str:
        """The sha256 hex digest that names ``data``."""
        return hashlib.sha256(data).hexdigest()

    async def put(self, data: bytes) -> str:
        """Store ``data`` (once) and return its sha256; re-uploading refreshes the retention."""
        sha = self.digest(data)
        key = self._keys.blob(sha)
        # SET NX keeps the first copy; EXPIRE refreshes retention for an existing one.
        if not await self._redis.set(key, data, ex=self._ttl, nx=True):
            await self._redis.expire(key, self._ttl)
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
