"""The `infraplan` command line: click commands that call the library and turn its
errors into one-line messages and exit codes.

Exit codes: 0 success; 1 error (usage errors included); 2 only for "changes" (plan
--detailed-exitcode) and "drift found" (drift).

State file, for every command: --state, else $INFRAPLAN_STATE, else infraplan.db beside the
config PATH (./infraplan.db for commands without one). INFRAPLAN_LOG=debug|info|warn logs
to stderr.
"""

from __future__ import annotations

import os

import click

from infraplan import __version__
from infraplan.cli.commands.approve import approvals, approve
from infraplan.cli.commands.audit import audit
from infraplan.cli.commands.apply import apply, destroy
from infraplan.cli.commands.bench import bench
from infraplan.cli.commands.drift import cleanup, drift
from infraplan.cli.commands.force_unlock import force_unlock
from infraplan.cli.commands.graph import graph
from infraplan.cli.commands.history import history
from infraplan.cli.commands.output import output
from infraplan.cli.commands.plan import plan
from infraplan.cli.commands.plugins import plugins
from infraplan.cli.commands.policy import policy
from infraplan.cli.commands.providers import providers_cmd
from infraplan.cli.commands.rollback import rollback
from infraplan.cli.commands.schema import schema
from infraplan.cli.commands.show import show
from infraplan.cli.commands.state import state
from infraplan.cli.commands.status import status, top
from infraplan.cli.commands.taint import taint, untaint
from infraplan.cli.commands.validate import validate
from infraplan.cli.common import LOG_ENV, Cli, configure_logging, handle_errors
from infraplan.cli.options import color_option, console


class Ctx:
    """The root's context object: the console every command prints through."""

    def console(self, stderr: bool = False, *, text_only: bool = False):
        return console(stderr=stderr, text_only=text_only)


@click.group(cls=Cli, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="infraplan")
@color_option
@click.pass_context
@handle_errors
def cli(ctx):
    """Plan, apply and watch fleets of LLM model servers.

    INFRAPLAN_LOG=debug|info|warn logs to stderr; INFRAPLAN_STATE names the state file.
    """
    configure_logging(os.environ.get(LOG_ENV))
    ctx.obj = Ctx()


for command in (validate, plan, apply, destroy, rollback, output, show, graph, schema, providers_cmd, history,
                force_unlock, state, status, top, taint, untaint, drift, cleanup, bench, plugins, policy, audit, approve, approvals):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="infraplan")
