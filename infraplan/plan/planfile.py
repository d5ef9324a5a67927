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

import pydantic_core
from pydantic import ValidationError

from infraplan.errors import StalePlanError
from infraplan.plan.model import FORMAT_VERSION, Plan
from infraplan.plan.planfile_schema import PlanFile
from infraplan.util.files import write_private

#: the largest plan file read
MAX_PLAN_FILE_BYTES = 256 << 20


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
    #: who saved the plan: their own approvals do not count (`infraplan.policy.approvals`)
    author: str = ""


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
    """Read a plan file; anything but a plan file `PlanFile` accepts is one `StalePlanError` line.

    The JSON parser bounds nesting (no RecursionError on `[` x 100000) and the file's size
    is checked before it is read.
    """
    path = Path(path)
    try:
        size = path.stat().st_size
        if size > MAX_PLAN_FILE_BYTES:
            raise StalePlanError(f"plan file {path} is {size:,} bytes, over the {MAX_PLAN_FILE_BYTES:,} a plan "
                                 "file may have")
        data = path.read_bytes()
    except OSError as exc:
        raise StalePlanError(f"cannot read plan file {path}: {exc.strerror or exc}") from None
    try:
        raw = pydantic_core.from_json(data)
    except ValueError as exc:
        raise StalePlanError(f"plan file {path} is not valid JSON: {exc}") from None
    if not isinstance(raw, dict) or "changes" not in raw:
        raise StalePlanError(f"{path} is not an infraplan plan file")
    version = raw.get("format_version")
    if version != FORMAT_VERSION:
        shown = repr(version) if len(repr(version)) <= 40 else repr(version)[:37] + "..."
        raise StalePlanError(f"plan file {path}: plan format {shown} is not supported (expected {FORMAT_VERSION})")
    try:
        checked = PlanFile.model_validate(raw)
    except ValidationError as exc:
        raise StalePlanError(f"plan file {path} is not a valid infraplan plan: {_first_problem(exc)}") from None
    # the plan is built from the JSON as written (not the model's dump, which would turn 0 into 0.0):
    # its digest must be the digest of the plan that was saved
    return Plan.from_json(raw), ApplyOptions(**checked.apply_options.model_dump())


def _first_problem(exc: ValidationError) -> str:
    """`changes[0].kind: Input should be ...`, and how many more problems there are."""
    from infraplan.config.yaml_positions import format_path
    from infraplan.diagnostics import printable

    errors = exc.errors(include_url=False, include_input=False)
    first = errors[0]
    where = printable(format_path(tuple(first["loc"]))) or "the file"
    if len(where) > 120:
        where = where[:117] + "..."
    what = {"missing": "missing", "extra_forbidden": "unknown key"}.get(first["type"], first["msg"])
    more = len(errors) - 1
    return f"{where}: {what}" + (f" (and {more} more problem{'s' if more > 1 else ''})" if more else "")


def sensitive_variables(config: Any) -> set[str]:
    """Names of the config's sensitive variables."""
    return {n for n, block in config.variable_blocks.items() if block.sensitive}
