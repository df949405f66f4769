"""Shared services a worker (and the API) hands to task handlers.

One ``Services`` per process: the Redis client, the key builder, settings, the blob store, the
LLM provider (OpenRouter or offline) and the process pool for CPU-bound work
(:class:`~taskflow_server.cpu.CpuPool`). Built once at start by :func:`build_services` and closed
at stop.

Code that needs the OpenRouter machinery itself (the worker follows the circuit breaker and the
shared cool-down, the PDF task sends vision requests through the client) asks
:attr:`Services.openrouter`, which is the typed OpenRouter provider or ``None`` offline: nobody
reaches into the :class:`~taskflow_server.llm.provider.LLMProvider` protocol for attributes it
does not promise.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from redis.asyncio import Redis

from taskflow_server.config import Settings
from taskflow_server.store.blobs import BlobStore
from taskflow_server.store.keys import Keys

if TYPE_CHECKING:
    from taskflow_server.cpu import CpuPool
    from taskflow_server.llm.monitor import OpenRouterMonitor
    from taskflow_server.llm.provider import LLMProvider, OpenRouterProvider

CPU_PRELOAD: tuple[str, ...] = ("taskflow_server.pdf.extract",)
"""Modules the CPU pool's fork server imports once, so no PDF reader process pays for them."""


@dataclass
class Services:
    """Everything a handler may need, created once per process."""

    settings: Settings
    redis: Redis
    keys: Keys
    blobs: BlobStore
    _llm: LLMProvider | None = None
    _cpu: CpuPool | None = None

    @property
    def llm(self) -> LLMProvider:
        """The LLM provider: OpenRouter when a key is set, else the offline one (lazy)."""
        if self._llm is None:
            from taskflow_server.llm.provider import make_provider

            self._llm = make_provider(self.settings, self.redis, self.keys)
        return self._llm

    @property
    def openrouter(self) -> OpenRouterProvider | None:
        """The OpenRouter provider when this process uses it, else ``None`` (offline).

        It carries the pieces every worker of the store shares: ``client`` (chat completions
        under the limiter and breaker), ``breaker``, ``limiter`` and ``monitor``.
        """
        from taskflow_server.llm.provider import OpenRouterProvider

        llm = self.llm
        return llm if isinstance(llm, OpenRouterProvider) else None

    @property
    def monitor(self) -> OpenRouterMonitor | None:
        """The OpenRouter monitor the provider reports to (offline too, where it says that no
        key is set), or ``None`` for a provider without one."""
        from taskflow_server.llm.provider import OfflineProvider, OpenRouterProvider

        llm = self.llm
        return llm.monitor if isinstance(llm, OpenRouterProvider | OfflineProvider) else None

    @property
    def cpu(self) -> CpuPool:
        """The process pool for CPU-bound work (lazy); it preloads :data:`CPU_PRELOAD`."""
        if self._cpu is None:
            from taskflow_server.cpu import CpuPool

            self._cpu = CpuPool(
                self.settings.pdf_pool_size,
                memory_limit_mb=self.settings.pdf_memory_limit_mb,
                preload=CPU_PRELOAD,
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
