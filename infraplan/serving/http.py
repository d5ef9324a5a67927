"""The one mapping from HTTP clients' outcomes to infraplan's errors.

Every client that speaks HTTP to a model server or a router (the SGLang client, the
smg client, drift's probes, the benchmark, the local provider's readiness wait) turns
httpx exceptions and HTTP statuses into infraplan's terms here:

==========================================  ==========================  ==================
httpx outcome                               `Failure`                   error raised
==========================================  ==========================  ==================
ConnectError (refused, unreachable)         REFUSED                     TransientProviderError
TimeoutException (connect, read, pool)      TIMEOUT                     TransientProviderError
RemoteProtocolError, ReadError, WriteError  BROKEN (cut off, not HTTP)  TransientProviderError
any other HTTPError (bad URL, decoding)     OTHER                       ProviderError
HTTP 401 / 403                              -                           ProviderError (check the api_key)
HTTP 404                                    -                           ResourceNotFound
HTTP 429, 5xx                               -                           TransientProviderError
other HTTP 4xx                              -                           ProviderError
==========================================  ==========================  ==================

Transient errors are the ones the engine retries (`infraplan.util.retry`). The load generator
(`infraplan.bench`) speaks aiohttp, whose exceptions `aiohttp_failure` sorts the same way:
ClientConnectorError is REFUSED, any timeout TIMEOUT, a connection dropped or a body cut short
(ServerDisconnectedError, ClientPayloadError, ClientOSError) or an answer that is not HTTP
(ClientResponseError) BROKEN, anything else OTHER.
"""

from __future__ import annotations

from enum import Enum

import httpx

from infraplan.errors import ProviderError, ResourceNotFound, TransientProviderError


class Failure(str, Enum):
    """What kind of transport failure an httpx exception is."""

    REFUSED = "refused"
    TIMEOUT = "timeout"
    BROKEN = "broken"
    OTHER = "other"


def failure(exc: httpx.HTTPError) -> Failure:
    """Classify one httpx exception."""
    if isinstance(exc, httpx.TimeoutException):  # before ConnectError: ConnectTimeout is both kinds
        return Failure.TIMEOUT
    if isinstance(exc, httpx.ConnectError):
        return Failure.REFUSED
    if isinstance(exc, (httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError, httpx.CloseError)):
        return Failure.BROKEN
    return Failure.OTHER


def aiohttp_failure(exc: BaseException) -> Failure:
    """Classify one aiohttp client exception (aiohttp is imported by whoever raised it)."""
    import aiohttp

    if isinstance(exc, (TimeoutError, aiohttp.ServerTimeoutError)):  # before the connector: a connect timeout is both
        return Failure.TIMEOUT
    if isinstance(exc, aiohttp.ClientConnectorError):
        return Failure.REFUSED
    # a response that is not HTTP is a ClientResponseError (callers here never raise_for_status)
    if isinstance(exc, (aiohttp.ServerDisconnectedError, aiohttp.ClientPayloadError, aiohttp.ClientOSError,
                        aiohttp.ClientResponseError)):
        return Failure.BROKEN
    return Failure.OTHER


def transport_error(exc: httpx.HTTPError, what: str) -> ProviderError:
    """The infraplan error for an httpx exception raised while doing `what` (``GET http://h/p``)."""
    kind = failure(exc)
    text = f"{what}: {type(exc).__name__}: {exc}" if str(exc) else f"{what}: {type(exc).__name__}"
    return ProviderError(text) if kind is Failure.OTHER else TransientProviderError(text)


def status_error(status: int, what: str, detail: str = "") -> ProviderError | None:
    """The infraplan error for an HTTP status (None below 400)."""
    if status < 400:
        return None
    tail = f": {detail}" if detail else ""
    if status in (401, 403):
        return ProviderError(f"{what}: HTTP {status}, unauthorized (check the api_key){tail}")
    if status == 404:
        return ResourceNotFound(f"{what}: HTTP 404{tail}")
    if status == 429 or status >= 500:
        return TransientProviderError(f"{what}: HTTP {status}{tail}")
    return ProviderError(f"{what}: HTTP {status}{tail}")
