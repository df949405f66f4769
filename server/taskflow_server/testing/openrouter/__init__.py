"""A fake OpenRouter: a real HTTP server that speaks the API's contract, for tests and demos.

Run it::

    taskflow fake-openrouter --port 8765 --rate-limit 100/10s --latency 0.3 --fail-rate 0.1 \\
        --seed 1 --key sk-test --fault outage:30 --fault key-limit

(or ``python -m taskflow_server.testing.openrouter`` with the same flags) and point
``OPENROUTER_BASE_URL`` at ``http://127.0.0.1:8765/api/v1``. In Python use :func:`build_app` (an
ASGI app), :func:`run_fake_openrouter` (blocking) or :class:`FakeOpenRouterThread` (a context
manager serving on a free port in a thread).

Modules: :mod:`.state` (the config, fault modes and rules, counters, the request log and
``/_control``), :mod:`.fixtures` (OpenRouter's documented answers as files), :mod:`.answers`
(what a chat request gets), :mod:`.news` (the articles made up for a pdfxtract page) and
:mod:`.app` (the routes, the server thread and the command line). This package re-exports their
public names.

Endpoints (under ``/api/v1``): ``POST /chat/completions`` (plain and ``json_schema`` answers,
``file`` parts whose page count is echoed, ``stream: true``), ``GET /key`` and ``/auth/key``
(``rate_limit`` is ``{"requests": -1, "interval": "10s"}`` as OpenRouter answers now that the
field is deprecated, unless ``report_rate_limit``), ``GET /credits`` (403 unless a management
key). Unknown or missing bearer keys get 401.

A ``json_schema`` answer fills the schema from the prompt's words, except for a newspaper page
schema (``articles[]`` with ``title`` and ``body``, as pdfxtract asks): that gets one to three
articles that read like news, taken from the request's text layer ("Text layer of this page":
headline-like lines start articles, ``By ...`` lines are bylines, ``Continued on/from page N``
notes fill the page links) or, for a scanned page, made up from small word lists, seeded by the
page so the same page always gets the same stories.

**Fixtures.** ``tests/fixtures/openrouter/*.json`` (see its README) hold OpenRouter's documented
answers; :func:`fixtures_dir` finds them (``$TASKFLOW_FAKE_FIXTURES``, else the checkout this
module runs from) and :func:`load_fixture` reads one, filling its ``{now_ms+N}`` / ``{now_s+N}``
time templates. A fault named ``fixture:<stem>`` serves that file as written: status, headers and
``body`` (JSON), ``text`` (raw) or ``stream`` (SSE lines, status 200), after its ``prefix``. A
fixture with ``"endpoint": "/key"`` answers ``/key`` instead (``key_fixture``).

**Modes** (:data:`MODES`, ``--fault NAME[:SECONDS]`` or the control field ``mode``) answer every
chat request the same way while on, and end by themselves after their seconds: ``key-limit``
(403), ``credits`` (402), ``daily-cap`` (429 free-models-per-day), ``provider-429`` (a 200 whose
body is a provider's 429), ``length`` (``finish_reason: length``) and ``outage`` (503), each
served from its fixture; any fault name (``502``, ``fixture:<stem>``) can run as a mode too.
Several run one after the other.

Faults, in the order they are checked for a chat request:

1. **scripted**: a request whose last user message contains a rule's ``match`` text takes the
   rule's fault (``fault_rules``, each for ``times`` requests or for good); otherwise the next
   requests take faults from a queue (``enqueue``): a name in :data:`FAULTS` or
   ``fixture:<stem>``;
2. **mode**: the current mode's answer;
3. **outage**: 503 ``provider_overloaded`` with ``Retry-After`` until the outage ends;
4. **server-side token bucket** (``rate_limit``): a real 429 with ``Retry-After`` and
   ``X-RateLimit-Limit/Remaining/Reset`` (reset in epoch ms) when the bucket is empty;
5. **key limit**: once the key's spend reaches ``key_limit``, the 403 key-limit fixture (fault
   ``key_limit``; the built-in 402 ``402_key_limit`` without a fixtures directory);
6. **random failures** (``fail_rate``, spread over ``fail_statuses`` by weight; fixture faults
   allowed).

Latency follows ``latency`` seconds with a ``fixed``, ``uniform`` (0.5x-1.5x) or ``exponential``
distribution (after a keep-alive prefix, when there is one). Everything random comes from one
``random.Random(seed)``.

Control at run time: ``POST /_control`` with any of ``latency``, ``latency_dist``, ``fail_rate``,
``fail_statuses``, ``outage_seconds``, ``rate_limit`` (``"N/Ts"`` or null), ``key_limit``,
``cost_per_1k_tokens``, ``seed``, ``enqueue`` (a list of faults), ``clear_queue``,
``fault_rules`` (a list of ``{"match": text, "fault": name, "times": n | null}``, added to the
rules), ``clear_rules``, ``mode`` (``{"name": NAME, "seconds": S | null}``, a name, or a list of
them run in turn; replaces the schedule), ``clear_mode``, ``key_fixture`` (a ``/key`` fixture
or null), ``report_rate_limit``, ``fixtures`` (a directory), ``reset_stats``; a fault, mode or
fixture it cannot serve is a 400 that says why. ``GET /_control`` shows the config, the mode and
what each mode serves; ``GET /_stats`` counts requests, answers per status, 429s, tokens,
content parts by type, the most requests ever in flight at once, the answers per fault
(``answers``: ``fixture:<stem>``, ``mode:<name>``, ``key_limit``, ...) and per mode the answers
it sent and the chat requests that came while it was on (``modes``, with ``mode`` the current
one); ``GET /_requests`` lists the last :data:`REQUEST_LOG_SIZE` chat requests (content part
types, plugins, schema, fault, status, answer; never the file or image data); ``POST /_reset``
clears stats, the log, the queue, the rules and the modes.
"""

from __future__ import annotations

from taskflow_server.testing.openrouter.app import (
    FakeOpenRouterThread,
    build_app,
    config_from_args,
    main,
    run_fake_openrouter,
)
from taskflow_server.testing.openrouter.fixtures import (
    FIXTURE_PREFIX,
    FIXTURES_ENV,
    fixture_names,
    fixture_path,
    fixture_response,
    fixtures_dir,
    load_fixture,
)
from taskflow_server.testing.openrouter.news import (
    page_articles,
)
from taskflow_server.testing.openrouter.state import (
    FAULTS,
    MODES,
    REQUEST_LOG_SIZE,
    ActiveMode,
    FakeConfig,
    FakeState,
    FaultRule,
    ModeSpec,
    apply_control,
    check_fault,
    mode_fault,
    parse_mode_flag,
)

__all__ = [
    "FAULTS",
    "FIXTURES_ENV",
    "FIXTURE_PREFIX",
    "MODES",
    "REQUEST_LOG_SIZE",
    "ActiveMode",
    "FakeConfig",
    "FakeOpenRouterThread",
    "FakeState",
    "FaultRule",
    "ModeSpec",
    "apply_control",
    "build_app",
    "check_fault",
    "config_from_args",
    "fixture_names",
    "fixture_path",
    "fixture_response",
    "fixtures_dir",
    "load_fixture",
    "main",
    "mode_fault",
    "page_articles",
    "parse_mode_flag",
    "run_fake_openrouter",
]
