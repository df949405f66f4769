"""The fake OpenRouter's HTTP app, the ways to run it and its command line.

:func:`build_app` is the ASGI app (its routes read and change the
:class:`~taskflow_server.testing.openrouter.state.FakeState` in ``app.state.fake``);
:func:`run_fake_openrouter` serves it until interrupted, :class:`FakeOpenRouterThread` on a free
loopback port in a thread, and :func:`main` is ``taskflow fake-openrouter`` (and ``python -m
taskflow_server.testing.openrouter``).
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import uvicorn
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Route

from taskflow_server._net import free_port
from taskflow_server.config import Rate
from taskflow_server.testing.openrouter.answers import (
    chat_answer,
    error_response,
    file_page_count,
    text_of,
)
from taskflow_server.testing.openrouter.fixtures import (
    FIXTURES_ENV,
    fixture_path,
    fixture_response,
    fixtures_dir,
    load_fixture,
)
from taskflow_server.testing.openrouter.state import (
    MODE_PREFIX,
    MODES,
    FakeConfig,
    FakeState,
    apply_control,
    check_key_fixture,
    control_view,
    mode_fault,
    parse_mode_flag,
)

log = logging.getLogger(__name__)


def _authorised(request: Request, config: FakeConfig) -> str | None:
    header = request.headers.get("authorization", "")
    if not header.lower().startswith("bearer "):
        return None
    key = header[7:].strip()
    if not key or (config.keys and key not in config.keys | config.management_keys):
        return None
    return key


def _count(state: FakeState, response: Response) -> Response:
    state.stats["by_status"][str(response.status_code)] += 1
    if response.status_code == 429:
        state.stats["rate_limited"] += 1
    return response


def _unauthorised() -> JSONResponse:
    return error_response(401, "No auth credentials found")


async def _chat(request: Request) -> Response:
    state: FakeState = request.app.state.fake
    state.stats["requests"] += 1
    state.stats["chat_requests"] += 1
    mode = state.current_mode()
    if mode is not None:
        state.mode_stats(mode.name)["chat_requests"] += 1
    if _authorised(request, state.config) is None:
        return _count(state, _unauthorised())
    try:
        body = await request.json()
    except ValueError:
        return _count(state, error_response(400, "Invalid JSON", {"error_type": "invalid_request"}))
    if not isinstance(body, dict) or not isinstance(body.get("messages"), list):
        return _count(
            state, error_response(400, "messages is required", {"error_type": "invalid_request"})
        )
    state.in_flight += 1
    state.stats["max_in_flight"] = max(state.stats["max_in_flight"], state.in_flight)
    entry = _describe(state, body)
    try:
        response = _count(state, await chat_answer(state, body, entry))
        entry["status"] = response.status_code
        fault = entry["fault"]
        if fault is not None:
            state.stats["answers"][fault] += 1
            if fault.startswith(MODE_PREFIX):
                state.mode_stats(fault[len(MODE_PREFIX) :])["answers"] += 1
        return response
    finally:
        state.in_flight -= 1
        state.log.append(entry)


def _describe(state: FakeState, body: Mapping[str, Any]) -> dict[str, Any]:
    """The request-log entry of a chat request (no file or image data), counting its parts."""
    parts: list[str] = []
    file_pages: list[int] = []
    for message in body["messages"]:
        content = message.get("content") if isinstance(message, Mapping) else None
        for part in content if isinstance(content, list) else []:
            if not isinstance(part, Mapping):
                continue
            kind = str(part.get("type"))
            parts.append(kind)
            state.stats["content_parts"][kind] += 1
            if kind == "file" and isinstance(part.get("file"), Mapping):
                file_pages.append(file_page_count(part["file"]))
    text, _ = text_of(body["messages"])
    response_format = body.get("response_format")
    spec = response_format.get("json_schema") if isinstance(response_format, Mapping) else None
    return {
        "n": state.next_request_number(),
        "at": time.time(),
        "model": body.get("model"),
        "stream": bool(body.get("stream")),
        "text": text[:300],
        "parts": parts,
        "file_pages": file_pages,
        "plugins": body.get("plugins"),
        "response_format": (
            response_format.get("type") if isinstance(response_format, Mapping) else None
        ),
        "json_schema": dict(spec) if isinstance(spec, Mapping) else None,
        "fault": None,
        "status": None,
        "content": None,
    }


async def _key(request: Request) -> Response:
    state: FakeState = request.app.state.fake
    state.stats["requests"] += 1
    if _authorised(request, state.config) is None:
        return _count(state, _unauthorised())
    config = state.config
    if config.key_fixture:
        try:
            fixture = load_fixture(fixture_path(config.fixtures, config.key_fixture))
        except (OSError, ValueError) as exc:
            return _count(
                state, error_response(500, f"the fake OpenRouter cannot serve /key: {exc}")
            )
        return _count(state, fixture_response(fixture))
    data: dict[str, Any] = {
        "label": "fake-key",
        "limit": config.key_limit,
        "limit_reset": None,
        "limit_remaining": (
            round(config.key_limit - state.spend, 10) if config.key_limit is not None else None
        ),
        "include_byok_in_limit": False,
        "usage": state.spend,
        "usage_daily": state.spend,
        "usage_weekly": state.spend,
        "usage_monthly": state.spend,
        "byok_usage": 0,
        "is_free_tier": False,
        # Deprecated in OpenRouter's docs; the live API answers -1 whatever the key's limits.
        "rate_limit": {"requests": -1, "interval": "10s"},
    }
    if config.report_rate_limit and config.rate_limit is not None:
        rate = config.rate_limit
        data["rate_limit"] = {"requests": rate.requests, "interval": f"{rate.interval_s:g}s"}
    return _count(state, JSONResponse({"data": data}))


async def _credits(request: Request) -> Response:
    state: FakeState = request.app.state.fake
    state.stats["requests"] += 1
    key = _authorised(request, state.config)
    if key is None:
        return _count(state, _unauthorised())
    if key not in state.config.management_keys:
        meta = {"error_type": "permission_denied"}
        return _count(state, error_response(403, "Only management keys can read credits", meta))
    data = {"total_credits": state.config.total_credits, "total_usage": state.spend}
    return _count(state, JSONResponse({"data": data}))


async def _control(request: Request) -> Response:
    state: FakeState = request.app.state.fake
    if request.method == "POST":
        try:
            changes = await request.json()
            if not isinstance(changes, dict):
                raise ValueError("the body must be a JSON object")
            apply_control(state, changes)
        except (ValueError, TypeError) as exc:
            return JSONResponse({"detail": str(exc)}, status_code=400)
    return JSONResponse(control_view(state))


async def _stats(request: Request) -> Response:
    return JSONResponse(request.app.state.fake.snapshot())


async def _requests(request: Request) -> Response:
    return JSONResponse(list(request.app.state.fake.log))


async def _reset(request: Request) -> Response:
    state: FakeState = request.app.state.fake
    state.reset_stats()
    state.queue.clear()
    state.rules.clear()
    state.clear_modes()
    state.outage_until = 0.0
    state.set_rate(state.config.rate_limit)
    return JSONResponse(state.snapshot())


def build_app(config: FakeConfig | None = None) -> Starlette:
    """The fake OpenRouter as an ASGI app; ``app.state.fake`` is its :class:`FakeState`."""
    app = Starlette(
        routes=[
            Route("/api/v1/chat/completions", _chat, methods=["POST"]),
            Route("/api/v1/key", _key, methods=["GET"]),
            Route("/api/v1/auth/key", _key, methods=["GET"]),
            Route("/api/v1/credits", _credits, methods=["GET"]),
            Route("/_control", _control, methods=["GET", "POST"]),
            Route("/_stats", _stats, methods=["GET"]),
            Route("/_requests", _requests, methods=["GET"]),
            Route("/_reset", _reset, methods=["POST"]),
        ]
    )
    app.state.fake = FakeState(config or FakeConfig())
    return app


def run_fake_openrouter(
    config: FakeConfig | None = None, *, host: str = "127.0.0.1", port: int = 8765
) -> None:
    """Serve the fake until interrupted (blocking)."""
    log.info("fake OpenRouter on http://%s:%d/api/v1", host, port)
    uvicorn.run(build_app(config), host=host, port=port, log_level="warning", access_log=False)


class FakeOpenRouterThread:
    """Serve the fake in a background thread on a free loopback port (a context manager).

    Attributes:
        port: the port it listens on.
        base_url: ``http://127.0.0.1:<port>/api/v1`` (for ``OPENROUTER_BASE_URL``).
        state: the live :class:`FakeState` (change ``state.config`` or call
            :func:`apply_control` directly).
    """

    def __init__(self, config: FakeConfig | None = None, *, port: int | None = None) -> None:
        self.port = port or free_port()
        self.app = build_app(config)
        self.state: FakeState = self.app.state.fake
        self.base_url = f"http://127.0.0.1:{self.port}/api/v1"
        self.root_url = f"http://127.0.0.1:{self.port}"
        uv_config = uvicorn.Config(
            self.app, host="127.0.0.1", port=self.port, log_level="warning", access_log=False
        )
        self._server = uvicorn.Server(uv_config)
        self._thread = threading.Thread(
            target=self._server.run, name="fake-openrouter", daemon=True
        )

    def start(self, timeout: float = 10.0) -> FakeOpenRouterThread:
        """Start serving; returns once the server accepts connections."""
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if time.monotonic() > deadline or not self._thread.is_alive():
                raise RuntimeError(f"the fake OpenRouter did not start on port {self.port}")
            time.sleep(0.01)
        return self

    def reset(self, config: FakeConfig | None = None) -> FakeOpenRouterThread:
        """Start over with a fresh state (``config``, no requests seen, full budgets): one
        running server can serve many tests without one's faults leaking into the next."""
        self.state = FakeState(config or FakeConfig())
        self.app.state.fake = self.state
        return self

    def stop(self, timeout: float = 10.0) -> None:
        """Stop serving and join the thread."""
        self._server.should_exit = True
        self._thread.join(timeout)

    def __enter__(self) -> FakeOpenRouterThread:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    modes = "; ".join(f"{name}: {spec.description}" for name, spec in MODES.items())
    parser = argparse.ArgumentParser(
        prog="fake-openrouter", description="A local server that speaks OpenRouter's API."
    )
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8765)
    parser.add_argument("--rate-limit", default=None, help="server-side bucket, e.g. 100/10s")
    parser.add_argument("--latency", type=float, default=0.0, help="mean latency in seconds")
    parser.add_argument(
        "--latency-dist", default="fixed", choices=["fixed", "uniform", "exponential"]
    )
    parser.add_argument("--fail-rate", type=float, default=0.0, help="random failure share")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--key", action="append", default=[], help="accepted key (repeatable)")
    parser.add_argument("--management-key", action="append", default=[])
    parser.add_argument("--key-limit", type=float, default=None)
    parser.add_argument("--cost-per-1k", type=float, default=0.0)
    parser.add_argument("--retry-after", type=float, default=1.0)
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="NAME[:SECONDS]",
        help=f"a fault mode answering every chat request, for SECONDS or until cleared "
        f"(repeatable: they run one after the other). Modes: {modes}; or any fault, "
        "e.g. 502 or fixture:NAME",
    )
    parser.add_argument(
        "--outage",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="answer every chat request 503 (no provider available) for SECONDS from the start "
        "(the outage mode, before any --fault), e.g. to show the circuit breaker opening",
    )
    parser.add_argument(
        "--outage-after",
        type=_positive_seconds,
        default=None,
        metavar="SECONDS",
        help="start the --outage (and the --fault modes after it) SECONDS after the start "
        "instead of at once",
    )
    parser.add_argument(
        "--key-fixture", default=None, metavar="NAME", help="a /key fixture that answers /key"
    )
    parser.add_argument(
        "--fixtures",
        default=None,
        metavar="DIR",
        help=f"the fixtures directory (default ${FIXTURES_ENV}, else the checkout's "
        "tests/fixtures/openrouter)",
    )
    parser.add_argument(
        "--report-rate-limit",
        action="store_true",
        help="/key reports the --rate-limit bucket instead of the deprecated -1",
    )
    args = parser.parse_args(argv)
    try:
        args.modes = [parse_mode_flag(value) for value in args.fault]
    except ValueError as exc:
        parser.error(str(exc))
    if args.outage is not None:
        args.modes.insert(0, ("outage", args.outage))
    if args.outage_after is not None and not args.modes:
        parser.error("--outage-after needs --outage (or a --fault) to start")
    return args


def _positive_seconds(value: str) -> float:
    """A command-line number of seconds, > 0."""
    try:
        seconds = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not seconds > 0 or seconds == float("inf"):
        raise argparse.ArgumentTypeError(f"seconds must be a positive number, not {value!r}")
    return seconds


def config_from_args(args: argparse.Namespace) -> FakeConfig:
    """A :class:`FakeConfig` from parsed command-line flags (raises ``ValueError`` for a
    ``--fault`` or ``--key-fixture`` that cannot be served)."""
    fixtures = Path(args.fixtures) if args.fixtures else fixtures_dir()
    config = FakeConfig(
        keys=frozenset(args.key),
        management_keys=frozenset(args.management_key),
        rate_limit=Rate.parse(args.rate_limit) if args.rate_limit else None,
        latency=args.latency,
        latency_dist=args.latency_dist,
        fail_rate=args.fail_rate,
        seed=args.seed,
        key_limit=args.key_limit,
        cost_per_1k_tokens=args.cost_per_1k,
        retry_after=args.retry_after,
        fixtures=fixtures,
        report_rate_limit=args.report_rate_limit,
    )
    for name, _ in args.modes:
        mode_fault(config, name)  # raises ValueError for a mode that cannot be served
    config.modes = list(args.modes)
    config.modes_delay = getattr(args, "outage_after", None) or 0.0
    config.key_fixture = check_key_fixture(config, args.key_fixture)
    return config


def main(argv: list[str] | None = None) -> None:
    """Command-line entry point: ``taskflow fake-openrouter`` (or ``python -m
    taskflow_server.testing.openrouter``)."""
    args = _parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        config = config_from_args(args)
    except ValueError as exc:
        raise SystemExit(f"fake-openrouter: {exc}") from None
    with contextlib.suppress(KeyboardInterrupt):
        run_fake_openrouter(config, host=args.host, port=args.port)
