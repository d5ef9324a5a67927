"""What apply prints while it runs and when it ends: progress lines or JSON events, then the summary."""

from __future__ import annotations

import sys

from infraplan.cli.options import emit_json


def progress(console, as_json: bool):
    """The executor's event callback: Terraform-like progress lines, or one JSON event per line."""
    import time as _t

    starts: dict[str, float] = {}
    fancy = console.is_terminal and not console.no_color

    def say(text: str, style: str | None = None, *, now: bool = False) -> None:
        if fancy:
            console.print(text, style=style, markup=False, highlight=False)
        else:
            sys.stdout.write(text + "\n")
            if now:  # a pipe (CI logs) buffers: what an interrupt does must show at once
                sys.stdout.flush()

    def on_event(ev):
        if as_json:
            emit_json({"@timestamp": _t.time(), **ev}, indent=None)
            return
        if ev["type"] == "rollout":
            style = "red" if ev.get("passed") is False or ev.get("step") == "rollback" else None
            say(rollout_line(ev), style)
            return
        if ev["type"] == "interrupt":
            say(interrupt_line(ev), "bold yellow", now=True)
            return
        if ev["type"] == "abandon":
            left = ", ".join(f"{w['address']} ({w['op']})" for w in ev["left"])
            say(f"Stopped waiting for {left}: each keeps its intent in state, and the next plan checks "
                "what really runs", "bold yellow", now=True)
            return
        key = f"{ev['op']}:{ev['address']}"
        label = {"create": "Creating", "update": "Updating", "delete": "Destroying", "write": "Recording",
                 "forget": "Forgetting", "rollout": "Rolling out"}.get(ev["op"], ev["op"])
        old = " (old)" if ev.get("deposed") or (ev["op"] == "delete" and ev.get("action") == "replace") else ""
        if ev["type"] == "start":
            starts[key] = _t.monotonic()
            if ev["op"] in ("create", "update", "delete"):
                say(f"{ev['address']}{old}: {label}...")
        elif ev["type"] == "done":
            if ev["op"] in ("create", "update", "delete"):
                done = {"create": "Creation", "update": "Update", "delete": "Destruction"}[ev["op"]]
                say(f"{ev['address']}{old}: {done} complete after {ev.get('elapsed', 0):.1f}s")
        elif ev["type"] == "still":
            say(f"{ev['address']}{old}: Still {label.lower()}... [{ev.get('elapsed', 0):.0f}s elapsed]")
        elif ev["type"] == "failed":
            say(f"{ev['address']}{old}: failed: {ev.get('error')}", "red")
        elif ev["type"] == "skipped":
            say(f"{ev['address']}{old}: skipped (a dependency failed)", "yellow")
        elif ev["type"] == "interrupted":
            say(f"{ev['address']}{old}: interrupted (not started)", "yellow")

    return on_event


def _replicas(n: int) -> str:
    return f"{n} replica" + ("" if n == 1 else "s")


def rollout_line(ev: dict) -> str:
    """One rollout step as a sentence: ``fleet.chat: rolling rollout started: 2 replicas to replace.``"""
    fleet, step = ev["fleet"], str(ev.get("step"))
    detail = ev.get("detail")
    if step == "start":
        todo = [f"{_replicas(len(ev[k]))} to {verb}" for k, verb in (("replace", "replace"), ("create", "add"),
                                                                        ("delete", "remove")) if ev.get(k)]
        return f"{fleet}: {ev.get('strategy')} rollout started" + (f": {', '.join(todo)}." if todo else ".")
    if step == "done":
        return f"{fleet}: rollout complete."
    if step == "rollback":
        return f"{fleet}: rollout rolled back: {ev.get('reason')}"
    if step == "alert-failed":
        return f"{fleet}: rollout alert not sent: {ev.get('error')}"
    if step.startswith("gate:"):
        return f"{fleet}: check {step[5:]} {'passed' if ev.get('passed') else 'failed'}."
    line = f"{fleet}: rollout {step.replace('-', ' ')}" + (f": {detail}" if detail else "")
    if step == "batch" and ev.get("serving") is not None:
        line += f"; {_replicas(ev['serving'])} serving"
    return line + "."


def interrupt_line(ev: dict) -> str:
    """What apply says the moment it is interrupted: that it stops, and what it waits for."""
    head = f"Stopping ({ev['signal']}): no new step starts"
    waiting = ev.get("waiting") or []
    if not waiting:
        return head + "; nothing is running."
    names = ", ".join(f"{w['address']} ({w['op']})" for w in waiting)
    return (f"{head}; waiting for {len(waiting)} running step(s) to finish and be recorded: {names}. "
            "Interrupt again to stop waiting.")


def finish(console, ws, result, as_json: bool, the_plan) -> None:
    """The apply summary (and outputs); exits 1 when a step failed."""
    from infraplan.cli.views.plan import fmt

    summary = result.summary()
    if as_json:
        from infraplan.util.redact import redact_outputs

        outputs = {} if the_plan.destroy else redact_outputs(
            ws.compute_outputs(ws.store()), [n for n, o in ws.config.outputs.items() if o.sensitive])
        emit_json({"type": "summary", **summary, "outputs": outputs}, indent=None)
    else:
        c = console
        style = "green" if result.ok else "red"
        verb = "Destroy" if the_plan.destroy else "Apply"
        c.print(f"\n[{style}]{verb} {'complete' if result.ok else 'finished with errors'}! "
                f"Resources: {summary['added']} added, {summary['changed']} changed, {summary['destroyed']} destroyed. "
                f"Steps: {summary['done']} done, {summary['failed']} failed, {summary['skipped']} skipped.[/{style}]",
                markup=True)
        for nid, reason in result.failed.items():
            c.print(f"  failed  {nid}: {reason}")
        for nid in result.skipped:
            c.print(f"  skipped {nid}")
        if not the_plan.destroy and result.ok:
            outs = ws.store().outputs()
            if outs:
                c.print("\nOutputs:")
                sens = ws.config.outputs
                for k, v in sorted(outs.items()):
                    shown = "(sensitive value)" if k in sens and sens[k].sensitive else fmt(v)
                    c.print(f"  {k} = {shown}")
    if not result.ok:
        sys.exit(1)
