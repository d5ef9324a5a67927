"""Rego policies, evaluated in-process with regopy against the plan's Terraform-shaped JSON.

Policies are the ``*.rego`` files in ``policies/`` beside the config (and any given with
``--policy``). Each declares rules in ``package infraplan``: ``deny`` (a set of messages:
any one stops the plan) and ``warn`` (shown with the plan's warnings). Their input is
`infraplan.plan.terraform_json.terraform_plan`: ``resource_changes`` with Terraform's
actions, ``configuration``, ``variables``, and infraplan's extensions (cost, fit, rollout,
risks) under ``infraplan`` keys. ``infraplan policy test`` runs the case files in
``tests/`` beside the modules (an input and the messages expected) and the modules' own
``test_*`` rules. regopy runs in a child process (`infraplan.policy.evaluator`), bounded
in time, so a policy that crashes the interpreter or never ends is an error, not a crash.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from infraplan.diagnostics import Diagnostic, Location

PACKAGE = "infraplan"
POLICY_DIR = "policies"
_ERROR = re.compile(r"\(error \d+:(?P<file>[^|]*)\|(?P<offset>\d+)\|\d+\s*\(errormsg \d+:(?P<msg>[^)\n]*)")
_PACKAGE = re.compile(r"^\s*package\s+([\w.]+)", re.M)
_TEST_RULE = re.compile(r"^\s*(test_\w+)\b", re.M)


class PolicyError(Exception):
    """A policy that does not parse or evaluate; `diagnostics` are located in its file."""

    def __init__(self, diagnostics: list[Diagnostic]):
        super().__init__(diagnostics[0].one_line() if diagnostics else "policy error")
        self.diagnostics = diagnostics


@dataclass(frozen=True)
class Module:
    """One Rego file."""

    path: Path
    text: str

    @property
    def package(self) -> str:
        m = _PACKAGE.search(self.text)
        return m.group(1) if m else ""

    def location(self, offset: int) -> Location:
        before = self.text.encode()[:offset].decode(errors="replace")
        line = before.count("\n") + 1
        return Location(str(self.path), line, offset - (before.rfind("\n") + 1) + 1 if "\n" in before else offset + 1)


@dataclass(frozen=True)
class TestResult:
    module: Path
    name: str
    passed: bool
    detail: str = ""


def find_modules(config_root: Path, extra: list[str] | tuple[str, ...] = ()) -> list[Module]:
    """The policies of a config: ``policies/*.rego`` beside it, then each `extra` file or folder."""
    paths: list[Path] = []
    default = config_root / POLICY_DIR
    for p in [default, *(Path(e) for e in extra)]:
        if p.is_dir():
            paths += sorted(p.glob("*.rego"))
        elif p.exists():
            paths.append(p)
        elif p is not default:
            raise PolicyError([Diagnostic(f"policy {p} does not exist", path="--policy")])
    out, seen = [], set()
    for p in paths:
        if p.resolve() in seen:
            continue
        seen.add(p.resolve())
        try:
            out.append(Module(p, p.read_text(encoding="utf-8")))
        except (OSError, UnicodeDecodeError) as exc:
            raise PolicyError([Diagnostic(f"cannot read policy {p}: {exc}")]) from None
    return out


#: longest a policy evaluation may take (a policy that never ends is refused, not waited for)
TIMEOUT_S = 30.0


def _errors(text: str, modules: list[Module]) -> list[Diagnostic]:
    by_name = {str(m.path): m for m in modules}
    out = []
    for m in _ERROR.finditer(text):
        module = by_name.get(m.group("file"))
        loc = module.location(int(m.group("offset"))) if module else None
        out.append(Diagnostic(f"policy: {m.group('msg').strip()}", location=loc))
    first = text.strip().splitlines()[0] if text.strip() else "error"
    return out or [Diagnostic(f"policy: {first}")]


def _run(modules: list[Module], queries: list[str], document: Any = None) -> list[Any]:
    """Answers to `queries` from a child process running regopy (see `infraplan.policy.evaluator`)."""
    request = json.dumps({"modules": [[str(m.path), m.text] for m in modules], "input": document,
                          "queries": queries}, default=str)
    try:
        proc = subprocess.run([sys.executable, "-m", "infraplan.policy.evaluator"], input=request,
                              capture_output=True, text=True, timeout=TIMEOUT_S)
    except subprocess.TimeoutExpired:
        raise PolicyError([Diagnostic(f"policy evaluation did not end within {TIMEOUT_S:g}s: "
                                      f"{', '.join(str(m.path) for m in modules)}")]) from None
    if proc.returncode != 0 or not proc.stdout.strip():
        how = f"signal {-proc.returncode}" if proc.returncode < 0 else f"exit code {proc.returncode}"
        raise PolicyError([Diagnostic(f"the Rego interpreter (regopy) crashed ({how}) on "
                                      f"{', '.join(str(m.path) for m in modules)}; a rule using `with` is a "
                                      "known trigger: give test inputs as case files (policies/tests/*.json)")])
    answer = json.loads(proc.stdout)
    if "error" in answer:
        raise PolicyError(_errors(answer["error"], modules))
    return answer["results"]


def check(modules: list[Module]) -> None:
    """Parse every module (a located PolicyError for the first that does not)."""
    if modules:
        _run(modules, [f"data.{PACKAGE}"])


def evaluate(modules: list[Module], document: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The `deny` and `warn` messages of `package infraplan` for `document` (sorted)."""
    if not modules:
        return [], []
    deny, warn = _run(modules, [f"data.{PACKAGE}.deny", f"data.{PACKAGE}.warn"], document)
    return _messages(deny), _messages(warn)


def _messages(value: Any) -> list[str]:
    if value is None:
        return []
    items = value if isinstance(value, list) else [value]
    return sorted(v if isinstance(v, str) else json.dumps(v) for v in items)


def run_tests(modules: list[Module], cases: list[Case] = ()) -> list[TestResult]:
    """Every case file (its input, the `deny` and `warn` messages expected) and every
    ``test_*`` rule of every module (as OPA's `opa test` runs them: passed when true)."""
    if not modules:
        return []
    out = []
    for case in cases:
        try:
            deny, warn = evaluate(modules, case.input)
        except PolicyError as exc:
            out.append(TestResult(case.path, case.name, False, exc.diagnostics[0].summary))
            continue
        problems = [f"{rule}: expected {json.dumps(sorted(want))}, got {json.dumps(got)}"
                    for rule, want, got in (("deny", case.deny, deny), ("warn", case.warn, warn))
                    if want is not None and sorted(want) != got]
        out.append(TestResult(case.path, case.name, not problems, "; ".join(problems)))
    for m in modules:
        for name in dict.fromkeys(_TEST_RULE.findall(m.text)):
            try:
                (value,) = _run(modules, [f"data.{m.package}.{name}"])
            except PolicyError as exc:
                out.append(TestResult(m.path, name, False, exc.diagnostics[0].summary))
                continue
            out.append(TestResult(m.path, name, value is True, "" if value is True else f"got {json.dumps(value)}"))
    return out


@dataclass(frozen=True)
class Case:
    """A policy test case file: an input plan and the messages the policies must give for it."""

    path: Path
    name: str
    input: dict[str, Any]
    deny: list[str] | None
    warn: list[str] | None


def find_cases(modules: list[Module]) -> list[Case]:
    """The case files in a ``tests/`` folder beside each module (``*.json``: {"input", "deny", "warn"})."""
    out = []
    for folder in dict.fromkeys(m.path.parent / "tests" for m in modules):
        for p in sorted(folder.glob("*.json")):
            try:
                data = json.loads(p.read_text(encoding="utf-8"))
            except (OSError, ValueError) as exc:
                raise PolicyError([Diagnostic(f"policy case {p}: {exc}")]) from None
            if not isinstance(data, dict) or not isinstance(data.get("input"), dict):
                raise PolicyError([Diagnostic(f"policy case {p}: needs an object with an \"input\" object")])
            out.append(Case(p, str(data.get("name") or p.stem), data["input"], data.get("deny"), data.get("warn")))
    return out
