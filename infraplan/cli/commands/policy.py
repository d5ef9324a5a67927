"""`infraplan policy test`: run the `test_*` rules of a config's Rego policies."""

from __future__ import annotations

from pathlib import Path

import click

from infraplan.cli.common import fail, handle_errors
from infraplan.cli.options import color_option, emit_json, json_option


@click.group()
def policy():
    """Rego policies judged against every plan (policies/*.rego beside the config)."""


@policy.command("test")
@click.argument("path", default=".", type=click.Path())
@click.option("--policy", "policies", multiple=True, type=click.Path(), metavar="PATH",
              help="More policy files or folders, beside those in policies/.")
@json_option("Each test's result as JSON.")
@color_option
@handle_errors
def policy_test(path, policies, as_json):
    """Run the policies' test cases (tests/*.json beside them: an input and the deny and warn messages
    expected) and their `test_*` rules, as `opa test` does; exit 1 when one fails."""
    from infraplan.policy.rego import PolicyError, find_cases, find_modules, run_tests

    root = Path(path) if Path(path).is_dir() else Path(path).parent
    try:
        modules = find_modules(root, policies)
        results = run_tests(modules, find_cases(modules))
    except PolicyError as exc:
        for d in exc.diagnostics[1:]:
            click.echo(d.one_line(), err=True)
        fail(exc.diagnostics[0].one_line())
    if not modules:
        fail(f"no policies: put *.rego files in {root / 'policies'} or pass --policy PATH")
    failed = [r for r in results if not r.passed]
    if as_json:
        emit_json({"passed": len(results) - len(failed), "failed": len(failed),
                   "tests": [{"module": str(r.module), "name": r.name, "passed": r.passed, "detail": r.detail}
                             for r in results]})
    else:
        for r in results:
            click.echo(f"{'PASS' if r.passed else 'FAIL'}: {r.module}: {r.name}" + (f" ({r.detail})" if r.detail else ""))
        click.echo(f"{len(results) - len(failed)} passed, {len(failed)} failed"
                   + ("" if results else f" (no tests/*.json cases or test_* rules for {len(modules)} module(s))"))
    if failed:
        raise SystemExit(1)
