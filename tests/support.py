"""Helpers shared by the test suites (importable as ``support``: tests/ is on pythonpath)."""

from __future__ import annotations

from taskflow_server.config import Settings


def make_settings(**overrides: object) -> Settings:
    """Settings for tests: short periods, no .env file; ``overrides`` win."""
    base: dict[str, object] = {
        "lease_seconds": 30.0,
        "scheduler_every": 0.05,
        "reaper_every": 0.1,
        "heartbeat_seconds": 0.5,
        "grace_seconds": 2.0,
        "retry_share": 0.2,
    }
    base.update(overrides)
    return Settings(_env_file=None, **base)  # type: ignore[call-arg]
