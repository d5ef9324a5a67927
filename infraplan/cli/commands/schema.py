"""`infraplan schema`: the JSON Schema of the configuration language."""

from __future__ import annotations

from pathlib import Path

import click

from infraplan.cli.options import color_option, json_option


@click.command()
@click.option("--out", "out", type=click.Path(), help="Write to this file instead of stdout.")
@json_option("Accepted for uniformity: the schema is JSON already.", expose_value=False)
@color_option
def schema(out):
    """Print the JSON Schema of the configuration language."""
    from infraplan.models.schema import schema_json

    text = schema_json()
    if out:
        Path(out).write_text(text)
    else:
        click.echo(text, nl=False)
