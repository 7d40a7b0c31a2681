"""CoreApi.sign_in and call() against the real core."""

from __future__ import annotations

import asyncio
import gc
import ssl
import time
from pathlib import Path

import pytest

from sm_client.api import ApiError, CoreApi, PasswordLogin, SecretKeyLogin
from sm_shared.scopes import BUILTIN_ROLES

from .conftest import Core


async def test_signing_in_with_the_secret_key_gives_the_admin_scopes(admin: CoreApi) -> None:
    assert admin.signed_in
    assert admin.scopes == frozenset(BUILTIN_ROLES["admin"])
    assert admin.username is None
    page = await admin.call("GET", "/api/v1/nodes", params={"limit": 5, "q": None})
    assert page["total"] >= 1  # up's local agent


async def test_a_refused_call_is_an_api_error_with_the_problem(admin: CoreApi) -> None:
    with pytest.raises(ApiError) as caught:
        await admin.call("GET", "/api/v1/nodes/not-a-node")
    assert caught.value.status in (400, 404)
    assert caught.value.title
    assert caught.value.detail


async def test_calling_before_signing_in_is_refused(core: Core, tmp_path: Path) -> None:
    async with await CoreApi.bootstrap(core.api_url, core.secret_key, tmp_path / "ca.pem") as api:
        with pytest.raises(ApiError) as caught:
            await api.call("GET", "/api/v1/nodes")
        assert caught.value.status == 401
        with pytest.raises(ApiError) as wrong:
            await api.sign_in(PasswordLogin("nobody", "not the password"))
        assert wrong.value.code == "invalid_grant"
        assert not api.signed_in
        await api.sign_in(SecretKeyLogin(core.secret_key))
        assert api.may("nodes:read")


async def test_an_expiring_token_is_renewed_before_the_call(admin: CoreApi) -> None:
    first = await admin.access_token()
    object.__setattr__(first, "expires_at", 0.0)  # as if it ran out
    await admin.call("GET", "/api/v1/groups")
    renewed = await admin.access_token()
    assert renewed.token != first.token
    assert not renewed.expires_within(60)


async def test_a_request_cancelled_in_the_tls_handshake_leaves_no_socket_behind() -> None:
    """httpcore leaks the socket of a request cancelled during the TLS handshake;
    CoreApi lets the request run to its end instead (here: the connect timeout
    against a server that accepts and never answers), which closes it: the
    server sees the end of the stream without any garbage collection."""
    accepted: list[tuple[asyncio.StreamReader, asyncio.StreamWriter]] = []

    async def silent(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        accepted.append((reader, writer))

    server = await asyncio.start_server(silent, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    api = CoreApi(f"https://127.0.0.1:{port}", ssl.create_default_context(), timeout=1.0)
    gc.disable()  # a leaked socket would be closed by the collector, hiding the leak
    try:
        call = asyncio.get_running_loop().create_task(api.token_from_password("u", "p"))
        deadline = time.monotonic() + 10
        while not accepted:  # the TCP connection is up: the handshake waits for the server
            assert time.monotonic() < deadline, "the client never connected"
            await asyncio.sleep(0.01)
        call.cancel()
        with pytest.raises(asyncio.CancelledError):
            await call
        await api.aclose()  # waits for the request (the connect timeout ends it)
        reader, _ = accepted[0]
        hello = await asyncio.wait_for(reader.read(), timeout=10)  # until the client's EOF
        assert hello.startswith(b"\x16\x03")  # a TLS ClientHello, then the socket closed
    finally:
        gc.enable()
        for _, writer in accepted:
            writer.transport.abort()
        server.close()
        await server.wait_closed()


async def test_a_cancelled_call_does_not_disturb_the_next(admin: CoreApi) -> None:
    calls = [
        asyncio.get_running_loop().create_task(admin.call("GET", "/api/v1/nodes")) for _ in range(6)
    ]
    await asyncio.sleep(0)
    for call in calls:
        call.cancel()
    await asyncio.gather(*calls, return_exceptions=True)
    page = await admin.call("GET", "/api/v1/nodes", params={"limit": 1})
    assert page["total"] >= 1
