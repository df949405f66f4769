"""Redis going away: killed and restarted mid-run (AOF on), and not there at all at start.

* Redis is SIGKILLed and restarted on the same port twice during a run: the server (API + one
  in-process worker) and two ``taskflow-worker`` processes reconnect by themselves, ``/ready``
  answers 503 while Redis is away and 200 again after, and every task submitted (before and,
  through the API, during the run) ends COMPLETED exactly once.
* Redis is not there when the server and a worker start: both stay up, log a clear line per
  try, ``/live`` answers and ``/ready`` is 503; once Redis starts they carry on alone.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any

import httpx
import pytest
from e2e_support import (
    POLL,
    RedisServer,
    Spawner,
    StartServer,
    assert_all_completed_once,
    counts_or_none,
    log_text,
    new_task,
    open_queue,
    submit_chunked,
    worker_env,
)

from support import eventually, free_port

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

UPFRONT = 400
THROUGH_API = 10 * 20
OUTAGE_SECONDS = 3.0


async def _ready_status(client: httpx.AsyncClient) -> int:
    try:
        return (await client.get("/ready", timeout=3)).status_code
    except httpx.HTTPError:
        return 0


async def _submit_via_api(
    client: httpx.AsyncClient, accepted: dict[str, str], refused: list[int]
) -> None:
    """Submit batches of 20 through the API, each retried (same idempotency keys) until 201."""
    for batch in range(THROUGH_API // 20):
        items = [
            {
                "task_type": "demo.sleep",
                "payload": {"seconds": 0.5},
                "idempotency_key": f"api-{batch}-{i}",
            }
            for i in range(20)
        ]

        async def submitted(batch: int = batch, items: list[dict[str, Any]] = items) -> bool:
            try:
                resp = await client.post("/api/v1/tasks/batch", json={"tasks": items})
            except httpx.TransportError:
                refused.append(0)
                return False
            if resp.status_code in (200, 201):
                for item in resp.json()["items"]:
                    accepted[f"{batch}-{item['index']}"] = item["task_id"]
                return True
            assert resp.status_code == 503, resp.text  # Redis away: try again
            refused.append(503)
            return False

        await eventually(submitted, f"the API to accept batch {batch}", 60, every=0.3)
        await asyncio.sleep(0.7)  # spread the batches over the outages


async def test_redis_killed_and_restarted_twice(
    redis_server: RedisServer, spawn: Spawner, start_server: StartServer, figures: dict[str, Any]
) -> None:
    prefix = "rrestart"
    env = worker_env(
        redis_server.url, prefix, TASKFLOW_CONCURRENCY="10", TASKFLOW_LEASE_SECONDS="10"
    )
    server = start_server({**env, "TASKFLOW_WORKERS": "1"})
    workers = [spawn("taskflow-worker", env=env) for _ in range(2)]
    async with open_queue(redis_server.url, prefix) as queue, server.client() as api:
        ids = await submit_chunked(
            queue, [new_task("demo.sleep", {"seconds": 1.0}) for _ in range(UPFRONT)]
        )
        accepted: dict[str, str] = {}
        refused: list[int] = []
        submitter = asyncio.create_task(_submit_via_api(api, accepted, refused))
        outages: list[dict[str, float]] = []
        for threshold in (80, 250):

            async def reached(n: int = threshold) -> bool:
                counts = await counts_or_none(queue)
                return counts is not None and counts["COMPLETED"] >= n

            await eventually(reached, f"{threshold} completions", 90, every=POLL)
            before = (await queue.counts())["COMPLETED"]
            redis_server.kill()
            down_at = time.monotonic()

            async def not_ready() -> bool:
                return await _ready_status(api) == 503

            await eventually(not_ready, "/ready to answer 503 while Redis is away", 10, every=POLL)
            assert (await api.get("/live")).status_code == 200
            while time.monotonic() - down_at < OUTAGE_SECONDS:
                assert await _ready_status(api) == 503
                await asyncio.sleep(0.2)
            redis_server.restart()
            up_at = time.monotonic()

            async def ready() -> bool:
                return await _ready_status(api) == 200

            waited_from = time.monotonic()
            await eventually(ready, "/ready to answer 200 again", 30, every=POLL)
            ready_after = time.monotonic() - waited_from

            async def progressing(n: int = before) -> bool:
                counts = await counts_or_none(queue)
                return counts is not None and counts["COMPLETED"] > n

            waited_from = time.monotonic()
            await eventually(progressing, "work to resume after the restart", 30, every=POLL)
            resumed_after = time.monotonic() - waited_from
            outages.append(
                {
                    "down_s": round(up_at - down_at, 1),
                    "ready_after_s": round(ready_after, 2),
                    "completions_resume_after_s": round(time.monotonic() - up_at, 2),
                }
            )
            assert resumed_after < 30
        await asyncio.wait_for(submitter, 90)
        assert len(accepted) == THROUGH_API
        all_ids = ids + sorted(set(accepted.values()))
        assert len(all_ids) == UPFRONT + THROUGH_API  # idempotent retries made no duplicates

        async def all_done() -> bool:
            counts = await counts_or_none(queue)
            return counts is not None and counts["COMPLETED"] == len(all_ids)

        await eventually(all_done, "every task to complete", 120, every=0.25)
        await assert_all_completed_once(queue, all_ids)
    for proc in [server.proc, *workers]:
        assert proc.poll() is None, f"a process exited:\n{log_text(proc)[-2000:]}"
    for proc in workers:
        text = log_text(proc)
        assert "cannot reach redis" in text or "not reachable" in text, text[-2000:]
        assert "reconnected to redis" in text, text[-2000:]
    assert redis_server.restarts == 2
    figures.update(
        tasks=len(all_ids),
        submitted_via_api_during_run=THROUGH_API,
        api_submits_refused_503_while_redis_away=refused.count(503),
        redis_restarts=redis_server.restarts,
        outages=outages,
    )


async def test_redis_unreachable_at_start(
    spawn: Spawner, start_server: StartServer, figures: dict[str, Any]
) -> None:
    port = free_port()
    url = f"redis://127.0.0.1:{port}/0"
    prefix = "rlate"
    env = worker_env(url, prefix)
    server = start_server({**env, "TASKFLOW_WORKERS": "1"}, wait="live")
    worker = spawn("taskflow-worker", env=env)
    async with httpx.AsyncClient(base_url=server.url, timeout=5) as api:
        assert (await api.get("/ready")).status_code == 503
        health = (await api.get("/health")).json()
        assert health["status"] == "unhealthy"

        async def retried_twice() -> bool:
            return all(log_text(p).count("is not reachable") >= 2 for p in (server.proc, worker))

        await eventually(retried_twice, "both processes to log their retries", 30, every=POLL)
        for proc in (server.proc, worker):
            assert proc.poll() is None, log_text(proc)[-2000:]
            assert f"redis at redis://127.0.0.1:{port}/0 is not reachable" in log_text(proc)
        redis = RedisServer(port).start()
        try:
            started = time.monotonic()

            async def ready() -> bool:
                return await _ready_status(api) == 200

            waited_from = time.monotonic()
            await eventually(ready, "/ready once Redis is there", 30, every=POLL)
            ready_after = time.monotonic() - waited_from
            async with open_queue(url, prefix) as queue:
                ids = await submit_chunked(
                    queue, [new_task("demo.sleep", {"seconds": 0.1}) for _ in range(40)]
                )

                async def done() -> bool:
                    return (await queue.counts())["COMPLETED"] == len(ids)

                await eventually(done, "the tasks to complete", 30, every=POLL)
                await assert_all_completed_once(queue, ids)

                async def both_workers() -> bool:  # the in-process one and the process
                    return len(await queue.workers()) == 2

                await eventually(both_workers, "both workers to join", 20, every=POLL)
            for proc in (server.proc, worker):
                assert "redis is reachable again" in log_text(proc)
            figures.update(
                ready_after_redis_started_s=round(ready_after, 2),
                work_done_after_s=round(time.monotonic() - started, 2),
            )
        finally:
            redis.stop()
