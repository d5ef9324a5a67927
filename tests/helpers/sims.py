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
