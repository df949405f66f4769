"""JSON request bodies checked at the door, before pydantic sees them, and stored JSON checked
before it is shown.

Python's ``json`` accepts things the API cannot store or show: a lone UTF-16 surrogate written as
the escape ``"\\udfff"``, ``NaN``/``Infinity`` (and ``1e309``, which overflows to infinity), and
nesting deep enough to break the response serializer. A body with thousands of unknown fields
makes pydantic build one error per field. :class:`CheckedJsonRoute` (the ``route_class`` of every
router with JSON bodies) parses each JSON body once with :func:`parse_json_body` and refuses, with
a 422 whose ``detail`` names the field and says what to fix:

* bytes that are not UTF-8, and lone surrogates anywhere (values and keys);
* non-finite numbers;
* nesting deeper than ``max_json_depth`` (``TASKFLOW_MAX_JSON_DEPTH``), found by a scan of the
  text that does not recurse;
* top-level fields the body model does not have (:func:`unknown_fields`), before pydantic runs.

:func:`json_problem` is the read-side twin: it says why a stored value could not be rendered, so a
read route can show a placeholder for that value instead of failing the whole response.
"""

from __future__ import annotations

import json
import math
import re
import types
from collections.abc import Callable, Coroutine, Iterable, Iterator
from typing import Any, Union, get_args, get_origin

from fastapi import HTTPException, Request, Response
from fastapi.routing import APIRoute
from pydantic import BaseModel

from taskflow_server.api.deps import get_context

MAX_LISTED = 20
"""The most problems (unknown fields, validation errors) any 422 lists; the rest are counted."""

RENDER_MAX_DEPTH = 200
"""The deepest stored JSON a read route renders (the serializer gives up a little past 250)."""

SEGMENT_CHARS = 40
"""The most characters of one key shown in a field path."""

_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")
_PAIR = re.compile(r"\[\]|\{\}")
_SURROGATE_ESCAPE = re.compile(r"\\u[dD][89a-fA-F][0-9a-fA-F]{2}")
_IDENTIFIER = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class BodyRejected(HTTPException):
    """A body refused at the door (422); ``detail`` names the field and what to fix."""

    def __init__(self, detail: str) -> None:
        super().__init__(422, detail)


class _NonFinite:
    """Stands in for ``NaN``, ``Infinity`` or an overflowing number while the body is parsed."""

    __slots__ = ("token",)

    def __init__(self, token: str) -> None:
        self.token = token


# --------------------------------------------------------------------------- paths


def _segment(key: object) -> str:
    if isinstance(key, int):
        return f"[{key}]"
    text = str(key)
    if _IDENTIFIER.match(text) and len(text) <= SEGMENT_CHARS:
        return f".{text}"
    shown = json.dumps(text[:SEGMENT_CHARS])  # ASCII: surrogates and controls come out escaped
    return f'[{shown[:-1]}…"]' if len(text) > SEGMENT_CHARS else f"[{shown}]"


def field_path(loc: Iterable[object], root: str = "body") -> str:
    """``("payload", "a", 3)`` as ``body.payload.a[3]`` (long or odd keys quoted and cut)."""
    return root + "".join(_segment(part) for part in loc)


def _walk(value: Any, max_depth: int) -> Iterator[tuple[tuple[object, ...], Any, bool]]:
    """Depth-first ``(loc, item, is_key)`` over a JSON value, never deeper than ``max_depth``.

    Keys come out as items of their own (``is_key`` True) at the loc of their value.
    """
    stack: list[tuple[tuple[object, ...], Any]] = [((), value)]
    while stack:
        loc, item = stack.pop()
        yield loc, item, False
        if len(loc) >= max_depth:
            continue
        if isinstance(item, dict):
            children = list(item.items())
            for key, child in reversed(children):
                yield (*loc, key), key, True
                stack.append(((*loc, key), child))
        elif isinstance(item, list):
            for index in range(len(item) - 1, -1, -1):
                stack.append(((*loc, index), item[index]))


def _first(
    value: Any, test: Callable[[Any], bool], *, max_depth: int, keys: bool = True
) -> tuple[tuple[object, ...], bool] | None:
    for loc, item, is_key in _walk(value, max_depth):
        if (keys or not is_key) and test(item):
            return loc, is_key
    return None


def _has_surrogate(item: Any) -> bool:
    if not isinstance(item, str):
        return False
    try:
        item.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


# --------------------------------------------------------------------------- depth


def too_deep(text: str, max_depth: int) -> bool:
    """Whether valid JSON ``text`` nests arrays/objects deeper than ``max_depth``.

    No recursion and no per-character Python loop: strings are cut out, only brackets are kept,
    and each pass removes every innermost ``[]``/``{}`` pair, i.e. one level.
    """
    if text.count("[") + text.count("{") <= max_depth:
        return False
    brackets = _NOT_BRACKET.sub("", _STRING.sub("", text))
    for _ in range(max_depth):
        if not brackets:
            return False
        brackets, removed = _PAIR.subn("", brackets)
        if not removed:
            return False  # unbalanced: not valid JSON, so not ours to judge
    return bool(brackets)


def _depth_message(value: Any, max_depth: int) -> str:
    # The walk stops at max_depth; a container found there is one level too many.
    where = "body"
    for loc, item, is_key in _walk(value, max_depth):
        if not is_key and len(loc) == max_depth and isinstance(item, dict | list):
            where = field_path(loc[:8]) + ("…" if len(loc) > 8 else "")
            break
    return (
        f"{where}: the JSON is nested more than {max_depth} levels deep (arrays and objects; "
        "the limit is TASKFLOW_MAX_JSON_DEPTH): flatten it"
    )


# --------------------------------------------------------------------------- the door


def parse_json_body(raw: bytes, *, max_depth: int) -> Any:
    """Parse a JSON body strictly; raises :class:`BodyRejected` naming the field at fault.

    ``json.JSONDecodeError`` (malformed JSON) is left to FastAPI, which answers its usual 422.
    """
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BodyRejected(
            f"body: the bytes at offset {exc.start} are not UTF-8 ({exc.reason}); "
            "send the JSON as UTF-8 text"
        ) from None
    non_finite: list[str] = []

    def constant(token: str) -> _NonFinite:
        non_finite.append(token)
        return _NonFinite(token)

    def number(token: str) -> float | _NonFinite:
        value = float(token)
        return value if math.isfinite(value) else constant(token)

    try:
        value = json.loads(text, parse_constant=constant, parse_float=number)
    except json.JSONDecodeError:
        raise
    except RecursionError:
        raise BodyRejected(
            f"body: the JSON is nested more than {max_depth} levels deep (arrays and objects; "
            "the limit is TASKFLOW_MAX_JSON_DEPTH): flatten it"
        ) from None
    except ValueError as exc:  # e.g. an integer over Python's digit limit
        raise BodyRejected(
            f"body: a number cannot be read ({exc}); send a shorter number"
        ) from None
    if too_deep(text, max_depth):
        raise BodyRejected(_depth_message(value, max_depth))
    if non_finite:
        hit = _first(value, lambda item: isinstance(item, _NonFinite), max_depth=max_depth)
        where = field_path(hit[0]) if hit else "body"
        raise BodyRejected(
            f"{where}: {non_finite[0][:40]} is not a finite number (JSON has no NaN or "
            "Infinity, and this one overflows a 64-bit float); send a finite number"
        )
    if _SURROGATE_ESCAPE.search(text) and _unencodable(value):
        hit = _first(value, _has_surrogate, max_depth=max_depth)
        where = "body"
        if hit is not None:
            where = field_path(hit[0]) + (" (a key)" if hit[1] else "")
        raise BodyRejected(
            f"{where}: the text holds a lone UTF-16 surrogate escape (e.g. \\udfff), which is "
            "not valid Unicode; send the character itself or a complete surrogate pair"
        )
    return value


def _unencodable(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _model_of(annotation: Any) -> type[BaseModel] | None:
    """The pydantic model of a body annotation (``Model`` or ``Model | None``), if any."""
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    if get_origin(annotation) in (Union, types.UnionType):
        models = [m for m in map(_model_of, get_args(annotation)) if m is not None]
        return models[0] if len(models) == 1 else None
    return None


def unknown_fields(model: type[BaseModel], data: Any, loc: tuple[object, ...] = ()) -> str | None:
    """Why ``data`` has fields ``model`` forbids (the first :data:`MAX_LISTED`), or ``None``.

    A set difference on the keys: cheap however many there are, and it spares pydantic building
    one error per unknown field.
    """
    if not isinstance(data, dict) or model.model_config.get("extra") != "forbid":
        return None
    allowed: set[str] = set()
    for name, info in model.model_fields.items():
        allowed.add(name)
        if isinstance(info.alias, str):
            allowed.add(info.alias)
    unknown = [key for key in data if key not in allowed]
    if not unknown:
        return None
    listed = ", ".join(json.dumps(key[:SEGMENT_CHARS]) for key in unknown[:MAX_LISTED])
    more = f" and {len(unknown) - MAX_LISTED} more" if len(unknown) > MAX_LISTED else ""
    return (
        f"{field_path(loc)}: {len(unknown)} unknown field(s): {listed}{more}; the fields are "
        f"{', '.join(sorted(model.model_fields))}"
    )


# --------------------------------------------------------------------------- the route class


_MISSING: Any = object()


class CheckedRequest(Request):
    """A request whose ``json()`` is :func:`parse_json_body` plus the unknown-field check."""

    body_model: type[BaseModel] | None = None
    _checked: Any = _MISSING

    async def json(self) -> Any:
        """The body, parsed once and checked (raises :class:`BodyRejected`)."""
        if self._checked is _MISSING:
            settings = get_context(self).settings
            value = parse_json_body(await self.body(), max_depth=settings.max_json_depth)
            if self.body_model is not None:
                problem = unknown_fields(self.body_model, value)
                if problem:
                    raise BodyRejected(problem)
            self._checked = value
        return self._checked


class CheckedJsonRoute(APIRoute):
    """A route whose JSON body goes through :class:`CheckedRequest` before FastAPI parses it."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        """Wrap FastAPI's handler so it reads the body through :class:`CheckedRequest`."""
        handler = super().get_route_handler()
        field = self.body_field
        model = _model_of(field.field_info.annotation) if field is not None else None

        async def checked(request: Request) -> Response:
            wrapped = CheckedRequest(request.scope, request.receive)
            wrapped.body_model = model
            return await handler(wrapped)

        return checked


# --------------------------------------------------------------------------- stored values


def json_problem(value: Any, max_depth: int = RENDER_MAX_DEPTH) -> str | None:
    """Why a stored JSON value cannot be rendered (lone surrogates, too deep), or ``None``."""
    if value is None or isinstance(value, bool | int | float):
        return None
    try:
        text = json.dumps(value, ensure_ascii=False, default=str)
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "it holds a lone UTF-16 surrogate (not valid Unicode)"
    except RecursionError:
        return f"it is nested more than {max_depth} levels deep"
    except (TypeError, ValueError) as exc:
        return f"it is not JSON ({exc})"
    if too_deep(text, max_depth):
        return f"it is nested more than {max_depth} levels deep"
    return None


def printable_text(value: str | None) -> str | None:
    """``value`` with any lone surrogate written as an escape, so it can be sent as UTF-8."""
    if value is None:
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        return value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value
