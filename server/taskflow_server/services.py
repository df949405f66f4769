"""Shared services a worker (and the API) hands to task handlers.

One ``Services`` per process: the Redis client, the key builder, settings, the blob store, the
LLM provider (OpenRouter or offline) and the process pool for CPU-bound work. Built once at start
by :func:`build_services` and closed at stop.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from redis.asyncio import Redis

from taskflow_server.config import Settings
from taskflow_server.store.blobs import BlobStore
from taskflow_server.store.keys import Keys

if TYPE_CHECKING:
    from taskflow_server.llm.provider import LLMProvider
    from taskflow_server.worker.pool import CpuPool


@dataclass
class Services:
    """Everything a handler may need, created once per process."""

    settings: Settings
    redis: Redis
    keys: Keys
    blobs: BlobStore
    _llm: LLMProvider | None = None
    _cpu: CpuPool | None = None
    extras: dict[str, Any] = field(default_factory=dict)

    @property
    def llm(self) -> LLMProvider:
        """The LLM provider: OpenRouter when a key is set, else the offline one (lazy)."""
        if self._llm is None:
            from taskflow_server.llm.provider import make_provider

            self._llm = make_provider(self.settings, self.redis, self.keys)
        return self._llm

    @property
    def cpu(self) -> CpuPool:
        """The process pool for CPU-bound work (lazy)."""
        if self._cpu is None:
            from taskflow_server.worker.pool import CpuPool

            self._cpu = CpuPool(
                self.settings.pdf_pool_size, memory_limit_mb=self.settings.pdf_memory_limit_mb
            )
        return self._cpu

    def stop_cpu_pool(self) -> None:
        """Stop the process pool's readers, if it was ever started (idempotent)."""
        if self._cpu is not None:
            self._cpu.shutdown()

    async def aclose(self) -> None:
        """Release the provider's HTTP client and the process pool."""
        if self._llm is not None:
            await self._llm.aclose()
        self.stop_cpu_pool()


def build_services(settings: Settings, redis: Redis) -> Services:
    """Create the services for one process."""
    keys = Keys(settings.key_prefix)
    return Services(
        settings=settings,
        redis=redis,
        keys=keys,
        blobs=BlobStore(
            redis,
            keys,
            ttl_seconds=settings.blob_ttl_seconds,
            max_bytes=settings.max_blob_bytes,
        ),
    )
