"""infraplan sim: a small server that speaks SGLang 0.5.23's HTTP API. It is NOT inference.

It answers SGLang's routes with SGLang's JSON shapes, read from the sglang-0.5.23 wheel
(`sglang/srt/entrypoints/http_server.py`, `.../v1_loads.py`, `.../openai/protocol.py`
and `sse_utils.py`, `srt/managers/tokenizer_manager.py`, `srt/managers/load_snapshot.py`,
`srt/utils/auth.py`, `srt/observability/metrics_collector.py`), so the local provider,
health checks, rollouts and dashboards can be exercised without a GPU:

* `/ready` answers at once (no generation); `/health` and `/health_generate` run a
  one-token generation and, like SGLang, sleep 1 s (`--health-delay-s`) before they look
  for its answer, then answer 200 (503 at once while starting).
* `/model_info`, `/server_info` (every 0.5.23 ServerArgs field, `launch_command`,
  `internal_states`; the api keys in clear, as SGLang returns them), `/v1/models`,
  `/v1/loads` (`/get_load` is gone in 0.5.23 and answers 404), `/flush_cache`, `/ping`.
* `--api-key` / `--admin-api-key` (given in `--server-args-json`) are enforced as
  SGLang's auth middleware does: /health*, /ready* and /metrics* are always open; other
  routes need the api key (401 `{"error": "Unauthorized"}`); admin routes (`/flush_cache`)
  need the admin key when one is set, else the api key.
* Malformed bodies are answered as SGLang answers them (`sim_requests`): a body of the wrong
  shape, invalid JSON, non-UTF-8 or nested too deep is a 400 in SGLang's error shapes, a
  `Content-Length` that is no number uvicorn's plain-text 400; a body over 64 MiB is a 413.
  A connection idle for 5 s (uvicorn's keep-alive timeout) is closed.
* Text is deterministic filler (seeded by `--seed` and the prompt), emitted after
  `--ttft-ms` and then every `--tpot-ms`, really sleeping, so the latency metrics it
  exports under SGLang 0.5.23's names and labels (`model_name`, `engine_type`,
  `is_streaming`, ...) are real measurements of the simulated timing.

It runs on one asyncio event loop (aiohttp's server, `sim_http`; the engine is `sim_engine`,
the metrics `sim_metrics`), so one process carries hundreds of concurrent streams on one core
without bending the configured latencies.

Every identity field says `infraplan-sim` (and model_info/server_info add `engine`,
`instance_id`, `simulated`). `/metrics` is always served (SGLang needs --enable-metrics).
`--port 0` binds a free port; the startup line names it.

    python -m infraplan.serving.sim --port 30000 --model-path org/name \
        --revision main --served-model-name name [--ttft-ms 20] [--tpot-ms 5]
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any

from infraplan.errors import ProviderError
from infraplan.serving.sglang_args import model_path_from_source
from infraplan.serving.sim_engine import HEALTH_SLEEP_S, SimConfig, Simulator
from infraplan.serving.sim_http import SimServer, make_server

__all__ = ["SimConfig", "SimServer", "Simulator", "main", "make_server", "parse_args"]


def _config_file(p: argparse.ArgumentParser, path: str) -> dict[str, Any]:
    import yaml

    try:
        with open(path, encoding="utf-8") as f:
            data = yaml.safe_load(f) or {}
    except (OSError, yaml.YAMLError) as e:
        p.error(f"--config {path}: {e}")
    if not isinstance(data, dict):
        p.error(f"--config {path} must hold a mapping of server args")
    return {str(k).replace("-", "_"): v for k, v in data.items()}


def parse_args(argv: list[str] | None = None) -> SimConfig:
    p = argparse.ArgumentParser(prog="python -m infraplan.serving.sim",
                                description="infraplan's SGLang HTTP API simulator (not inference).")
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, required=True, help="0 picks a free port (printed on startup).")
    p.add_argument("--model-path", required=True)
    p.add_argument("--revision", default=None)
    p.add_argument("--served-model-name", default=None)
    p.add_argument("--ttft-ms", type=float, default=20.0)
    p.add_argument("--tpot-ms", type=float, default=5.0)
    p.add_argument("--error-rate", type=float, default=0.0)
    p.add_argument("--startup-s", type=float, default=0.0)
    p.add_argument("--health-delay-s", type=float, default=HEALTH_SLEEP_S,
                   help="Seconds /health and /health_generate sleep before looking for their one-token generation "
                        "(SGLang: 1; 0 answers at once).")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--instance-id", default=None)
    p.add_argument("--server-args-json", default="{}",
                   help="Extra SGLang server args reported by /server_info (api_key, admin_api_key are enforced).")
    p.add_argument("--config", default=None,
                   help="A YAML file of more server args, as SGLang's own --config (infraplan passes the API keys "
                        "this way, never on the command line).")
    a = p.parse_args(argv)
    try:
        extra = json.loads(a.server_args_json)
    except json.JSONDecodeError as e:
        p.error(f"--server-args-json is not JSON: {e}")
    if not isinstance(extra, dict):
        p.error("--server-args-json must be a JSON object")
    if a.config:
        extra.update(_config_file(p, a.config))
    if not 0.0 <= a.error_rate <= 1.0:
        p.error("--error-rate must be between 0 and 1")
    try:
        model_path = model_path_from_source(a.model_path)
    except ProviderError as e:
        p.error(str(e))
    cfg = SimConfig(
        model_path=model_path, served_model_name=a.served_model_name or model_path,  # SGLang's default
        revision=a.revision, host=a.host, port=a.port, ttft_ms=a.ttft_ms, tpot_ms=a.tpot_ms,
        error_rate=a.error_rate, startup_s=a.startup_s, health_delay_s=a.health_delay_s, seed=a.seed, server_args=extra,
    )
    if a.instance_id:
        cfg.instance_id = a.instance_id
    return cfg


def main(argv: list[str] | None = None) -> int:
    cfg = parse_args(argv)
    server = make_server(cfg)
    stop = threading.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        signal.signal(sig, lambda *_: stop.set())
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    host, port = server.server_address[:2]
    print(f"infraplan sim (SGLang API simulator, not inference) listening on http://{host}:{port} "
          f"model={cfg.served_model_name} instance={cfg.instance_id}", flush=True)
    stop.wait()
    server.shutdown()
    server.server_close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
