"""One simulator carries hundreds of concurrent streams on one event loop: no thread per
connection, and the configured first-token latency holds for every stream."""

from __future__ import annotations

import asyncio
import json
import statistics
import threading
import time

import aiohttp
import pytest

from helpers.timing import within
from infraplan.serving.sim import SimConfig, make_server

STREAMS = 300
TTFT_S, TPOT_S, TOKENS = 0.2, 0.05, 4


@pytest.fixture
def sim():
    server = make_server(SimConfig(model_path="org/tiny", served_model_name="tiny", port=0,
                                   ttft_ms=TTFT_S * 1000, tpot_ms=TPOT_S * 1000))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


async def _streams(url: str, peak_threads: list[int]) -> list[tuple[float, int]]:
    """(TTFT, content chunks) of STREAMS chat streams all open at once."""
    body = json.dumps({"messages": [{"role": "user", "content": "hi"}], "max_tokens": TOKENS,
                       "stream": True}).encode()
    opened = asyncio.Event()
    started = 0

    async def one(session: aiohttp.ClientSession) -> tuple[float, int]:
        nonlocal started
        t0 = time.monotonic()
        ttft, chunks = None, 0
        async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as resp:
            assert resp.status == 200
            started += 1
            if started == STREAMS:
                opened.set()
            async for line in resp.content:
                if line.startswith(b"data: {") and json.loads(line[6:])["choices"][0]["delta"].get("content"):
                    ttft = ttft if ttft is not None else time.monotonic() - t0
                    chunks += 1
        return ttft, chunks

    async def watch() -> None:
        await opened.wait()
        peak_threads.append(threading.active_count())  # every stream is open now

    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as session:
        results = await asyncio.gather(watch(), *(one(session) for _ in range(STREAMS)))
    return results[1:]


def test_hundreds_of_streams_share_one_thread_and_keep_their_latency(sim):
    host, port = sim.server_address
    before = threading.active_count()
    peak: list[int] = []
    t0 = time.monotonic()
    results = asyncio.run(_streams(f"http://{host}:{port}/v1/chat/completions", peak))
    wall = time.monotonic() - t0
    assert [chunks for _, chunks in results] == [TOKENS] * STREAMS
    assert peak and peak[0] <= before  # the stdlib server had one thread per open stream here
    ttfts = [ttft for ttft, _ in results]
    assert min(ttfts) >= TTFT_S * 0.95
    assert statistics.median(ttfts) <= TTFT_S + within(0.1)
    assert wall <= TTFT_S + (TOKENS - 1) * TPOT_S + within(1.0)  # the streams ran side by side
