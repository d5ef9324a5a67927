"""`infraplan show`: a saved plan (native or Terraform-shaped JSON), or the resources in state."""

from __future__ import annotations

from enum import StrEnum

import click

from infraplan.cli.common import existing_state, handle_errors, state_option
from infraplan.cli.options import color_option, compact_warnings, compact_warnings_option, emit_json, json_option


class ShowFormat(StrEnum):
    """What `show --json PLANFILE` prints: infraplan's plan JSON, or Terraform's shape of it."""

    NATIVE = "native"
    TERRAFORM = "terraform"


@click.command()
@click.argument("planfile", required=False, type=click.Path())
@state_option
@json_option("The plan or the state as JSON.")
@click.option("--format", "view", type=click.Choice([f.value for f in ShowFormat]), default=ShowFormat.NATIVE.value,
              show_default=True, help="The JSON of a saved plan: infraplan's own, or shaped like "
              "`terraform show -json` (needs --json and PLANFILE).")
@color_option
@compact_warnings_option
@click.pass_obj
@handle_errors
def show(obj, planfile, state_path, as_json, view):
    """Show a saved plan, or the resources in state."""
    from infraplan.cli.views.plan import render_plan
    from infraplan.state import open_store
    from infraplan.util.redact import redact, redact_outputs

    if ShowFormat(view) == ShowFormat.TERRAFORM and not (as_json and planfile):
        raise click.UsageError("--format terraform is JSON of a saved plan: give --json and PLANFILE")
    if planfile:
        from infraplan.plan.planfile import load_plan

        saved, _ = load_plan(planfile)
        if as_json and ShowFormat(view) == ShowFormat.TERRAFORM:
            from infraplan.plan.terraform_json import terraform_plan

            emit_json(terraform_plan(saved))
        elif as_json:
            emit_json(saved.to_json(), sort_keys=True)
        else:
            render_plan(saved, obj.console(), compact_warnings=compact_warnings())
        return
    with open_store(existing_state(state_path), readonly=True) as store:
        snap = store.snapshot()
    if as_json:
        emit_json({"lineage": snap.lineage, "serial": snap.serial, "outputs": redact_outputs(snap.outputs, snap.sensitive_outputs),
                   "resources": [redact({"address": r.address, "deposed": r.deposed, "kind": r.kind,
                                         "provider": r.provider, "status": r.status,
                                         "attributes": r.attributes}) for r in snap.resources]})
        return
    if not snap.resources:
        click.echo("The state is empty.")
        return
    from rich.table import Table

    table = Table("address", "status", "endpoint", "model", "revision", box=None)
    for r in snap.resources:
        a = r.attributes or {}
        table.add_row(r.address + (f" (deposed {r.deposed})" if r.deposed else ""), r.status,
                      str(a.get("endpoint") or ""), str(a.get("model") or a.get("source") or ""),
                      str(a.get("model_revision") or a.get("revision") or ""))
    obj.console().print(table)
    click.echo(f"\nstate serial {snap.serial}, lineage {snap.lineage}")
