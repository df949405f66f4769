"""The cap on event-log replays: a resume over ``replay_max_concurrent`` waits up to
``replay_wait_seconds``, then gets 503 with ``Retry-After``; a live-only stream never waits."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

from api_helpers import LiveApi
from redis.asyncio import Redis

from taskflow_server.store.keys import Keys


async def test_replay_over_the_cap_gets_503_with_retry_after(
    live_api: Callable[..., LiveApi],
) -> None:
    api = live_api(replay_max_concurrent=1, replay_wait_seconds=0.5)
    assert api.settings.redis_url
    redis = Redis.from_url(api.settings.redis_url)
    try:
        key = Keys(api.settings.key_prefix).events
        async with redis.pipeline(transaction=False) as pipe:
            pad = "x" * 1000  # ~24 MB of frames: more than the socket buffers hold
            for i in range(20_000):
                fields = {
                    "type": "task_progress",
                    "task_id": f"t{i}",
                    "state": "ACTIVE",
                    "pad": pad,
                }
                pipe.xadd(key, fields)  # type: ignore[arg-type]
            await pipe.execute()
    finally:
        await redis.aclose()
    async with api.client(timeout=30.0) as client:
        # A replay whose client does not read: the server's writes back up and it keeps its turn.
        async with client.stream("GET", "/api/v1/events", params={"last_event_id": "0"}) as first:
            assert first.status_code == 200
            await asyncio.sleep(0.3)
            async with client.stream(
                "GET", "/api/v1/events", params={"last_event_id": "0"}
            ) as second:
                assert second.status_code == 503, "a replay over the cap was not refused"
                await second.aread()
            assert int(second.headers["retry-after"]) >= 1
            assert "TASKFLOW_REPLAY_MAX_CONCURRENT" in second.json()["detail"]
            # A stream that starts live needs no turn.
            async with client.stream("GET", "/api/v1/events") as live:
                assert live.status_code == 200
        # The turn comes back when the first stream goes away.
        async with client.stream("GET", "/api/v1/events", params={"last_event_id": "0"}) as again:
            assert again.status_code == 200
