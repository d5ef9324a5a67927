"""Terraform's single-dash spellings of long options, accepted as aliases.

Terraform users type ``-out=x.plan``, ``-auto-approve``, ``-var k=v``, ``-target=ADDR``;
click reads ``-out`` as the short options ``-o -u -t``. Before click parses, each word
``-NAME`` or ``-NAME=VALUE`` becomes ``--NAME...`` when NAME is longer than one letter and
the command it is given to has a ``--NAME``, or has no short option ``-N`` for its first letter. A ``-NAME`` the command
has no ``--NAME`` for then fails as ``No such option '--NAME'`` with click's did-you-mean.
Option values (``--var -x=1``) and everything after ``--`` are left alone.
"""

from __future__ import annotations

import click


def _options(command: click.Command, help_names: list[str]) -> dict[str, click.Option]:
    """Every option spelling of `command` -> the option (its help option included)."""
    out: dict[str, click.Option] = {}
    for param in command.params:
        if isinstance(param, click.Option):
            for name in (*param.opts, *param.secondary_opts):
                out[name] = param
    for name in help_names:
        out.setdefault(name, click.Option([name], is_flag=True))
    return out


def _takes_value(option: click.Option) -> bool:
    return not (option.is_flag or option.count)


def long_spellings(group: click.Group, args: list[str], help_names: list[str]) -> list[str]:
    """`args` (the words after the program name) with Terraform's ``-NAME`` spellings as ``--NAME``."""
    out: list[str] = []
    command: click.Command = group
    options = _options(command, help_names)
    i = 0
    while i < len(args):
        word = args[i]
        i += 1
        if word == "--":
            return out + [word, *args[i:]]
        if word.startswith("-") and not word.startswith("--") and len(word) > 2 and word[1].isalpha() and (
                "-" + word.split("=", 1)[0] in options or f"-{word[1]}" not in options):
            word = "-" + word
        out.append(word)
        if word.startswith("-"):
            option = options.get(word.split("=", 1)[0])
            if option is not None and _takes_value(option) and "=" not in word:
                out.extend(args[i:i + option.nargs])  # the option's value, as typed
                i += option.nargs
        elif isinstance(command, click.Group) and word in command.commands:
            command = command.commands[word]
            options = _options(command, help_names)
    return out
