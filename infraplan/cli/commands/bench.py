"""`infraplan bench URL`: a bounded streaming load and its latency percentiles.

URL is an http(s) base URL (or a full route), or a fleet address looked up in the state file
(`fleet.chat` -> the fleet's `endpoint`). Exit codes: 0 the run completed (failed requests are
counted in the output, not in the exit code); 1 usage errors or nothing answers at the URL.
"""

from __future__ import annotations

import click

from infraplan.cli.common import UsageExitsOne, fail
from infraplan.cli.completion import complete_address
from infraplan.cli.options import color_option, console, json_option

# The names of infraplan.bench.API_ROUTES, spelled out so `infraplan --help` does not import
# the load generator (httpx, asyncio); tests/bench checks the two agree.
APIS = ("openai-chat", "openai-completions", "sglang-generate")

_ROWS = (("ttft", "TTFT"), ("tpot", "TPOT"), ("itl", "ITL"), ("e2e", "E2E latency"))


def _resolve(url: str, state_path: str) -> str:
    """An http(s) URL as given; anything else is a state address with an `endpoint`."""
    from infraplan.cli.common import resolve_state
    from infraplan.errors import InfraplanError

    if url.startswith(("http://", "https://")):
        return url
    state_path = resolve_state(state_path)
    if not state_path.exists():
        raise InfraplanError(f"{url!r} is not an http(s) URL and there is no state file {state_path} to look it up in")
    from infraplan.state import open_store

    with open_store(state_path, readonly=True) as store:
        rec = store.get(url)
    if rec is None:
        raise InfraplanError(f"no resource {url} in {state_path}")
    endpoint = (rec.attributes or {}).get("endpoint")
    if not endpoint:
        raise InfraplanError(f"{url} has no endpoint in {state_path} (is it applied?)")
    return endpoint


def _ms(v) -> str:
    return "-" if v is None else f"{v:.2f}"


def _render(result, console) -> None:
    from rich.table import Table

    d = result.to_dict()
    cfg, req, tp = d["config"], d["requests"], d["throughput"]
    rate = "max" if cfg["rate"] is None else f"{cfg['rate']:g}/s ({cfg['arrival']})"
    warm = f" warmup={cfg['warmup_requests']}" if cfg["warmup_requests"] else ""
    if d["warmup"]["failed"]:
        warm += f" ({d['warmup']['failed']} failed)"
    console.print(f"Bench {cfg['url']} api={cfg['api']} model={d['model'] or '-'} {d['mode']} "
                  f"concurrency={cfg['concurrency']} rate={rate}{warm} "
                  f"prompt={cfg['prompt_tokens']} output={cfg['output_tokens']} tokens")
    console.print(f"Requests: {req['sent']} sent, {req['completed']} completed, {req['failed']} failed "
                  f"in {d['duration_s']:.2f}s")
    for reason, n in d["failures"].items():
        console.print(f"  {n} x {reason}")
    console.print(f"Throughput: {tp['requests_per_s']:.2f} req/s, {tp['output_tokens_per_s']:.1f} output tok/s, "
                  f"{tp['total_tokens_per_s']:.1f} total tok/s, concurrency {tp['concurrency']:.2f}")
    table = Table(title="Latency (ms)", title_justify="left")
    table.add_column("metric")
    for col in ("count", "mean", "median", "p90", "p95", "p99", "max"):
        table.add_column(col, justify="right")
    for key, label in _ROWS:
        s = d["latency_ms"][key]
        table.add_row(label, str(s["count"]), *(_ms(s[c]) for c in ("mean", "median", "p90", "p95", "p99", "max")))
    console.print(table)
    client = d["client"]
    if client:
        per = "-" if client["cpu_ms_per_request"] is None else f"{client['cpu_ms_per_request']:.2f}"
        console.print(f"Client: {client['cpu_s']:.2f} s CPU, {per} ms per request, "
                      f"event loop at {client['core_share']:.0%} of one core")
    for warning in d["warnings"]:
        console.print(f"Warning: {warning}", markup=False)


class _BenchCommand(UsageExitsOne, click.Command):
    """Bad options exit 1 even when `bench` is invoked on its own (tests, other groups)."""


@click.command(cls=_BenchCommand)
@click.argument("url", shell_complete=complete_address)
@click.option("--concurrency", "-c", type=click.IntRange(1, 4096), default=None,
              help="Requests in flight at most; without --rate, a closed loop of this many [default: 8; "
                   "4096 with --rate].")
@click.option("--rate", type=click.FloatRange(0, min_open=True), default=None,
              help="Open loop: requests arrive at this rate in requests/s, whatever the server does "
                   "[default: a closed loop].")
@click.option("--arrival", type=click.Choice(["poisson", "fixed"]), default="poisson", show_default=True,
              help="Inter-arrival times with --rate.")
@click.option("--duration", default=None, metavar="DURATION",
              help="Stop sending after this long (30s, 2m) [30s unless --requests is given].")
@click.option("--requests", "num_requests", type=click.IntRange(1), default=None, help="Stop after this many requests.")
@click.option("--warmup", type=click.IntRange(0), default=0, show_default=True,
              help="Requests sent first and not counted (connections opened, caches warm).")
@click.option("--prompt-tokens", type=click.IntRange(1), default=128, show_default=True,
              help="Prompt length of each request, in tokens.")
@click.option("--output-tokens", type=click.IntRange(1), default=64, show_default=True,
              help="Tokens to generate per request (max_tokens).")
@click.option("--api", type=click.Choice(list(APIS)), default="openai-chat", show_default=True,
              help="Route: /v1/chat/completions, /v1/completions or SGLang's /generate.")
@click.option("--model", default=None, help="Model name to send [the first of /v1/models].")
@click.option("--timeout", "timeout_s", type=click.FloatRange(0, min_open=True), default=30.0, show_default=True,
              help="Seconds one request may take in total.")
@click.option("--api-key", envvar="INFRAPLAN_BENCH_API_KEY", default=None,
              help="Bearer token (also INFRAPLAN_BENCH_API_KEY).")
@click.option("--seed", type=int, default=0, show_default=True, help="Seed for the generated prompts and request timing.")
@click.option("--state", "state_path", type=click.Path(), default=None,
              help="State file to look up a fleet address given as URL [$INFRAPLAN_STATE, else ./infraplan.db].")
@json_option("Print the result as JSON (format_version 1).")
@color_option
@click.option("--records", "include_records", is_flag=True, help="With --json, include every request.")
def bench(url, concurrency, rate, arrival, duration, num_requests, warmup, prompt_tokens, output_tokens,
          api, model, timeout_s, api_key, seed, state_path, as_json, include_records):
    """Send a bounded load to URL; print TTFT, TPOT, ITL and E2E percentiles and throughput.

    Metrics are defined as in SGLang's bench_serving. A closed loop by default (--concurrency
    requests in flight), an open loop with --rate. The client's own CPU is reported, with a
    warning when it nears one core (then it, not the server, bends the figures). URL may be a
    fleet address in the state (e.g. fleet.chat). Exits 0 when the run completed, whatever the
    failure count.
    """
    from infraplan.bench import run_bench
    from infraplan.models.types import parse_duration
    from infraplan.errors import InfraplanError

    try:
        duration_s = parse_duration(duration) if duration is not None else None
        target = _resolve(url, state_path)
        result = run_bench(target, model=model, concurrency=concurrency, rate=rate, arrival=arrival,
                           duration_s=duration_s, num_requests=num_requests, prompt_tokens=prompt_tokens,
                           output_tokens=output_tokens, api=api, timeout_s=timeout_s, api_key=api_key, seed=seed,
                           warmup=warmup)
    except InfraplanError as exc:
        fail(exc.one_line())
    if as_json:
        # the library's own writer: it also turns the non-finite numbers of an empty run into null
        click.echo(result.to_json(include_records=include_records))
        return
    _render(result, console())
