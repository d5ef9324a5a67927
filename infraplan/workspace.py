"""One config directory and its state: the library entry points the CLI calls.

    ws = Workspace("examples/quickstart")
    plan = ws.plan()
    result = ws.apply(plan)
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from infraplan.errors import ApplyError, StalePlanError
from infraplan.util.identity import who
from infraplan.util.time import utc_now
from infraplan.plan.model import Plan
from infraplan.plan.planner import PlanOptions, make_plan
from infraplan.providers.registry import ProviderSet
from infraplan.models.actions import Action
from infraplan.models.kinds import ResourceKind

if TYPE_CHECKING:  # the state package is imported when a state is first opened
    from infraplan.state.api import StateLocation, Store

STATE_FILE = "infraplan.db"


def default_state_path(config_path: Path) -> Path:
    base = config_path if config_path.is_dir() else config_path.parent
    return base / STATE_FILE


def locate_state(config_path: Path, state: str | Path | StateLocation | None = None) -> StateLocation:
    """The state a config uses: `state` if given, else its `backend:` block, else infraplan.db beside it."""
    from infraplan.config.backend import read_backend
    from infraplan.state.api import StateLocation

    if state:
        return StateLocation.parse(state)
    backend = read_backend(config_path)
    if backend is not None:
        base = config_path if config_path.is_dir() else config_path.parent
        return StateLocation.parse(backend.target(base))
    return StateLocation.parse(default_state_path(config_path))


class Workspace:
    """A config path, its variables and its state (a file, or a PostgreSQL database)."""

    def __init__(self, config_path: str | Path = ".", *, state_path: str | Path | StateLocation | None = None,
                 var_args: Sequence[str] = (), var_files: Sequence[str] = (),
                 env: Mapping[str, str] | None = None, notify: Callable[[str], None] | None = None,
                 config_origin: str | None = None):
        self.config_path = Path(config_path)
        #: where the config files really come from when `config_path` holds copies (rollback)
        self.config_origin = config_origin
        #: where one-line notices go (a broken stale lock); the CLI prints them on stderr
        self.notify = notify or (lambda message: None)
        #: where the state is: `state_path` if given, else the config's `backend:` block, else the default file
        self.state = locate_state(self.config_path, state_path)
        self.var_args = list(var_args)
        self.var_files = list(var_files)
        self.env = dict(os.environ if env is None else env)
        self.policy_paths: list[str] = []  # --policy files or folders, beside policies/ (infraplan.policy.rego)
        self.accept_lineage = False  # --accept-lineage: another state in this state's place is intended
        self._config = None

    # -- config and state ------------------------------------------------------
    @property
    def state_path(self) -> Path:
        """The state file (an SQLite state only; see `state`)."""
        return self.state.path

    @property
    def project_dir(self) -> Path:
        return self.config_path if self.config_path.is_dir() else self.config_path.parent

    @property
    def config(self):
        if self._config is None:
            from infraplan.config import load_config

            self._config = load_config(self.config_path, var_args=self.var_args,
                                       var_files=self.var_files, env=self.env, origin=self.config_origin)
        return self._config

    def store(self) -> Store:
        """The state, opened for writing; the config's secrets are sealed in it (util.secrets)."""
        from infraplan.state.backends import open_store

        return open_store(self.state, secrets=self.config.sensitive_values)

    def readonly_store(self, *, secrets: bool = False) -> Store:
        """The state, for reading only (a missing state reads as empty and is not created)."""
        from infraplan.state.backends import open_store

        return open_store(self.state, readonly=True, secrets=self.config.sensitive_values if secrets else ())

    def snapshot(self):
        """A consistent read of the state; a missing state file reads as empty (and is not created)."""
        with self.readonly_store(secrets=True) as store:
            return store.snapshot()

    def providers(self, config=None) -> ProviderSet:
        blocks = config.providers if config is not None else {}
        project = self.project_dir.resolve()
        with self.readonly_store() as ro:
            lineage = ro.lineage or ""
        return ProviderSet(blocks, project_dir=project, state_path=self.state.runtime_id(project).resolve(),
                           lineage=lineage)

    # -- plan ------------------------------------------------------------------
    def plan(self, options: PlanOptions | None = None) -> Plan:
        """Refresh (unless told not to) and plan. Takes no lock and writes nothing."""
        config = self.config
        snapshot = self.snapshot()
        self._check_lineage(snapshot.lineage)
        providers = self.providers(config)
        try:
            plan = make_plan(config, snapshot, providers, options)
        finally:
            providers.close()
        if not (options and options.force):
            self._refuse_rolled_back(plan)
        plan.secrets = frozenset(config.sensitive_values)
        plan.desired_config = self._desired_snapshot(plan)
        self._judge(plan)
        from infraplan.policy.access import AccessAction

        self.authorize(AccessAction.PLAN, [c.address for c in plan.changes if c.action != Action.NOOP])
        return plan

    def access_policy(self):
        """The access policy beside the config (else beside the state), or None."""
        from infraplan.errors import ConfigError
        from infraplan.policy.access import AccessError, find_policy

        try:
            return find_policy(*self._policy_folders())
        except AccessError as exc:
            raise ConfigError(exc.diagnostics) from None

    def approval_requirements(self, plan: Plan, *, author: str | None = None, digest: str | None = None):
        """The approval rules that cover `plan`, each with the approvals a saved plan has (by its digest)."""
        from infraplan.policy.approvals import count_approvals, requirements
        from infraplan.state.backends import open_store

        policy = self.access_policy()
        reqs = requirements(policy, plan.to_json())
        if not reqs or digest is None:
            return reqs
        with open_store(self.state, readonly=True) as store:
            log = store.audit_log()
        return count_approvals(reqs, policy, log, digest, author or "")

    def authorize(self, action: str, addresses: list[str]) -> None:
        """The access policy's word on `action` (an `AccessAction` value) over `addresses`
        (`infraplan.policy.access`): raises AccessDenied, audited, before any lock is taken."""
        from infraplan.policy.access import AccessAction, enforce

        enforce(AccessAction(action), addresses, actor=who(), folders=self._policy_folders(), state_path=self.state)

    def _policy_folders(self) -> list[Path]:
        """Where the access policy is looked for: beside the config, else beside a state file."""
        return [self.project_dir, *([self.state.path.parent] if self.state.is_file else [])]

    # -- the state this config was applied to ----------------------------------
    def _lineages_file(self) -> Path:
        root = self.config_path if self.config_path.is_dir() else self.config_path.parent
        return root / ".infraplan" / "lineages.json"

    def _remembered(self) -> dict[str, str]:
        import json

        try:
            data = json.loads(self._lineages_file().read_text())
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def _check_lineage(self, lineage: str | None) -> None:
        """Another state swapped in under this state's path is refused (unless `accept_lineage`)."""
        from infraplan.errors import StateError

        remembered = self._remembered().get(self._lineage_key())
        if not (remembered and lineage and lineage != remembered):
            return
        if self.accept_lineage:  # said on purpose: this lineage is the one remembered from now on
            self._remember_lineage(lineage)
            return
        raise StateError(
            f"the state at {self.state} has lineage {lineage[:8]}, but this config was last applied to "
            f"lineage {remembered[:8]} there ({self._lineages_file()}): another state was put in its place; "
            "if that is intended, run again with --accept-lineage")

    def _lineage_key(self) -> str:
        """The state as lineages.json names it: the file's absolute path, or the URL without its password."""
        return str(self.state.path.resolve()) if self.state.is_file else self.state.without_password

    def _remember_lineage(self, lineage: str | None) -> None:
        import json

        from infraplan.util.files import write_private

        if not lineage:
            return
        data = self._remembered()
        key = self._lineage_key()
        if data.get(key) == lineage:
            return
        data[key] = lineage
        try:
            write_private(self._lineages_file(), json.dumps(data, indent=1, sort_keys=True))
        except OSError:
            pass  # a read-only config folder: the check is a safety net, not a requirement

    def _judge(self, plan: Plan) -> None:
        """The config's Rego policies on the plan: `warn` joins its warnings, any `deny` stops it."""
        from infraplan.diagnostics import Diagnostic
        from infraplan.errors import PlanError
        from infraplan.policy.rego import PolicyError, evaluate, find_modules

        try:
            modules = find_modules(Path(str(self.config.root)), self.policy_paths)
            if not modules:
                return
            from infraplan.plan.terraform_json import terraform_plan

            denies, warns = evaluate(modules, terraform_plan(plan))
        except PolicyError as exc:
            raise PlanError(exc.diagnostics[0].one_line(), exc.diagnostics) from None
        names = ", ".join(str(m.path) for m in modules)
        for msg in warns:
            plan.diagnostics.append(Diagnostic(f"policy: {msg}", severity="warning", path=names).to_json())
        if denies:
            diags = [Diagnostic(f"policy denies the plan: {msg}", path=names) for msg in denies]
            raise PlanError(diags[0].one_line(), diags)

    def _desired_snapshot(self, plan: Plan) -> dict[str, Any]:
        from infraplan.util.redact import redact

        body = {"variables": {k: v for k, v in self.config.variables.items()}}
        return redact(body, plan.secrets)

    def _refuse_rolled_back(self, plan: Plan) -> None:
        """A version whose rollout was rolled back is not rolled out again by a plain apply."""
        from infraplan.errors import PlanError
        from infraplan.rollout import fingerprint

        replaced = {}
        for c in plan.changes:
            if c.kind == ResourceKind.REPLICA and (c.action == Action.REPLACE or c.rolls_out) and c.fleet and c.after \
                    and c.fleet not in replaced:
                replaced[c.fleet] = c.after
        if not replaced:
            return
        with self.readonly_store() as store:
            hits = {fleet: store.rolled_back(fleet, fingerprint(after)) for fleet, after in replaced.items()}
        for fleet, hit in hits.items():
            if hit:
                raise PlanError(
                    f"{fleet}: this version was rolled back at {hit['at']} ({hit['reason']}); change the "
                    "configuration, or pass --force to roll it out again")

    def history_snapshot(self, plan: Plan, *, serial: int | None = None) -> dict[str, Any]:
        """What `infraplan rollback` needs to apply this config again: the config files as
        they were and the variable values (sensitive ones left out: give them again)."""
        config = self.config
        sensitive = {n for n, b in config.variable_blocks.items() if b.sensitive}
        from infraplan.util.redact import REDACTED

        files, masked = {}, []
        for f in config.files:
            try:
                text = f.read_text()
            except OSError:
                continue
            for secret in sorted(config.sensitive_values, key=len, reverse=True):
                if len(secret) >= 4 and secret in text:  # a key written into the file is not kept either
                    text = text.replace(secret, REDACTED)
                    masked.append(f.name)
            files[f.name] = text
        return {
            "files": files,
            "masked_files": sorted(set(masked)),
            "variables": {k: v for k, v in config.variables.items() if k not in sensitive},
            "sensitive_variables": sorted(sensitive),
            "serial": serial,
            "destroy": plan.destroy,
        }

    def check_saved_plan(self, saved: Plan, options: PlanOptions) -> Plan:
        """Re-plan and refuse if anything differs from the saved plan (state, config or world)."""
        snap = self.snapshot()
        if saved.lineage and snap.lineage and saved.lineage != snap.lineage:
            raise StalePlanError(
                f"the saved plan belongs to another state (lineage {saved.lineage[:8]}, state has {snap.lineage[:8]})")
        if saved.serial != snap.serial:
            raise StalePlanError(
                f"the saved plan is stale: it was made at state serial {saved.serial}, the state is now at "
                f"serial {snap.serial}; run `infraplan plan` again")
        if saved.config_digest != self.config.digest:
            raise StalePlanError(
                "the saved plan is stale: the configuration or variable values changed since it was made; "
                "run `infraplan plan` again")
        fresh = self.plan(options)
        if fresh.digest() != saved.digest():
            raise StalePlanError(
                "the saved plan is stale: refreshing found the real fleet changed since it was made; "
                "run `infraplan plan` again")
        return fresh

    # -- apply -----------------------------------------------------------------
    def apply(self, plan: Plan, *, parallelism: int = 10, on_event: Callable[[dict], None] | None = None,
              operation: str | None = None, plan_is_fresh: bool = True):
        """Carry out `plan` under the state lock; writes history, audit and outputs."""
        from infraplan.apply.executor import Executor
        from infraplan.state.lock import RUNNING

        from infraplan.policy.access import AccessAction

        op = operation or ("destroy" if plan.destroy else "apply")
        action = {"destroy": AccessAction.DESTROY, "rollback": AccessAction.ROLLBACK}.get(op, AccessAction.APPLY)
        self.authorize(action, [c.address for c in plan.changes if c.action != Action.NOOP])
        config = self.config
        started = utc_now()
        t0 = time.monotonic()
        with self.store() as store, store.lock(op, who=who(), on_broken=self._notice_broken):
            if store.serial != plan.serial or (plan.lineage and store.lineage != plan.lineage):
                raise StalePlanError(
                    f"the state changed while planning (serial {plan.serial} -> {store.serial}); run the command again")
            if store.serial and any(c.action != Action.NOOP for c in plan.changes):
                store.write_backup()  # the state before this run (infraplan.db.backup; SQLite only), for `state check`
            plan_hash = plan.digest()
            snapshot = self.history_snapshot(plan)
            # the row is there from the start: a run killed before its end is closed as
            # "interrupted" by the next run that breaks its lock
            history_id = store.add_history(operation=op, plan_hash=plan_hash, summary=plan.summary(), who=who(),
                                           started_at=started, finished_at=None, status=RUNNING,
                                           config_digest=plan.config_digest, desired_config=snapshot)
            try:
                providers = self.providers(config)
                try:
                    alert_urls = [a.url for a in config.alerts.values() if "rollout" in a.events]
                    executor = Executor(store, providers, parallelism=parallelism, on_event=on_event,
                                        who=who(), alert_urls=alert_urls,
                                        resolve=self._resolver(store), run_rollout=run_rollout)
                    result = executor.run(plan)
                finally:
                    providers.close()
            except BaseException as exc:
                status = "interrupted" if isinstance(exc, KeyboardInterrupt) else "failed"
                store.finish_history(history_id, status=status, summary=plan.summary(), finished_at=utc_now())
                raise
            outputs = self.compute_outputs(store) if not plan.destroy else {}
            store.set_outputs(outputs, sensitive={n for n, o in config.outputs.items() if o.sensitive})
            status = "ok" if result.ok else ("interrupted" if result.interrupted else "failed")
            summary = dict(plan.summary(), **result.summary())
            # what each fleet costs, for `infraplan status`'s measured $ per 1M output tokens
            summary["hourly_by_fleet"] = {c.address: c.cost["hourly"] for c in plan.changes
                                          if c.kind == ResourceKind.FLEET and c.cost and c.cost.get("hourly") is not None}
            with store.batch():
                store.finish_history(history_id, status=status, summary=summary, finished_at=utc_now(),
                                     desired_config=dict(snapshot, serial=store.serial))
                store.audit(op, details={"status": status, "summary": summary, "plan_hash": plan_hash,
                                         "failed": result.failed, "seconds": round(time.monotonic() - t0, 3)},
                            who=who())
            self._remember_lineage(store.lineage)
        if result.interrupted:
            how = "stopped by SIGTERM" if result.interrupted_by == "SIGTERM" else "interrupted"
            if result.abandoned:
                raise ApplyError(
                    f"apply {how}: stopped waiting for {len(result.abandoned)} running step(s) "
                    f"({', '.join(result.abandoned)}); what finished was recorded, and the next plan reconciles "
                    "the rest with what really runs", abandoned=True)
            raise ApplyError(f"apply {how}: in-flight steps finished and were recorded; "
                             "run `infraplan plan` to see what is left")
        return result

    def _notice_broken(self, info) -> None:
        from infraplan.state.lock import broken_notice

        self.notify(broken_notice(info))

    def current_lock(self):
        """The state lock held now, if any (reads only; a missing state file has none)."""
        with self.readonly_store() as store:
            return store.current_lock()

    def refuse_if_locked(self) -> None:
        """Before planning a change: LockError at once when a live run holds the lock; a stale
        lock (its holder gone from this host) is broken here, with a notice."""
        from infraplan.errors import LockError
        from infraplan.state.lock import held_message

        info = self.current_lock()
        if info is None:
            return
        if not info.holder_gone():
            raise LockError(held_message(info), holder=info.as_dict())
        store = self.store()
        try:
            broken = store.break_stale_lock(who=who())
        finally:
            store.close()
        if broken is not None:
            self._notice_broken(broken)

    def _resolver(self, store):
        from infraplan.config.expressions import UNKNOWN, has_deferred, resolve_deferred

        lookup = self._state_lookup(store, UNKNOWN)

        def resolve(attrs: dict, unknown: list[str]) -> dict:
            if not unknown:
                return attrs
            return {k: (resolve_deferred(v, lookup) if k in unknown and has_deferred(v) else v)
                    for k, v in attrs.items()}

        return resolve

    @staticmethod
    def _state_lookup(store, unknown):
        from infraplan.plan.planner import ref_value

        def attrs_of(addr, _attr):
            rec = store.get(addr)
            return rec.attributes if rec else None

        return lambda ref: ref_value(ref, attrs_of, unknown)

    def compute_outputs(self, store) -> dict[str, Any]:
        from infraplan.config.expressions import UNKNOWN, has_deferred, resolve_deferred

        lookup = self._state_lookup(store, UNKNOWN)
        out = {}
        for name, o in self.config.outputs.items():
            v = resolve_deferred(o.value, lookup)
            out[name] = None if v is UNKNOWN else v
        return out


def run_rollout(**request: Any):
    """The executor's rollout runner: one fleet's replacement through its strategy."""
    from infraplan.rollout import RolloutContext
    from infraplan.rollout.strategies import run_rollout as run

    return run(RolloutContext(**request))


def validate(config_path: str | Path, *, var_args: Sequence[str] = (), var_files: Sequence[str] = (),
             env: Mapping[str, str] | None = None):
    """`(config, diagnostics)` for `infraplan validate`: the config checks, then every provider
    check `plan` makes that needs no network (names, settings); `config` is None on errors."""
    from infraplan.config import validate_config
    from infraplan.plan.provider_checks import check_providers

    config, diags = validate_config(config_path, var_args=var_args, var_files=var_files, env=env)
    if config is None:
        return None, diags
    diags = [*diags, *check_providers(config)]
    from infraplan.policy.rego import PolicyError, check, find_modules

    try:
        check(find_modules(Path(str(config.root))))  # a policy that does not parse: located
    except PolicyError as exc:
        diags = [*diags, *exc.diagnostics]
    if any(d.severity == "error" for d in diags):
        return None, diags
    return config, diags


class StateOnlyWorkspace(Workspace):
    """A state file without its config: enough to destroy everything the state holds
    (`infraplan destroy --state-only`). Each state row names its provider (block name and
    type); a provider block's settings are not in state, so providers run with defaults,
    and the plan says so where the last stored config gave that block settings."""

    def __init__(self, state_path: str | Path | StateLocation, *, notify: Callable[[str], None] | None = None):
        from infraplan.state.api import StateLocation

        location = StateLocation.parse(state_path)
        super().__init__(location.path.parent if location.is_file else Path("."), state_path=location, env={},
                         notify=notify)
        #: (provider block name, type) whose settings were (or may have been) set, and are unknown here
        self.unknown_settings: list[tuple[str, str]] = []
        self.stored: _StoredConfig | None = None

    @property
    def config(self):
        if self._config is None:
            self._config = self._config_from_state()
        return self._config

    def _config_from_state(self):
        from infraplan.config import Config
        from infraplan.models.config import ProviderBlock

        with self.readonly_store() as store:
            resources, history = store.snapshot().resources, store.history()
        types: dict[str, str] = {}
        for r in resources:  # replica and router rows carry their provider's type; fleet rows only its name
            ptype = (r.attributes or {}).get("provider_type")
            if r.provider and (ptype or r.provider not in types):
                types[r.provider] = ptype or r.provider
        self.stored = _stored_config(history)
        for key, ptype in sorted(types.items()):
            # no stored config to tell: a block of another name than its type surely existed
            if (self.stored.provider_settings.get(key) if self.stored is not None else key != ptype):
                self.unknown_settings.append((key, ptype))
        return Config(root=self.config_path, files=[], variables={}, sensitive_values=set(), sensitive_paths=set(),
                      locals={}, providers={k: ProviderBlock(type=t) for k, t in types.items()}, models={},
                      fleets={}, outputs={}, digest="")

    def plan(self, options: PlanOptions | None = None) -> Plan:
        """The destroy plan of everything in state (`options.destroy` is implied)."""
        from dataclasses import replace

        from infraplan.diagnostics import Diagnostic

        from infraplan.errors import PlanError

        plan = super().plan(replace(options or PlanOptions(), destroy=True))
        protected = self.stored.protected if self.stored is not None else set()
        for c in plan.changes:
            fleet = c.address if c.kind == ResourceKind.FLEET else c.fleet
            if c.action == Action.DELETE and fleet in protected:
                raise PlanError(
                    f"{c.address}: {fleet} has lifecycle.prevent_destroy set in the last applied config "
                    f"(history #{self.stored.history_id}), so --state-only does not destroy it; destroy "
                    f"with that config (without prevent_destroy), or forget it: infraplan state rm {c.address}")
        plan.diagnostics.extend(
            Diagnostic(f"provider {key} ({ptype}): provider settings are not in state; defaults used",
                       severity="warning", path=f"provider.{key}").to_json()
            for key, ptype in self.unknown_settings)
        return plan


@dataclass
class _StoredConfig:
    """What `destroy --state-only` reads from the newest config stored in the history."""

    history_id: int
    #: provider block name -> whether the block set any settings
    provider_settings: dict[str, bool] = field(default_factory=dict)
    #: fleets (``fleet.NAME``) whose lifecycle.prevent_destroy was not plainly false
    protected: set[str] = field(default_factory=set)


def _stored_config(history) -> _StoredConfig | None:
    """The newest config stored in the history, read as YAML (its variables are not needed, and
    a value written as an expression counts as set); None when none is stored."""
    from infraplan.config import load_yaml

    for entry in history:
        files = (entry.desired_config or {}).get("files")
        if not files:
            continue
        out = _StoredConfig(entry.id)
        for name, text in files.items():
            value, _pos, _diags = load_yaml(text, name)
            if not isinstance(value, dict):
                continue
            for key, block in _mapping(value.get("provider")).items():
                out.provider_settings[str(key)] = bool(_mapping(block).get("settings"))
            for key, block in _mapping(value.get("fleet")).items():
                if _mapping(_mapping(block).get("lifecycle")).get("prevent_destroy") not in (None, False, "false"):
                    out.protected.add(f"fleet.{key}")
        return out
    return None


def _mapping(value: Any) -> dict:
    return value if isinstance(value, dict) else {}
