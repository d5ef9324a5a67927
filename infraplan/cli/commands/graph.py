"""`infraplan graph`: the dependency graph as Graphviz DOT or JSON."""

from __future__ import annotations

import click

from infraplan.cli.common import config_options, handle_errors, open_workspace
from infraplan.cli.options import color_option, emit_json, json_option


@click.command()
@click.argument("path", default=".", type=click.Path())
@config_options
@json_option("The graph as {\"nodes\": [...], \"edges\": [[from, to], ...]}.")
@color_option
@handle_errors
def graph(path, state_path, var_args, var_files, as_json):
    """Print the dependency graph as Graphviz DOT."""
    from infraplan.graph import build_graph, to_dot
    from infraplan.plan.expand import expand

    ws = open_workspace(path, state_path, var_args, var_files)
    desired = expand(ws.config)
    g = build_graph({a: d.depends_on for a, d in desired.items()})
    if as_json:
        emit_json({"nodes": sorted(g.nodes), "edges": sorted([list(e) for e in g.edges])})
    else:
        click.echo(to_dot(g), nl=False)
