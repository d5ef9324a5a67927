"""Plan and apply output for people. No diff logic here: the Plan already says it all."""

from __future__ import annotations

import json
import os
import sys
from typing import TYPE_CHECKING, Any, TextIO

from infraplan.diagnostics import location_text
from infraplan.plan.model import Change, Plan
from infraplan.util.redact import REDACTED, redact
from infraplan.util.time import iso_utc
from infraplan.util.units import human_count

SYMBOL = {"create": "+", "update": "~", "delete": "-", "replace": "-/+", "refresh": "~", "noop": " "}
STYLE = {"create": "green", "update": "yellow", "delete": "red", "replace": "magenta", "refresh": "cyan", "noop": "dim"}
UNKNOWN_TEXT = "(known after apply)"

if TYPE_CHECKING:
    from rich.console import Console
    from rich.text import Text


def make_console(*, no_color: bool = False, stderr: bool = False, text_only: bool = False) -> Console | PlainConsole:
    """Colour only on a TTY (rich decides) and no escape codes at all with `no_color`.

    `text_only` callers print nothing but text (as `render_plan` does): when the stream is
    surely not a terminal they get a `PlainConsole`, and rich is not imported.
    """
    stream = sys.stderr if stderr else sys.stdout
    if text_only and _not_a_terminal(stream):
        return PlainConsole(stream)
    from rich.console import Console

    # no colour system at all: rich's own no_color keeps bold and dim escapes
    return Console(stderr=stderr, color_system=None if no_color else "auto", highlight=False, soft_wrap=True)


def _not_a_terminal(stream: TextIO) -> bool:
    # rich also treats FORCE_COLOR / TTY_COMPATIBLE as a terminal: leave those cases to it
    if "FORCE_COLOR" in os.environ or "TTY_COMPATIBLE" in os.environ:
        return False
    try:
        return not stream.isatty()
    except (AttributeError, ValueError):
        return False


class PlainConsole:
    """The part of rich's Console that `render_plan` uses, for a stream that is not a
    terminal: rich would write plain text there too, so write it directly."""

    is_terminal = False
    no_color = True

    def __init__(self, file: TextIO):
        self.file = file

    def print(self, *objects: Any, end: str = "\n") -> None:
        self.file.write(" ".join(o if isinstance(o, str) else o.plain for o in objects) + end)


def fmt(value: Any) -> str:
    if value == REDACTED:
        return REDACTED
    if isinstance(value, str):
        return json.dumps(value)
    if value is None:
        return "null"
    return json.dumps(value, sort_keys=True, default=str)


def headline(c: Change) -> str:
    where = f" (deposed object {c.deposed})" if c.deposed else ""
    return {
        "create": f"{c.address} will be created",
        "update": f"{c.address} will be updated in place",
        "delete": f"{c.address}{where} will be destroyed",
        "replace": f"{c.address} must be replaced",
        "refresh": f"{c.address} will be refreshed in state (no real change)" if c.after is not None
        else f"{c.address} is gone: it will be removed from state (no real change)",
        "noop": f"{c.address} is up to date",
    }[c.action]


class _Segments:
    """Styled text built cheaply; turned into a rich Text only when it is shown in colour."""

    __slots__ = ("parts",)

    def __init__(self) -> None:
        self.parts: list[tuple[str, str | None]] = []

    def append(self, text: str, style: str | None = None) -> None:
        self.parts.append((text, style))

    @property
    def plain(self) -> str:
        return "".join(p for p, _ in self.parts)

    def to_text(self) -> Text:
        from rich.text import Text

        return Text.assemble(*((p, st or "") for p, st in self.parts))


def _styled(text: str, style: str | None = None) -> _Segments:
    t = _Segments()
    t.append(text, style)
    return t


def render_change(c: Change, secrets: frozenset[str] = frozenset()) -> Text:
    """One change, Terraform style; sensitive values are masked."""
    return _change_segments(c, secrets).to_text()


def shown_value(key: str, value: Any) -> str:
    """An attribute's value as the plan shows it: JSON, except a parameter count (``8.03B``) and
    a POSIX timestamp in a ``*_at`` field (``"2026-01-01T00:00:00Z"``)."""
    number = isinstance(value, (int, float)) and not isinstance(value, bool)
    if number and key == "parameters":
        return human_count(value)
    if number and key.endswith("_at") and value > 0:
        return fmt(iso_utc(value))
    return fmt(value)


def _change_segments(c: Change, secrets: frozenset[str]) -> _Segments:
    def show(key: str, value: Any) -> str:
        name = key.split(".")[-1]
        return shown_value(name, redact(value, secrets, key=name))

    t = _Segments()
    style = STYLE[c.action]
    t.append(f"  # {headline(c)}\n", style="bold")
    for r in c.reasons:
        t.append(f"  # ({r})\n", style="dim")
    if c.action == "replace":
        order = "create before destroy" if c.create_before_destroy else "destroy before create"
        t.append(f"  # ({order})\n", style="dim")
    sym = SYMBOL[c.action] if not (c.action == "replace" and c.create_before_destroy) else "+/-"
    if c.action == "refresh" and c.after is None:
        sym = SYMBOL["delete"]
    t.append(f"{sym:>3} ", style=style)
    t.append(f"{c.kind} {c.address}" + (f" ({c.provider})" if c.provider else "") + " {\n")
    if c.action == "create":
        for k in sorted((c.after or {})):
            v = c.after[k]
            if v is None and k not in c.after_unknown:
                continue
            shown = UNKNOWN_TEXT if k in c.after_unknown else show(k, v)
            t.append("      + ", style="green")
            t.append(f"{k} = {shown}\n")
    elif c.action == "delete" or (c.action == "refresh" and c.after is None):
        for k in sorted((c.before or {})):
            v = c.before[k]
            if v is None:
                continue
            t.append("      - ", style="red")
            t.append(f"{k} = {show(k, v)}\n")
    else:
        shown = 0
        for a in c.attributes:
            top = a.path.split(".")[0]
            after = UNKNOWN_TEXT if top in c.after_unknown else show(a.path, a.after)
            mark = "~" if a.before is not None and (a.after is not None or top in c.after_unknown) else ("+" if a.before is None else "-")
            t.append(f"      {mark} ", style=STYLE["update"] if mark == "~" else ("green" if mark == "+" else "red"))
            t.append(f"{a.path} = {show(a.path, a.before)} -> {after}" if mark == "~"
                     else f"{a.path} = {show(a.path, a.after) if mark == '+' else show(a.path, a.before)}")
            if a.forces_replace and c.action == "replace":
                t.append("  # forces replacement", style="magenta")
            t.append("\n")
            shown += 1
        changed_keys = {a.path.split(".")[0] for a in c.attributes}
        hidden = len([k for k in (c.after or {}) if k not in changed_keys and (c.after or {}).get(k) is not None])
        if hidden > 0:
            t.append(f"        # ({hidden} unchanged attributes hidden)\n", style="dim")
    t.append("    }\n")
    return t


def warning_lines(plan: Plan, *, compact: bool = False) -> list[str]:
    """The plan's warnings (serving-capacity risks first), each `! where: summary` and, below it,
    its detail. `compact` (Terraform's -compact-warnings): one line per warning, the summary
    only, the same summary said once with a count."""
    warnings = [d for d in plan.diagnostics if d.get("severity") == "warning"]  # each once (Diagnostics)
    risks = [r for c in plan.changes for r in c.risks if "serving capacity" in r]
    lines: list[str] = []
    if compact:
        seen: dict[str, int] = {}
        for summary in risks + [d["summary"] for d in warnings]:
            seen[summary] = seen.get(summary, 0) + 1
        lines = [f"  ! {summary}" + (f" (x{n})" if n > 1 else "") for summary, n in seen.items()]
        if any(d.get("detail") or d.get("location") for d in warnings):
            lines.append("  (run without --compact-warnings for where and why)")
        return lines
    lines = [f"  ! {r}" for r in risks]
    for d in warnings:
        loc = d.get("location")
        lines.append(f"  ! {location_text(loc) + ': ' if loc else ''}{d['summary']}")
        if d.get("detail"):
            lines.append(f"      {d['detail']}")
    return lines


def render_plan(plan: Plan, console: Console | PlainConsole, *, show_noop: bool = False,
                compact_warnings: bool = False) -> None:
    """Print the plan: warnings and risks first, then each change, then the summary line."""
    colour = console.is_terminal and not console.no_color
    plain = isinstance(console, PlainConsole)

    def say(t: _Segments) -> None:
        console.print(t if plain else t.to_text())

    warned = warning_lines(plan, compact=compact_warnings)
    if warned:
        say(_styled("Warnings:", "bold yellow"))
        for line in warned:
            say(_styled(line, "yellow"))
        console.print()
    visible = [c for c in plan.changes if c.action != "noop" or show_noop]
    if not plan.has_changes and not any(c.action == "refresh" for c in plan.changes):
        say(_styled("No changes. Your fleets match the configuration.", "bold green"))
        _render_outputs(plan, say)
        return
    console.print("infraplan will perform the following actions:\n")
    risky = [c for c in visible if c.action in ("delete", "replace")]
    rest = [c for c in visible if c.action not in ("delete", "replace")]
    blocks: list[_Segments] = []
    if risky:
        blocks.append(_styled("Destroys and replacements (review these first):", "bold red"))
        blocks.extend(_change_segments(c, plan.secrets) for c in risky)
    blocks.extend(_change_segments(c, plan.secrets) for c in rest)
    blocks.append(summary_line(plan))
    blocks.extend(cost_lines(plan))
    if colour:
        for t in blocks:
            console.print(t.to_text())
    else:
        # plain output (pipes, CI, NO_COLOR): skip rich's layout, which dominates large plans
        console.file.write("".join(t.plain + "\n" for t in blocks))
    _render_outputs(plan, say)


def summary_line(plan: Plan) -> _Segments:
    s = plan.summary()
    verb = "Destroy" if plan.destroy else "Plan"
    t = _styled(f"{verb}: ", "bold")
    t.append(f"{s['add']} to add, {s['change']} to change, {s['destroy']} to destroy")
    if s["replace"]:
        t.append(f" ({s['replace']} replaced)")
    if s["refresh"]:
        t.append(f", {s['refresh']} refreshed in state")
    t.append(".")
    return t


def _render_outputs(plan: Plan, say) -> None:
    if not plan.outputs:
        return
    say(_styled("\nOutputs:"))
    for name, o in sorted(plan.outputs.items()):
        v = REDACTED if o.get("sensitive") else (UNKNOWN_TEXT if o.get("unknown") else fmt(o.get("value")))
        say(_styled(f"  {name} = {v}"))  # as text: values are not rich markup


def cost_lines(plan: Plan) -> list[_Segments]:
    """Per-fleet $/hour and the plan's total, when anything costs money."""
    from infraplan.cost import describe, money

    total = plan.cost or {}
    fleets = [c for c in plan.changes if c.kind == "fleet" and c.cost]
    if not any((c.cost.get("hourly") or c.cost.get("before_hourly")) for c in fleets) and not total.get("unpriced"):
        return []
    t = _styled("\nCost (USD per hour):\n", "bold")
    for c in fleets:
        if c.cost.get("hourly") is None:
            t.append(f"  {c.address}: not priced by its provider\n")
            continue
        t.append(f"  {c.address}: {describe(c.cost)}\n")
        rw = c.cost.get("rollback_window")
        if rw:
            t.append(f"      blue-green rollback window {rw['window']} keeps the old set: +{money(rw['extra_hourly'])}/h "
                     f"while kept (about {money(rw['extra_total'])})\n")
        cs = c.cost.get("canary_service")
        if cs:
            t.append(f"      canary service ({cs['replicas']} replicas of the new version) while the canary runs: "
                     f"+{money(cs['extra_hourly'])}/h\n")
        fit = c.cost.get("fit") or {}
        for line in fit.get("lines") or []:  # the arithmetic of the fit check, as --json carries it
            t.append(f"      fit: {line}\n", style="dim")
        for i, f in enumerate((c.cost.get("unit") or {}).get("failover") or []):
            where = "/".join(str(f[k]) for k in ("cloud", "region") if f.get(k))
            spot = " spot" if f.get("use_spot") else ""
            t.append(f"      {i + 1}. {where} {f.get('instance_type') or ''}{spot} {money(f.get('hourly'))}/h\n",
                     style="dim")
    for sh in total.get("shared") or []:
        where = "/".join(str(sh[k]) for k in ("cloud", "region") if sh.get(k))
        change = "new" if not sh.get("before") else ("no longer needed" if not sh.get("after") else "kept")
        once = ", counted once" if sh["key"].endswith("skyserve-controller") else ""
        t.append(f"  {sh.get('note') or sh['key']}: {money(sh.get('hourly'))}/h, {where} "
                 f"({sh.get('instance_type')}){once} ({change})\n")
    delta = total.get("delta_hourly") or 0.0
    sign = "+" if delta >= 0 else ""
    t.append(f"  Total: {money(total.get('after_hourly'))}/h (was {money(total.get('before_hourly'))}/h, "
             f"{sign}{money(delta)}/h)")
    if total.get("unpriced"):
        t.append(f"; not priced: {', '.join(total['unpriced'])}")
    return [t]
