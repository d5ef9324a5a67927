"""The one HTTP-client-to-infraplan mapping, fed by real httpx and aiohttp failures (a closed
port, a silent server, a server that answers garbage) rather than hand-built exceptions."""

from __future__ import annotations

import socket
import threading

import aiohttp
import asyncio
import httpx
import pytest

from infraplan.errors import ProviderError, ResourceNotFound, TransientProviderError
from infraplan.serving.http import Failure, aiohttp_failure, failure, status_error, transport_error


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def server():
    """A TCP server that, per connection, does what `mode[0]` says: stay silent or answer garbage."""
    mode = ["silent"]
    srv = socket.create_server(("127.0.0.1", 0))
    stop = threading.Event()

    def loop():
        srv.settimeout(0.1)
        while not stop.is_set():
            try:
                conn, _ = srv.accept()
            except OSError:
                continue
            if mode[0] == "garbage":
                conn.recv(4096)
                conn.sendall(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
                conn.close()
            else:
                threading.Timer(2, conn.close).start()

    t = threading.Thread(target=loop, daemon=True)
    t.start()
    yield srv.getsockname()[1], mode
    stop.set()
    t.join()
    srv.close()


def _raised(url: str, timeout: float = 0.3) -> httpx.HTTPError:
    with pytest.raises(httpx.HTTPError) as info:
        httpx.get(url, timeout=timeout, trust_env=False)
    return info.value


def test_refused_timeout_and_garbage_are_classified_and_transient(server):
    port, mode = server
    refused = _raised(f"http://127.0.0.1:{_closed_port()}/health")
    timeout = _raised(f"http://127.0.0.1:{port}/health")
    mode[0] = "garbage"
    garbage = _raised(f"http://127.0.0.1:{port}/health")
    assert (failure(refused), failure(timeout), failure(garbage)) == (Failure.REFUSED, Failure.TIMEOUT,
                                                                      Failure.BROKEN)
    for exc in (refused, timeout, garbage):
        err = transport_error(exc, "GET /health")
        assert isinstance(err, TransientProviderError) and err.args[0].startswith("GET /health: ")


def _aiohttp_raised(url: str, timeout: float = 0.3) -> BaseException:
    async def get() -> None:
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(sock_read=timeout, sock_connect=timeout)) as s:
            async with s.get(url) as resp:
                await resp.read()

    with pytest.raises((aiohttp.ClientError, TimeoutError)) as info:
        asyncio.run(get())
    return info.value


def test_aiohttp_failures_sort_like_httpx_ones(server):
    port, mode = server
    refused = _aiohttp_raised(f"http://127.0.0.1:{_closed_port()}/health")
    timeout = _aiohttp_raised(f"http://127.0.0.1:{port}/health")
    mode[0] = "garbage"
    garbage = _aiohttp_raised(f"http://127.0.0.1:{port}/health")
    assert [aiohttp_failure(e) for e in (refused, timeout, garbage)] == [Failure.REFUSED, Failure.TIMEOUT,
                                                                          Failure.BROKEN]
    assert aiohttp_failure(_aiohttp_raised("ftp://127.0.0.1/x")) is Failure.OTHER


def test_an_unusable_url_is_not_transient():
    exc = _raised("ftp://127.0.0.1/x")
    assert failure(exc) is Failure.OTHER
    err = transport_error(exc, "GET ftp://127.0.0.1/x")
    assert type(err) is ProviderError


@pytest.mark.parametrize("status, kind", [(200, None), (401, ProviderError), (403, ProviderError),
                                          (404, ResourceNotFound), (400, ProviderError),
                                          (429, TransientProviderError), (500, TransientProviderError),
                                          (503, TransientProviderError)])
def test_statuses(status, kind):
    err = status_error(status, "GET /v1/models", "detail")
    assert (type(err) if err is not None else None) is kind
    if status in (401, 403):
        assert "api_key" in str(err)
