"""Saved plans: the ONE writer and reader of plan files (`plan --out`, `drift --plan-out`).

A plan file is the plan's JSON (`Plan.to_json`, already redacted) plus the options
`apply PLANFILE` needs to re-plan and compare (`apply_options`). Values of sensitive
variables are never written: `--var` arguments naming one are left out (give them again
to `apply`), and the file is created readable by its owner only.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from infraplan.util.files import write_private
from infraplan.errors import StalePlanError
from infraplan.plan.model import Plan


@dataclass
class ApplyOptions:
    """How the saved plan was made, so `apply PLANFILE` plans the same way."""

    refresh: bool = True
    targets: list[str] = field(default_factory=list)
    replace: list[str] = field(default_factory=list)
    destroy: bool = False
    var_args: list[str] = field(default_factory=list)
    var_files: list[str] = field(default_factory=list)
    state: str = ""
    refresh_only: bool = False
    force: bool = False
    #: names of sensitive variables whose values were left out (apply needs them again)
    withheld_vars: list[str] = field(default_factory=list)


def public_var_args(var_args: list[str] | tuple[str, ...], sensitive: set[str]) -> tuple[list[str], list[str]]:
    """Split ``NAME=VALUE`` arguments into those that may be stored and the sensitive names withheld."""
    names = [a.split("=", 1)[0] for a in var_args]
    keep = [a for a, name in zip(var_args, names) if name not in sensitive]
    return keep, sorted({name for name in names if name in sensitive})


def apply_hint(path: str | Path, withheld: list[str]) -> str:
    """The command that carries out a saved plan, naming the sensitive values to give again."""
    again = "".join(f" --var {n}=..." for n in withheld)
    return f"infraplan apply {path}{again}" + (" (sensitive values are not saved: give them again)"
                                               if withheld else "")


def save_plan(plan: Plan, path: str | Path, options: ApplyOptions) -> None:
    """Write `plan` with its apply options to `path` (mode 0600, replaced atomically)."""
    data = plan.to_json()
    data["apply_options"] = asdict(options)
    text = json.dumps(data, indent=1, sort_keys=True, default=str)
    write_private(Path(path), text)


def load_plan(path: str | Path) -> tuple[Plan, ApplyOptions]:
    """Read a plan file; a damaged or foreign file is one `StalePlanError` line."""
    try:
        data = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise StalePlanError(f"cannot read plan file {path}: {exc}") from exc
    if not isinstance(data, dict) or "changes" not in data:
        raise StalePlanError(f"{path} is not an infraplan plan file")
    plan = Plan.from_json(data)
    try:
        raw = data.get("apply_options") or {}
        known = {k: v for k, v in raw.items() if k in ApplyOptions.__dataclass_fields__}
        options = ApplyOptions(**known)
        if not (isinstance(options.targets, list) and isinstance(options.var_args, list)
                and isinstance(options.var_files, list) and isinstance(options.replace, list)
                and all(isinstance(x, str) for x in [*options.targets, *options.var_args, *options.var_files,
                                                     *options.replace])):
            raise TypeError("apply_options holds values of the wrong type")
    except (OSError, ValueError, TypeError, AttributeError) as exc:
        raise StalePlanError(f"{path} is not a usable infraplan plan file: {exc}") from None
    return plan, options


def sensitive_variables(config: Any) -> set[str]:
    """Names of the config's sensitive variables."""
    return {n for n, block in config.variable_blocks.items() if block.sensitive}
