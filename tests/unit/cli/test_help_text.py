"""Every command, and every option of every command, says what it does in `--help`."""

from __future__ import annotations

import click

from infraplan.cli.main import cli


def _commands(group: click.Group, prefix: str = "infraplan"):
    yield prefix, group
    for name, cmd in group.commands.items():
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, f"{prefix} {name}")
        else:
            yield f"{prefix} {name}", cmd


def test_every_command_and_option_has_help():
    missing = []
    for path, cmd in _commands(cli):
        if not (cmd.help or cmd.short_help):
            missing.append(path)
        for p in cmd.params:
            if isinstance(p, click.Option) and not (p.help or "").strip():
                missing.append(f"{path} {p.opts[0]}")
    assert missing == []


def test_destroy_help_describes_its_options():
    from helpers.cli import run

    out = run("destroy", "--help").stdout
    for flag in ("--target", "--parallelism", "--refresh", "--auto-approve", "--state-only"):
        (line,) = [ln for ln in out.splitlines() if ln.strip().startswith(flag)]
        assert len(line.split(None, 1)) == 2 and not line.rstrip().endswith(("ADDR", "INTEGER RANGE", "BOOLEAN")), line
