"""The `local` provider: every fleet replica is a server process on 127.0.0.1.

Routers (calls for kind ``router``) are smg processes, handled by
`infraplan_providers.local.router`.

Servers are started detached so they outlive the CLI, recorded in state with
their pid, start time and instance id, refreshed by checking the process and
probing `/ready` (SGLang 0.5.23: at once, no generation; `/health` on servers without
it), and stopped with SIGTERM then SIGKILL.
"""

from __future__ import annotations

import functools
import importlib.util
import ipaddress
import json
import os
import re
import ssl
import sys
import uuid
from pathlib import Path
from typing import Any

import httpx
import psutil
from pydantic import Field, field_validator

from infraplan.diagnostics import Diagnostic, short_repr
from infraplan.errors import ProviderError, ResourceNotFound
from infraplan.models.base import StrictModel
from infraplan.providers.contract import (Instance, ListsInstances, Provider, ProviderContext, ProviderPlan, ReadResult,
                                          ResourceKind)
from infraplan_providers.local import process
from infraplan_providers.local import router as smg_router
from infraplan.serving.sglang_args import DEFAULT_VERSION, build_launch_argv, model_path_from_source, secret_args
from infraplan.util.files import write_private
from infraplan.serving.sglang_client import REDACTED, SGLangClient

#: Attribute changes that need a new server process.
REPLACE_ON = (
    "engine",
    "model_source",
    "model_revision",
    "served_name",
    "args",
    "sglang_version",
    "sim",
    "env",
    "accelerators",
    "port",
)

#: Environment variable naming the state file a server was started for (orphan discovery).
STATE_ENV = "INFRAPLAN_STATE"

SGLANG_MISSING = "engine sglang needs SGLang installed: pip install 'infraplan[sglang]'"


class LocalSettings(StrictModel):
    """Settings of a `local` provider block."""

    host: str = Field("127.0.0.1", description="Loopback address servers listen on.")
    # below Linux's ephemeral range (32768-60999): an outbound connection's source port cannot take a
    # server's port between choosing it and binding it
    port_range: str = Field("20000-29999", description="Ports chosen from when a fleet sets none, `LOW-HIGH`.")
    ready_timeout_s: float = Field(60.0, gt=0, description="Seconds a new server has to answer /ready (or /health).")
    stop_timeout_s: float = Field(5.0, ge=0, description="Seconds between SIGTERM and SIGKILL.")
    python: str = Field(default_factory=lambda: sys.executable, description="Interpreter that runs the servers.")

    @field_validator("host")
    @classmethod
    def _loopback(cls, v: str) -> str:
        try:
            ok = ipaddress.ip_address(v).is_loopback
        except ValueError:
            ok = False
        if not ok:
            raise ValueError(f"must be a loopback IP address such as 127.0.0.1, got {short_repr(v)}")
        return v

    @field_validator("port_range")
    @classmethod
    def _range(cls, v: str) -> str:
        process.parse_port_range(v)
        return v

    @property
    def ports(self) -> tuple[int, int]:
        return process.parse_port_range(self.port_range)


def _sglang_installed() -> bool:
    try:
        return importlib.util.find_spec("sglang") is not None
    except (ImportError, ValueError):
        return False


def _model_path(source: str | None) -> str | None:
    """The path a server reports for `source` (`hf://org/name` -> `org/name`)."""
    if source is None:
        return None
    try:
        return model_path_from_source(source).rstrip("/")
    except ProviderError:
        return source


def _same_model(source: str | None, reported: str | None) -> bool:
    if reported is None:
        return True
    return reported.rstrip("/") in {source, _model_path(source)}


def _safe_name(address: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", address).strip("_") or "replica"


class LocalProvider(ListsInstances, Provider):
    """Runs each replica as a detached local process (engine `sim` or `sglang`)."""

    name = "local"
    updatable = frozenset({"labels"})
    computed = frozenset({"instance_id", "host", "endpoint", "pid", "started_at", "log_path"})
    settings_model = LocalSettings

    def __init__(self, context: ProviderContext):
        super().__init__(context)
        self._settings: LocalSettings | None = None

    # -- settings ----------------------------------------------------------
    @property
    def settings(self) -> LocalSettings:
        """The parsed settings; ProviderError when they are invalid."""
        if self._settings is None:
            self._settings = self._parse_settings(LocalSettings)
        return self._settings

    def _block_name(self) -> str:
        return self.context.name or self.name

    # -- plan --------------------------------------------------------------
    def plan(self, kind: ResourceKind, prior: dict[str, Any] | None, desired: dict[str, Any]) -> ProviderPlan:
        if kind == ResourceKind.ROUTER:
            return smg_router.plan(prior, desired)
        attrs = {k: v for k, v in desired.items() if k not in self.computed}
        replace: list[str] = []
        if prior is not None:
            for key in REPLACE_ON:
                if key == "port":
                    want = desired.get("port")
                    if want is not None and want != prior.get("port"):
                        replace.append("port")
                elif prior.get(key) != desired.get(key):
                    replace.append(key)
            if not replace:
                # Same process stays: it keeps its identity and its chosen port.
                for key in self.computed:
                    if key in prior:
                        attrs[key] = prior[key]
                if desired.get("port") is None:
                    attrs["port"] = prior.get("port")
        fixed_port = desired.get("port") is not None
        return ProviderPlan(
            attributes=attrs,
            requires_replace=replace,
            diagnostics=self._plan_diagnostics(desired),
            create_before_destroy_ok=not fixed_port,
        )

    def _plan_diagnostics(self, desired: dict[str, Any]) -> list[Diagnostic]:
        fleet = desired.get("fleet") or "fleet"
        diags: list[Diagnostic] = []
        if desired.get("engine") == "sglang" and not _sglang_installed():
            diags.append(Diagnostic(summary=SGLANG_MISSING, path=f"{fleet}.engine.type"))
        # the simulator uses no GPU: its accelerators only feed the fit check and cost, as meant
        if desired.get("accelerators") and desired.get("engine") != "sim":
            diags.append(
                Diagnostic(
                    summary=f"accelerators {desired['accelerators']} are not allocated by the local provider",
                    severity="warning",
                    path=f"{fleet}.accelerators",
                    detail="the server sees every GPU of this machine; the accelerators count for the fit check "
                           "and cost only",
                )
            )
        for key in ("region", "cloud"):
            if desired.get(key):
                diags.append(
                    Diagnostic(
                        summary=f"{key} {desired[key]!r} is ignored by the local provider",
                        severity="warning",
                        path=f"{fleet}.{key}",
                    )
                )
        return diags

    # -- create ------------------------------------------------------------
    def prepare_create(self, kind: ResourceKind, address: str, attributes: dict[str, Any]) -> dict[str, Any]:
        s = self.settings
        if kind == ResourceKind.ROUTER:
            return smg_router.prepare_create(s, Path(self.context.runtime_dir), address, attributes)
        attrs = {k: v for k, v in attributes.items() if k not in self.computed}
        instance_id = uuid.uuid4().hex
        port = attrs.get("port")
        if port is not None:
            process.ports.claim(int(port), instance_id)
        else:
            lo, hi = s.ports
            try:
                port = process.ports.allocate(s.host, lo, hi, instance_id)
            except RuntimeError as exc:
                raise ProviderError(f"{address}: {exc}") from exc
        log_dir = Path(self.context.runtime_dir) / "logs"
        attrs.update(
            instance_id=instance_id,
            port=int(port),
            host=s.host,
            endpoint=f"http://{s.host}:{port}",
            log_path=str(log_dir / f"{_safe_name(address)}-{instance_id[:8]}.log"),
        )
        return attrs

    def create(self, kind: ResourceKind, address: str, attributes: dict[str, Any]) -> dict[str, Any]:
        s = self.settings
        if kind == ResourceKind.ROUTER:
            return smg_router.create(s, Path(self.context.runtime_dir), {STATE_ENV: self._state_id()},
                                     address, attributes)
        attrs = dict(attributes)
        if not attrs.get("instance_id") or attrs.get("port") is None or not attrs.get("log_path"):
            attrs = self.prepare_create(kind, address, attrs)
        instance_id, port = attrs["instance_id"], int(attrs["port"])
        endpoint = f"http://{s.host}:{port}"
        log_path = Path(attrs["log_path"])
        try:
            argv = self._argv(attrs, s, port, self._write_secrets(attrs))
            if not process.port_is_free(s.host, port):
                raise ProviderError(f"{address}: port {port} on {s.host} is already in use")
        except BaseException:
            process.ports.release(port, instance_id)
            self._secrets_file(instance_id).unlink(missing_ok=True)
            raise
        env = {**os.environ, **{str(k): str(v) for k, v in (attrs.get("env") or {}).items()}}
        env[process.INSTANCE_ENV] = instance_id
        env[STATE_ENV] = self._state_id()
        try:
            popen = process.spawn_detached(argv, log_path, env=env, cwd=Path(self.context.runtime_dir))
        except OSError as exc:
            process.ports.release(port, instance_id)
            raise ProviderError(f"{address}: cannot start {argv[0]}: {exc}") from exc
        try:
            outcome = process.wait_for_health(endpoint, popen, s.ready_timeout_s)
            if not outcome.ready:
                raise ProviderError(self._start_failure(address, outcome, s.ready_timeout_s, log_path))
            self._check_model(address, endpoint, attrs, log_path)
            try:
                started_at = psutil.Process(popen.pid).create_time()
            except psutil.Error as exc:
                raise ProviderError(f"{address}: server process {popen.pid} vanished after start") from exc
        except BaseException:
            process.stop_pid(popen.pid, s.stop_timeout_s)
            process.ports.release(port, instance_id)
            self._secrets_file(instance_id).unlink(missing_ok=True)
            raise
        attrs.update(pid=popen.pid, started_at=started_at, host=s.host, endpoint=endpoint)
        return attrs

    def _secrets_file(self, instance_id: str) -> Path:
        return Path(self.context.runtime_dir) / "secrets" / f"{instance_id}.yaml"

    def _write_secrets(self, attrs: dict[str, Any]) -> Path | None:
        """The server's secret args in a 0600 file it reads as `--config` (never on its command line)."""
        hidden = secret_args(attrs.get("args") or {})
        if not hidden:
            return None
        path = self._secrets_file(attrs["instance_id"])
        write_private(path, json.dumps(hidden, sort_keys=True))  # JSON is YAML, as --config reads it
        return path

    def _argv(self, attrs: dict[str, Any], s: LocalSettings, port: int, secrets_file: Path | None) -> list[str]:
        engine = attrs.get("engine") or "sim"
        source = attrs.get("model_source") or ""
        args = attrs.get("args") or {}
        hidden = secret_args(args)
        if engine == "sim":
            sim = attrs.get("sim") or {}
            argv = [
                s.python, "-m", "infraplan.serving.sim",
                "--host", s.host, "--port", str(port),
                "--model-path", source,
                *(["--revision", str(attrs["model_revision"])] if attrs.get("model_revision") else []),
                *(["--served-model-name", str(attrs["served_name"])] if attrs.get("served_name") else []),
                "--ttft-ms", str(sim.get("ttft_ms", 20.0)),
                "--tpot-ms", str(sim.get("tpot_ms", 5.0)),
                "--error-rate", str(sim.get("error_rate", 0.0)),
                "--startup-s", str(sim.get("startup_s", 0.0)),
                "--seed", str(sim.get("seed", 0)),
                "--instance-id", attrs["instance_id"],
                "--server-args-json", json.dumps({k: v for k, v in args.items() if k not in hidden}, sort_keys=True),
                *(["--config", str(secrets_file)] if secrets_file else []),
            ]  # fmt: skip
            return argv
        if engine == "sglang":
            if not _sglang_installed():
                raise ProviderError(SGLANG_MISSING)
            argv = build_launch_argv(
                model_source=source,
                revision=attrs.get("model_revision"),
                served_name=attrs.get("served_name"),
                host=s.host,
                port=port,
                args=args,
                version=attrs.get("sglang_version") or DEFAULT_VERSION,
                secrets_file=str(secrets_file) if secrets_file else None,
            )
            return [s.python, *argv[1:]]
        raise ProviderError(f"unknown engine {engine!r} (local provider runs `sim` or `sglang`)")

    @staticmethod
    def _start_failure(address: str, outcome: process.ReadyOutcome, timeout: float, log_path: Path) -> str:
        if outcome.exit_code is not None:
            why = f"server exited with code {outcome.exit_code} before /health answered"
        else:
            seen = f"last /health status {outcome.last_status}" if outcome.last_status else outcome.last_error
            why = f"server not healthy after {timeout:g}s" + (f" ({seen})" if seen else "")
        log_tail = process.tail(log_path) or "(log is empty)"
        return f"{address}: {why}; log {log_path}, last lines:\n{log_tail}"

    def _check_model(self, address: str, endpoint: str, attrs: dict[str, Any], log_path: Path) -> None:
        want_rev = attrs.get("model_revision")
        with _client(endpoint, attrs, timeout=5.0) as client:
            try:
                info = client.model_info()
            except ProviderError as exc:
                raise ProviderError(f"{address}: /model_info failed ({exc}); log {log_path}") from exc
            got_rev = info.get("revision")
            if want_rev and not got_rev:  # SGLang reports the revision in /server_info only
                try:
                    got_rev = client.server_info().get("revision")
                except ResourceNotFound:
                    got_rev = None  # a server without /server_info: nothing to compare
                except ProviderError as exc:
                    raise ProviderError(f"{address}: /server_info failed ({exc}); log {log_path}") from exc
        other = info.get("instance_id")
        if other and other != attrs.get("instance_id"):
            raise ProviderError(f"{address}: {endpoint} is served by another server (instance {other})")
        reported = info.get("model_path")
        if not _same_model(attrs.get("model_source"), reported):
            raise ProviderError(
                f"{address}: server reports model {reported!r}, expected {attrs.get('model_source')!r}"
            )
        if want_rev and got_rev and got_rev != want_rev:
            raise ProviderError(f"{address}: server reports revision {got_rev!r}, expected {want_rev!r}")

    # -- read --------------------------------------------------------------
    def _find(self, attrs: dict[str, Any]) -> psutil.Process | None:
        return process.find_server(attrs.get("pid"), attrs.get("started_at"), attrs.get("instance_id"))

    def read(self, kind: ResourceKind, address: str, attributes: dict[str, Any]) -> ReadResult:
        if kind == ResourceKind.ROUTER:
            return smg_router.read(address, attributes)
        attrs, gone = process.observe(dict(attributes), "server")
        if attrs is None:
            return ReadResult(exists=False, attributes=dict(attributes), detail=gone)
        endpoint = attrs.get("endpoint") or f"http://{attrs.get('host') or self.settings.host}:{attrs.get('port')}"
        problems: list[str] = []
        with _client(endpoint, attrs, timeout=1.5) as client:
            ready = client.ready()
            healthy = client.health() if ready is None else ready  # /health: a generation, ~1 s more
            if not healthy:
                problems.append(f"{endpoint}/{'health' if ready is None else 'ready'} does not answer 200")
            elif self._observe(client, attrs, problems):
                healthy = False  # our process lives, but the port answers for another server
        return ReadResult(exists=True, attributes=attrs, healthy=healthy, detail="; ".join(problems) or None)

    def _observe(self, client: SGLangClient, attrs: dict[str, Any], problems: list[str]) -> str | None:
        """Overwrite model attributes with what the server reports, noting differences in `problems`.

        Returns the instance id of another server answering on the endpoint, if so.
        """
        model_info = _ask(client.model_info, problems)
        server_info = _ask(client.server_info, problems)
        other = model_info.get("instance_id")
        if other and other != attrs.get("instance_id"):
            problems.append(f"{client.base_url} is answered by another server (instance {other})")
            return other
        reported = model_info.get("model_path") or server_info.get("model_path")
        if reported and not _same_model(attrs.get("model_source"), reported):
            problems.append(f"server serves model {reported!r}, state has {attrs.get('model_source')!r}")
            attrs["model_source"] = reported
        revision = model_info.get("revision") or server_info.get("revision")
        if revision and revision != attrs.get("model_revision"):
            problems.append(f"server serves revision {revision!r}, state has {attrs.get('model_revision')!r}")
            attrs["model_revision"] = revision
        served = server_info.get("served_model_name") or model_info.get("served_model_name")
        if isinstance(served, list):  # SGLang accepts one name given as a list
            served = served[0] if len(served) == 1 else served
        if served and attrs.get("served_name") and served != attrs.get("served_name"):
            problems.append(f"server serves name {served!r}, state has {attrs.get('served_name')!r}")
            attrs["served_name"] = served
        self._observe_args(server_info, attrs, problems)
        return None

    @staticmethod
    def _observe_args(server_info: dict[str, Any], attrs: dict[str, Any], problems: list[str]) -> None:
        """Replace declared server args with the values `/server_info` reports, when they differ.

        Only declared args are compared: the server also reports every default.
        """
        declared = attrs.get("args") or {}
        if not declared or not server_info:
            return
        observed = dict(declared)
        for key, want in declared.items():
            if key not in server_info or server_info[key] == REDACTED:
                continue
            got = server_info[key]
            if not _same_value(want, got):
                problems.append(f"server reports {key}={got!r}, state has {want!r}")
                observed[key] = got
        if observed != declared:
            attrs["args"] = observed

    # -- update ------------------------------------------------------------
    def update(self, kind: ResourceKind, address: str, prior: dict[str, Any], desired: dict[str, Any]
               ) -> dict[str, Any]:
        if kind == ResourceKind.ROUTER:
            return smg_router.update(address, prior, desired)
        return super().update(kind, address, prior, desired)

    # -- delete ------------------------------------------------------------
    def delete(self, kind: ResourceKind, address: str, attributes: dict[str, Any]) -> None:
        if kind == ResourceKind.ROUTER:
            return smg_router.delete(self.settings, address, attributes)
        proc = self._find(attributes)
        if proc is not None and not process.stop_process(proc, self.settings.stop_timeout_s):
            raise ProviderError(f"{address}: process {proc.pid} survived SIGKILL")
        if attributes.get("port") is not None and attributes.get("instance_id"):
            process.ports.release(int(attributes["port"]), attributes["instance_id"])
        if attributes.get("instance_id"):
            self._secrets_file(str(attributes["instance_id"])).unlink(missing_ok=True)

    # -- orphan discovery ----------------------------------------------------
    def _state_id(self) -> str:
        return str(Path(self.context.state_path).resolve())

    def list_instances(self) -> list[Instance]:
        """Server processes started for this state file (marked with INFRAPLAN_STATE), in state or not."""
        mine = self._state_id()
        found: dict[str, list[psutil.Process]] = {}
        for proc in psutil.process_iter(["pid"]):
            try:
                env = proc.environ()
            except (psutil.Error, OSError):
                continue
            instance_id = env.get(process.INSTANCE_ENV)
            if instance_id and env.get(STATE_ENV) == mine:
                found.setdefault(instance_id, []).append(proc)
        out = []
        for instance_id, procs in sorted(found.items()):
            leader = process._leader(procs)
            if leader is None:
                continue
            try:
                cmdline = leader.cmdline()
                started = leader.create_time()
            except psutil.Error:
                continue
            port = _arg_after(cmdline, "--port")
            endpoint = f"http://{_arg_after(cmdline, '--host') or self.settings.host}:{port}" if port else None
            out.append(Instance(instance_id=instance_id, provider=self._block_name(), name=f"pid {leader.pid}",
                                endpoint=endpoint, detail={"pid": leader.pid, "started_at": started,
                                                           "model": _arg_after(cmdline, "--model-path"),
                                                           "revision": _arg_after(cmdline, "--revision")}))
        return out

    def delete_instance(self, instance: Instance) -> None:
        proc = process.find_server(instance.detail.get("pid"), instance.detail.get("started_at"), instance.instance_id)
        if proc is not None and not process.stop_process(proc, self.settings.stop_timeout_s):
            raise ProviderError(f"instance {instance.instance_id}: process {proc.pid} survived SIGKILL")
        self._secrets_file(instance.instance_id).unlink(missing_ok=True)


def _arg_after(argv: list[str], flag: str) -> str | None:
    try:
        return argv[argv.index(flag) + 1]
    except (ValueError, IndexError):
        return None


def _client(endpoint: str, attrs: dict[str, Any], timeout: float) -> SGLangClient:
    """A client for the replica's server; no env proxies (it is on loopback), one try per call."""
    api_key = (attrs.get("args") or {}).get("api_key")
    # A shared SSL context: building one per transport costs ~30 ms of CPU (refreshing 1,000 replicas).
    transport = httpx.HTTPTransport(verify=_ssl_context())
    return SGLangClient(endpoint, api_key=api_key, timeout=timeout, retries=1, transport=transport)


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    return ssl.create_default_context()


def _same_value(want: Any, got: Any) -> bool:
    """Config and server agree on an arg value (8192 == "8192", 0.85 == 0.85000001)."""
    if want == got:
        return True
    if isinstance(want, (int, float)) and isinstance(got, (int, float)) and not isinstance(want, bool):
        return abs(float(want) - float(got)) <= 1e-9 * max(1.0, abs(float(want)))
    return str(want) == str(got)


def _ask(call: Any, problems: list[str]) -> dict[str, Any]:
    """The JSON object a client call returns; {} (and a note in `problems`) when it fails."""
    try:
        data = call()
    except ProviderError as exc:
        problems.append(str(exc))
        return {}
    return data if isinstance(data, dict) else {}
