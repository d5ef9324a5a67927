"""Simulator servers (infraplan's SGLang API simulator, not inference) run in this test process."""

from __future__ import annotations

import threading
from typing import Any

from infraplan.serving.sim import SimConfig, make_server


def start_sim(**kw: Any) -> tuple[Any, str]:
    """A started simulator serving "tiny" (fast by default) and its URL; `shutdown()` it when done."""
    cfg = dict(model_path="org/tiny", served_model_name="tiny", port=0, ttft_ms=2, tpot_ms=1, health_delay_s=0)
    cfg.update(kw)
    server = make_server(SimConfig(**cfg))
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}"


def start_smg(urls: list[str], policy: str = "round_robin", extra: list[str] | None = None, *,
              healthy: bool = False, timeout: float = 40.0):
    """A real smg on 127.0.0.1 in front of `urls` (its own ports), once its /workers lists them all
    (and, with `healthy`, calls them healthy): (process, endpoint). Terminate it when done."""
    import subprocess
    import sys
    import time

    import httpx

    from helpers.net import free_port

    port = free_port()
    cmd = [sys.executable, "-m", "smg", "launch", "--host", "127.0.0.1", "--port", str(port),
           "--prometheus-host", "127.0.0.1", "--prometheus-port", str(free_port()), "--policy", policy,
           *(extra or []), "--worker-urls", *urls]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    endpoint = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout
    while True:
        try:
            listed = httpx.get(f"{endpoint}/workers", timeout=1, trust_env=False).json().get("workers", [])
            if len(listed) == len(urls) and (not healthy or all(w.get("is_healthy", True) for w in listed)):
                return proc, endpoint
        except (httpx.HTTPError, ValueError):
            pass
        if proc.poll() is not None or time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"smg did not list {len(urls)} workers ({' '.join(cmd)})")
        time.sleep(0.2)
