"""The SDK never shows the token: not in a config's or a client's repr/str, not in an error.

The server side is real (the token-protected session server); the token the client holds is a
wrong one, long and unique, so that a leak anywhere in the error is unmistakable.
"""

from __future__ import annotations

import uuid

import httpx
import pytest
from sdk_support import TOKEN, LiveServer

from support import free_port
from taskflow_sdk import AsyncClient, AuthenticationError, Client
from taskflow_sdk._config import ClientConfig, resolve_config
from taskflow_sdk.errors import APIConnectionError

WRONG = f"s3cret-{uuid.uuid4().hex}"


def _texts(exc: BaseException) -> list[str]:
    out = [str(exc), repr(exc), repr(exc.args)]
    request = getattr(exc, "request", None)
    if request is not None:
        out += [repr(request), str(request.url)]
    response = getattr(exc, "response", None)
    if response is not None:
        out += [repr(response), response.text]
    return out


def test_config_repr_masks_the_token() -> None:
    config = ClientConfig("http://127.0.0.1:8000", WRONG, httpx.Timeout(5), 2)
    for text in (repr(config), str(config), f"{config}", f"{config!r}"):
        assert WRONG not in text
        assert "token='***'" in text
    assert config.token == WRONG  # the value itself is unchanged
    assert "token=None" in repr(ClientConfig("http://h", None, httpx.Timeout(5), 2))
    resolved = resolve_config(None, None, 5.0, 2, env={"TASKFLOW_API_TOKEN": WRONG})
    assert WRONG not in repr(resolved) and resolved.token == WRONG


def test_client_repr_masks_the_token() -> None:
    with Client("http://127.0.0.1:8000", token=WRONG) as client:
        assert WRONG not in repr(client) and WRONG not in str(client)
        assert WRONG not in repr(vars(client))
    inside = f"http://user:{WRONG}@127.0.0.1:8000/?token={WRONG}"
    with Client(inside, token=WRONG) as client:
        assert WRONG not in repr(client)


async def test_async_client_repr_masks_the_token() -> None:
    async with AsyncClient("http://127.0.0.1:8000", token=WRONG) as client:
        assert WRONG not in repr(client) and WRONG not in repr(vars(client))


def test_auth_error_does_not_show_the_token(secured_server: LiveServer) -> None:
    with (
        Client(secured_server.url, token=WRONG) as client,
        pytest.raises(AuthenticationError) as info,
    ):
        client.queues()
    assert info.value.status_code == 401
    for text in _texts(info.value):
        assert WRONG not in text, text
    assert info.value.request.headers["authorization"] == f"Bearer {WRONG}"  # sent, not shown
    with Client(secured_server.url, token=TOKEN) as client:
        assert client.queues() is not None


async def test_async_auth_error_does_not_show_the_token(secured_server: LiveServer) -> None:
    async with AsyncClient(secured_server.url, token=WRONG) as client:
        with pytest.raises(AuthenticationError) as info:
            await client.queues()
    for text in _texts(info.value):
        assert WRONG not in text, text


def test_connection_error_does_not_show_a_secret_in_the_url() -> None:
    url = f"http://user:{WRONG}@127.0.0.1:{free_port()}"
    with (
        Client(url, token=WRONG, max_retries=0) as client,
        pytest.raises(APIConnectionError) as info,
    ):
        client.queues()
    assert WRONG not in str(info.value)
    assert "user:***@" in str(info.value)
