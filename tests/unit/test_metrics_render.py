"""The pure side of ``/metrics``: field layout -> exposition, bucket bounds shared with Lua, the
upstream recorder's fields (on fakeredis), and the Grafana dashboard's expressions."""

from __future__ import annotations

import json
import re
from pathlib import Path

import fakeredis
import pytest
from prometheus_client.parser import text_string_to_metric_families

from taskflow_server.observability.metrics import (
    GAUGES,
    TASK_BUCKETS,
    TOTALS,
    UPSTREAM_BUCKETS,
    Snapshot,
    bucket_index,
    exported_names,
    render,
    upstream_totals,
)
from taskflow_server.store.queue import SCRIPTS_DIR

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "deploy" / "grafana" / "asynctaskflow.json"


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    out = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            out[(s.name, frozenset(s.labels.items()))] = s.value
    return out


def test_lua_buckets_are_the_python_bounds() -> None:
    lib = (SCRIPTS_DIR / "_lib.lua").read_text()
    found = re.search(r"local BUCKETS = \{([^}]*)\}", lib)
    assert found is not None
    assert tuple(float(x) for x in found.group(1).split(",")) == TASK_BUCKETS
    assert list(TASK_BUCKETS) == sorted(TASK_BUCKETS)
    assert list(UPSTREAM_BUCKETS) == sorted(UPSTREAM_BUCKETS)


def test_bucket_index_is_le_inclusive() -> None:
    assert bucket_index(TASK_BUCKETS, 0.0) == 0
    assert bucket_index(TASK_BUCKETS, 0.005) == 0  # le="0.005" holds 0.005 itself
    assert bucket_index(TASK_BUCKETS, 0.0051) == 1
    assert bucket_index(TASK_BUCKETS, 1e9) == len(TASK_BUCKETS)  # +Inf


def test_histogram_fields_render_cumulative_buckets_ending_in_inf() -> None:
    totals = {
        "duration|0|completed|demo.noop": 3.0,
        "duration|7|completed|demo.noop": 2.0,  # le=1.0
        f"duration|{len(TASK_BUCKETS)}|completed|demo.noop": 1.0,  # +Inf
        "duration|s|completed|demo.noop": 7000.5,
        "duration|2|failed|odd|type": 4.0,  # a task type containing the separator
        "finished|completed|demo.noop": 6.0,
        "finished|failed|odd|type": 4.0,
        "retries|timeout": 2.0,
        "cost": 0.25,
        "latency|1|": 5.0,
        "latency|s|": 0.4,
        "nonsense": 9.0,  # unknown fields are ignored
        "duration|x|completed|demo.noop": 9.0,
    }
    got = samples(render(Snapshot(totals=totals)).decode())
    noop = {("outcome", "completed"), ("task_type", "demo.noop")}

    def bucket(le: str, labels: set[tuple[str, str]]) -> float:
        return got[("taskflow_task_duration_seconds_bucket", frozenset({*labels, ("le", le)}))]

    assert bucket("0.005", noop) == 3
    assert bucket("0.5", noop) == 3
    assert bucket("1.0", noop) == 5
    assert bucket("3600.0", noop) == 5
    assert bucket("+Inf", noop) == 6
    assert got[("taskflow_task_duration_seconds_count", frozenset(noop))] == 6
    assert got[("taskflow_task_duration_seconds_sum", frozenset(noop))] == 7000.5
    odd = {("outcome", "failed"), ("task_type", "odd|type")}
    assert bucket("0.01", odd) == 0 and bucket("0.025", odd) == 4 and bucket("+Inf", odd) == 4
    assert got[("taskflow_task_duration_seconds_sum", frozenset(odd))] == 0
    assert got[("taskflow_tasks_finished_total", frozenset(odd))] == 4
    assert got[("taskflow_task_retries_total", frozenset({("error_class", "timeout")}))] == 2
    assert got[("taskflow_upstream_cost_usd_total", frozenset())] == 0.25
    assert got[("taskflow_upstream_latency_seconds_count", frozenset())] == 5
    assert got[("taskflow_upstream_latency_seconds_bucket", frozenset({("le", "0.05")}))] == 0
    assert got[("taskflow_upstream_latency_seconds_bucket", frozenset({("le", "0.1")}))] == 5
    assert {name for name, _ in got} <= exported_names()


def test_gauges_of_a_snapshot() -> None:
    snap = Snapshot(
        states={"PENDING": 4, "ACTIVE": 1},
        depths={("llm", "high"): 3, ("local", "retry"): 1},
        sets={"scheduled": 2, "dlq": 1, "active": 1},
        breakers={"openrouter": {"state": "half-open", "hold": None}},
        limiter={
            "name": "openrouter",
            "tokens": None,
            "capacity": None,
            "in_flight": 2,
            "max_in_flight": 8,
            "cooldown_remaining": 1.5,
        },
        workers=[(100, 3), (20, 0)],
        events=17,
        blobs=2,
        blob_bytes=1234,
        redis_memory=None,
    )
    got = samples(render(snap).decode())
    assert got[("taskflow_tasks", frozenset({("state", "PENDING")}))] == 4
    assert got[("taskflow_queue_depth", frozenset({("lane", "llm"), ("priority", "high")}))] == 3
    assert got[("taskflow_queue_length", frozenset({("queue", "scheduled")}))] == 2
    half = frozenset({("breaker", "openrouter"), ("state", "half-open")})
    closed = frozenset({("breaker", "openrouter"), ("state", "closed")})
    assert (
        got[("taskflow_breaker_state", half)] == 1 and got[("taskflow_breaker_state", closed)] == 0
    )
    limiter = frozenset({("limiter", "openrouter")})
    assert ("taskflow_limiter_tokens", limiter) not in got  # no rate: no bucket
    assert got[("taskflow_limiter_cooldown_seconds", limiter)] == 1.5
    assert got[("taskflow_workers_online", frozenset())] == 2
    assert got[("taskflow_worker_slots", frozenset())] == 120
    assert got[("taskflow_worker_slots_in_use", frozenset())] == 3
    assert got[("taskflow_blob_bytes", frozenset())] == 1234
    assert ("taskflow_redis_memory_bytes", frozenset()) not in got
    assert {name for name, _ in got} <= exported_names()


async def test_upstream_totals_write_the_fields_the_renderer_reads() -> None:
    redis = fakeredis.FakeAsyncRedis()
    key = "{t}:metrics"
    calls = [
        (200, "ok", 0.3, {"prompt_tokens": 10, "completion_tokens": 5, "cost": 0.01}),
        (200, "ok", 0.7, {"prompt_tokens": 12, "completion_tokens": 3, "cost": 0.02}),
        (429, "rate_limited", 0.04, {}),
        (None, "timeout", None, {"prompt_tokens": True}),  # no answer, nothing sent; a flag
    ]
    for status, outcome, seconds, usage in calls:
        async with redis.pipeline(transaction=True) as pipe:
            upstream_totals(pipe, key, status=status, outcome=outcome, seconds=seconds, usage=usage)
            await pipe.execute()
    totals = {k.decode(): float(v) for k, v in (await redis.hgetall(key)).items()}
    got = samples(render(Snapshot(totals=totals)).decode())

    def requests(status: str, outcome: str) -> float:
        labels = frozenset({("status", status), ("outcome", outcome)})
        return got[("taskflow_upstream_requests_total", labels)]

    assert requests("200", "ok") == 2
    assert requests("429", "rate_limited") == 1
    assert requests("none", "timeout") == 1
    assert got[("taskflow_upstream_latency_seconds_count", frozenset())] == 3
    assert got[("taskflow_upstream_latency_seconds_sum", frozenset())] == pytest.approx(1.04)
    prompt = frozenset({("kind", "prompt")})
    assert got[("taskflow_upstream_tokens_total", prompt)] == 22
    assert got[("taskflow_upstream_cost_usd_total", frozenset())] == pytest.approx(0.03)
    await redis.aclose()


def test_every_metric_has_a_prefix_unit_and_help() -> None:
    for total in TOTALS.values():
        assert total.name.startswith("taskflow_") and total.help
        assert not total.name.endswith("_total")
        if total.buckets is not None:
            assert total.name.endswith("_seconds")
    for name, (help_text, _) in GAUGES.items():
        assert name.startswith("taskflow_") and help_text and not name.endswith("_total")


def test_the_grafana_dashboard_only_queries_exported_metrics() -> None:
    board = json.loads(DASHBOARD.read_text())
    assert [i["name"] for i in board["__inputs"]] == ["DS_PROMETHEUS"]
    exported = exported_names()
    exprs = []
    for panel in board["panels"]:
        if panel["type"] == "row":
            continue
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}", panel["title"]
        assert panel["targets"], panel["title"]
        for target in panel["targets"]:
            expr = target["expr"]
            names = set(re.findall(r"\btaskflow_[a-z0-9_]+", expr))
            assert names, (panel["title"], expr)
            assert names <= exported, (panel["title"], names - exported)
            exprs.append(expr)
    # The questions docs/observability.md promises an answer to are on the board.
    joined = "\n".join(exprs)
    for needle in (
        "taskflow_queue_depth",
        "taskflow_task_retries_total",
        'status="429"',
        "histogram_quantile(0.95",
        "taskflow_upstream_cost_usd_total",
    ):
        assert needle in joined, needle


def test_the_docs_table_lists_every_exported_family() -> None:
    doc = (REPO / "docs" / "observability.md").read_text()
    families = {t.name + ("_total" if t.buckets is None else "") for t in TOTALS.values()}
    families |= set(GAUGES)
    missing = {name for name in families if f"`{name}`" not in doc}
    assert not missing, missing
