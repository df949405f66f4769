"""The embedded store: an in-process Redis (fakeredis with Lua) served over RESP on loopback.

With no ``TASKFLOW_REDIS_URL``, ``taskflow-server`` starts one of these so a first-time user
needs no Redis at all. It speaks the real protocol on a real port, so the same Lua scripts and
the same worker code run on it, and ``taskflow-worker --redis-url URL`` can join it from another
process. It keeps nothing on disk: stopping the server loses the queue.

It is locked down like a real Redis would have to be:

* a random password, new at every start, is required (``AUTH`` or ``HELLO ... AUTH``) before
  any other command; the password is part of :attr:`EmbeddedRedis.url`, the URL the server
  prints for joining workers;
* Lua scripts run in the sandbox real Redis gives them: no ``python``, ``os``, ``io``,
  ``debug``, ``package``/``require``/``module``, ``load``/``loadstring``/``dofile``/``loadfile``,
  and no attribute access on the Python objects fakeredis hands to Lua;
* ``FUNCTION``/``FCALL`` (unused by AsyncTaskFlow) are refused.
"""

from __future__ import annotations

import hmac
import logging
import secrets
import threading
from typing import Any

import fakeredis
from fakeredis._helpers import SimpleError
from fakeredis.commands_mixins import scripting_mixin
from fakeredis.model import AccessControlList, ClientInfo

from taskflow_server._net import free_port
from taskflow_server.errors import TaskflowError
from taskflow_server.store.connection import redact

log = logging.getLogger(__name__)

_NOAUTH = "NOAUTH Authentication required."
_WRONGPASS = "WRONGPASS invalid username-password pair or user is disabled."
_REFUSED_COMMANDS = frozenset({b"function", b"fcall", b"fcall_ro"})
_AUTHENTICATED = "-taskflow-authenticated"  # "-" keys are hidden from CLIENT LIST/INFO

# Globals real Redis removes from (or never gives) its Lua interpreter. ``module`` goes too:
# ``module("os")`` would make the os library the script's environment via ``package.loaded``.
_LUA_REMOVED = (
    "python",
    "os",
    "io",
    "debug",
    "package",
    "require",
    "module",
    "load",
    "loadstring",
    "dofile",
    "loadfile",
)
_LUA_SANDBOX = "\n".join(f"{name} = nil" for name in _LUA_REMOVED)


class _AttributeRefusedError(SimpleError, AttributeError, TaskflowError):
    """A script read an attribute of a Python object.

    An ``AttributeError`` for lupa (access denied); a ``SimpleError`` for fakeredis, whose
    ``EVAL`` turns it into an ordinary script error reply instead of dropping the connection.
    """


def _no_python_attributes(obj: object, name: object, is_setting: bool) -> str:
    """lupa ``attribute_filter``: Lua may call the Python callbacks, never read their attributes.

    Without it a script reaches Python through any callback fakeredis exposes, e.g.
    ``redis.call.__globals__`` (a dict holding modules such as ``os``).
    """
    raise _AttributeRefusedError("ERR Python attributes are not accessible from Lua scripts")


class _SandboxedLua:
    """The lupa module fakeredis uses, whose ``LuaRuntime`` builds a sandboxed interpreter.

    Everything else (``LuaError``, ``lua_type``...) is the real module's.
    """

    def __init__(self, lua_module: Any) -> None:
        self._lua = lua_module

    def __getattr__(self, name: str) -> Any:
        return getattr(self._lua, name)

    def LuaRuntime(self, **kwargs: Any) -> Any:
        """A ``LuaRuntime`` without ``python.eval``/builtins, Python attributes or OS access."""
        kwargs.update(
            register_eval=False,
            register_builtins=False,
            attribute_filter=_no_python_attributes,
        )
        runtime = self._lua.LuaRuntime(**kwargs)
        runtime.execute(_LUA_SANDBOX)
        return runtime


_sandbox_lock = threading.Lock()


def install_lua_sandbox() -> None:
    """Make every Lua interpreter fakeredis creates from now on a sandboxed one (idempotent).

    What is hooked, and why there: fakeredis offers no option to configure its Lua runtime. It
    builds every interpreter (the one ``EVAL`` shares per server, and the one of the
    ``FUNCTION`` engine, which receives the same module as an argument) by calling
    ``LUA_MODULE.LuaRuntime(...)``, where ``scripting_mixin.LUA_MODULE`` is the lupa module it
    picked at import (by ``FAKEREDIS_LUA_VERSION``). Replacing that one attribute with a wrapper
    whose ``LuaRuntime`` is a factory is the single seam through which every runtime passes; it
    lets the sandbox be set where lupa supports it, at construction (``register_eval``,
    ``register_builtins``, ``attribute_filter``), and the dangerous globals be removed before
    fakeredis defines ``redis``/``cjson`` and records the globals a script may not change. The
    swap is process-wide; the project uses fakeredis only for this store, and a stricter Lua
    does not change what any of its scripts do.
    """
    with _sandbox_lock:
        if not isinstance(scripting_mixin.LUA_MODULE, _SandboxedLua):
            # A module-shaped stand-in (attributes delegated), hence the ignore.
            scripting_mixin.LUA_MODULE = _SandboxedLua(scripting_mixin.LUA_MODULE)  # type: ignore[assignment]


class _PasswordAcl(AccessControlList):
    """fakeredis's ACL plus ``requirepass`` enforcement (which fakeredis itself does not do).

    fakeredis consults ``server.acl.validate_command`` before every command a client sends
    (not for the ``redis.call`` of scripts), which makes it the per-server place to refuse
    commands: until a connection has authenticated, everything except ``AUTH`` and
    ``HELLO ... AUTH`` gets ``NOAUTH``. Passwords are compared in constant time.
    """

    def __init__(self, password: str) -> None:
        super().__init__()
        self._password = password.encode()

    def _password_ok(self, username: bytes | None, password: bytes) -> bool:
        user_ok = username is None or username == b"default"
        return hmac.compare_digest(password, self._password) and user_ok

    def _authenticate(self, client_info: ClientInfo, fields: list[bytes]) -> bool:
        """For ``AUTH``/``HELLO``: whether they carry credentials (raises when they are wrong)."""
        name = fields[0].lower()
        args = fields[1:]
        if name == b"auth":
            if len(args) not in (1, 2):
                return False  # fakeredis answers the arity error
            username, password = (None, args[0]) if len(args) == 1 else (args[0], args[1])
        else:  # HELLO [protover [AUTH username password] [SETNAME name]]
            upper = [a.upper() for a in args]
            if b"AUTH" not in upper:
                return False
            at = upper.index(b"AUTH")
            if at + 2 >= len(args):
                return False
            username, password = args[at + 1], args[at + 2]
        if not self._password_ok(username, password):
            client_info.pop(_AUTHENTICATED, None)
            raise SimpleError(_WRONGPASS)
        client_info[_AUTHENTICATED] = True
        return True

    def validate_command(
        self, username: bytes, client_info: ClientInfo, fields: list[bytes]
    ) -> None:
        """Refuse a command from a connection that has not authenticated, then apply the ACL."""
        if fields:
            name = fields[0].lower()
            if name in _REFUSED_COMMANDS:
                raise SimpleError(
                    f"ERR {name.decode(errors='replace').upper()} is disabled on the embedded store"
                )
            if name in (b"auth", b"hello") and self._authenticate(client_info, fields):
                return
            if not client_info.get(_AUTHENTICATED) and not _harmless(fields):
                raise SimpleError(_NOAUTH)
        super().validate_command(username, client_info, fields)


def _harmless(fields: list[bytes]) -> bool:
    """``CLIENT SETINFO``: the only command let through before ``AUTH``.

    The TCP front end of fakeredis relays each client through an internal redis-py connection
    whose own connect handshake sends ``CLIENT SETINFO LIB-NAME/LIB-VER`` (before the client
    has said anything); refusing it would drop every connection. It only names the library.
    """
    return len(fields) >= 2 and fields[0].lower() == b"client" and fields[1].lower() == b"setinfo"


class EmbeddedRedis:
    """A password-protected fakeredis server thread on ``host:port`` (port 0 picks a free one).

    Args:
        host: the address to listen on (loopback by default).
        port: the port (0: a free one).
        password: the password clients must send; ``None`` generates a random one.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0, password: str | None = None) -> None:
        self.host = host
        self.port = port or free_port(host)
        self.password = password or secrets.token_urlsafe(24)
        self._server: fakeredis.TcpFakeServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """The redis:// URL clients connect to. It holds the password: treat it as a secret."""
        return f"redis://:{self.password}@{self.host}:{self.port}/0"

    @property
    def safe_url(self) -> str:
        """The URL without the password, for logs."""
        return redact(self.url)

    def start(self) -> str:
        """Start serving in a daemon thread; returns the URL (with the password)."""
        install_lua_sandbox()
        fakeredis.TcpFakeServer.allow_reuse_address = True
        server = fakeredis.TcpFakeServer((self.host, self.port), server_type="redis")
        server.daemon_threads = True
        server.fake_server.config[b"requirepass"] = self.password.encode()
        server.fake_server.acl = _PasswordAcl(self.password)
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, name="embedded-redis", daemon=True
        )
        self._thread.start()
        log.info("embedded store (in-memory, not persisted) listening at %s", self.safe_url)
        return self.url

    def stop(self) -> None:
        """Stop serving and close the socket."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None
