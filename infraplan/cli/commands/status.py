"""`infraplan status`: live figures per fleet and replica from the servers' own /metrics."""

from __future__ import annotations

import sys

import click

from infraplan.cli.common import fail, handle_errors
from infraplan.cli.options import color_option, emit_json, json_option

def _which_fleets(fn):
    """PATH, --state and --fleet: which state and fleets `status` and `top` read."""
    fn = click.option("--fleet", "fleets", multiple=True, metavar="ADDR",
                      help="Only this fleet (fleet.NAME); repeatable.")(fn)
    fn = click.option("--state", "state_path", type=click.Path(), default=None,
                      help="State file (default: $INFRAPLAN_STATE, else infraplan.db beside the config).")(fn)
    return click.argument("path", default=".", type=click.Path())(fn)


COLUMNS = [("requests_per_s", "req/s", "{:.1f}"), ("output_tokens_per_s", "tok/s", "{:.0f}"),
           ("ttft_p50_ms", "TTFT p50", "{:.0f}ms"), ("ttft_p95_ms", "p95", "{:.0f}ms"),
           ("tpot_p50_ms", "TPOT p50", "{:.1f}ms"), ("tpot_p95_ms", "p95", "{:.1f}ms"),
           ("itl_p50_ms", "ITL p50", "{:.1f}ms"), ("itl_p95_ms", "p95", "{:.1f}ms"),
           ("e2e_p50_ms", "E2E p50", "{:.0f}ms"), ("e2e_p95_ms", "p95", "{:.0f}ms"),
           ("error_rate", "errors", "{:.1%}"), ("running", "running", "{:.0f}"), ("queued", "queued", "{:.0f}"),
           ("kv_cache_usage", "KV cache", "{:.0%}"), ("cache_hit_rate", "cache hits", "{:.0%}")]


def _cell(fmt: str, v) -> str:
    return "-" if v is None else fmt.format(v)


def lines(report) -> list[str]:
    """The report as text: a line per fleet, an indented line per replica (unreadable ones say why)."""
    out = []

    def figures(fig) -> str:
        return ", ".join(f"{label} {_cell(fmt, fig.get(k))}" for k, label, fmt in COLUMNS)

    for f in report.fleets:
        bad = f", {f.unreadable} of {len(f.replicas)} replicas unreadable" if f.unreadable else ""
        cost = ("; no price recorded" if f.hourly is None else
                f"; ${f.hourly:.2f}/h, {_cell('${:.2f}', f.usd_per_1m_output_tokens)} per 1M output tokens")
        out.append(f"{f.address}: " + (figures(f.figures) if f.figures else "no readable replica") + cost + bad)
        for r in f.replicas:
            out.append(f"  {r.address}: " + (figures(r.figures) if r.readable else f"unreadable ({r.error})"))
    if not report.fleets:
        out.append("No replicas in state: nothing is running to measure.")
    out.append(f"(window {report.window_s:g}s, taken {report.taken_at}; quantiles from SGLang's histograms, "
               "bench_serving's definitions)")
    return out


def render(report, console) -> None:
    for line in lines(report):
        console.print(line, markup=False, highlight=False, soft_wrap=True)


@click.command()
@_which_fleets
@click.option("--window", default="1s", show_default=True, metavar="DURATION",
              help="Sliding window the figures are measured over (two scrapes this far apart).")
@click.option("--watch", is_flag=True, help="Refresh every window until Ctrl-C (a live table on a terminal).")
@click.option("--prometheus", is_flag=True, help="Print Prometheus exposition (for a textfile collector or a scrape).")
@json_option("The report as JSON (format_version 1.0).")
@color_option
@click.pass_obj
@handle_errors
def status(obj, path, state_path, fleets, window, watch, prometheus, as_json):
    """What every fleet does now: requests/s, tokens/s, TTFT/TPOT/ITL/E2E, errors, queue, KV cache, $."""
    from infraplan.cli.common import resolve_state
    from infraplan.models.types import DurationError, parse_duration
    from infraplan.state import open_store
    from infraplan.status.collect import collect, latest_prices, prometheus_text

    try:
        window_s = parse_duration(window)
    except DurationError as exc:
        fail(f"--window {window}: {exc}")
    state = resolve_state(state_path, path)
    if not state.exists():
        fail(f"no state at {state}: nothing has been applied yet")
    wanted = [f if f.startswith("fleet.") else f"fleet.{f}" for f in fleets] or None

    def once():
        with open_store(state, readonly=True) as store:
            snap, prices = store.snapshot(), latest_prices(store.history(limit=50))
        return collect(snap, prices, window_s=window_s, fleets=wanted)

    if not watch:
        report = once()
        if prometheus:
            click.echo(prometheus_text(report), nl=False)
        elif as_json:
            emit_json(report.to_json())
        else:
            render(report, obj.console())
        return
    console = obj.console()
    try:
        if console.is_terminal and not (as_json or prometheus):
            from rich.live import Live

            with Live(console=console, auto_refresh=False) as live:
                while True:
                    live.update(_text(once()), refresh=True)
        else:
            while True:
                report = once()
                if prometheus:
                    click.echo(prometheus_text(report))
                elif as_json:
                    emit_json(report.to_json(), indent=None)
                else:
                    render(report, console)
                sys.stdout.flush()
    except KeyboardInterrupt:
        return


def _text(report):
    from rich.text import Text

    return Text("\n".join(lines(report)))


@click.command()
@_which_fleets
@click.option("--window", default="2s", show_default=True, metavar="DURATION",
              help="Sliding window, and how often the view refreshes.")
@json_option("One JSON report per line, each window (as `status --watch --json`).")
@color_option
@click.pass_context
def top(ctx, path, state_path, fleets, window, as_json):
    """`status --watch`: the fleet's live figures, refreshed every window until Ctrl-C."""
    ctx.invoke(status, path=path, state_path=state_path, fleets=fleets, window=window, watch=True,
               prometheus=False, as_json=as_json)
