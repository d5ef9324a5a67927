"""A fake `sky` SDK at the SDK boundary: calls return request ids, `get`/`stream_and_get`
resolve them, and everything returned or raised is SkyPilot's real types (status enums,
`StatusResponse`, exceptions, `SkyServiceSpec`).

With ``FAKE_SKY_RUN_LOCAL=1`` a launched cluster runs its task's `run` command on this
machine (setup skipped; ``FAKE_SKY_PATH`` first on PATH; envs and secrets in its
environment) and its endpoints are on 127.0.0.1: enough for CPU tasks such as a router.
With ``FAKE_SKY_STATE=FILE`` as well, SkyServe services run here too (`LocalServices`), and
clusters and services are kept in files so that every infraplan command (each starts its own
plugin worker) sees what the last one left.

A test in another process (the plugin worker runs the fake) sees and steers it through files:
``FAKE_SKY_CALLS`` gets one JSON line per SDK call (the task sent summed up by `task_summary`),
``FAKE_SKY_CONTROL`` is read at each SDK call for commands (`FakeSky._apply_control`: fail the
next requests, stop a cluster, script service statuses, take the controller down, reset), and
``FAKE_SKY_SERVICES`` keeps the in-memory services in a file that the workers of one test
share (each worker stands for one run of infraplan)."""

from __future__ import annotations

import builtins
import itertools
import json
import os
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import sky
from sky.schemas.api.responses import StatusResponse
from sky.serve import ReplicaStatus, ServiceStatus, UpdateMode


class LocalServices:
    """SkyServe services as real processes on this machine, recorded in a JSON file so that
    every infraplan command (each starts its own plugin worker) sees the same services.

    A replica is infraplan's sim standing in for SGLang (the task's ``--model-path``,
    ``--revision`` and ``--served-model-name``; ``SIM_ERROR_RATE`` and ``SIM_TTFT_MS`` from the
    task's envs); a service's load balancer is an smg. An update in either mode starts the new
    replicas, puts them in the load balancer, then takes the old ones out and stops them.
    """

    def __init__(self, path: str):
        self.path = Path(path)
        self.python = str(Path(os.environ.get("FAKE_SKY_PATH") or Path(sys.executable).parent) / "python")

    def load(self) -> dict:
        return json.loads(self.path.read_text()) if self.path.exists() else {}

    def save(self, data: dict) -> None:
        self.path.write_text(json.dumps(data, indent=1))

    @staticmethod
    def _port() -> int:
        with socket.socket() as sock:
            sock.bind(("127.0.0.1", 0))
            return sock.getsockname()[1]

    def _spawn(self, argv: list[str], name: str) -> int:
        log = open(self.path.parent / f"{name}.log", "ab")  # noqa: SIM115 - the child keeps it
        env = {**os.environ, "SPT_NOENV": "1"}
        return subprocess.Popen(argv, env=env, stdout=log, stderr=log, start_new_session=True).pid

    @staticmethod
    def _wait(url: str, timeout: float = 30.0) -> None:
        import httpx

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                if httpx.get(f"{url}/health", timeout=1, trust_env=False).status_code == 200:
                    return
            except httpx.HTTPError:
                pass
            time.sleep(0.1)
        raise RuntimeError(f"{url} did not come up")

    def _replica(self, name: str, task, rid: int, version: int) -> dict:
        argv = shlex.split(task.run)
        opt = {k: argv[argv.index(k) + 1] for k in ("--model-path", "--revision", "--served-model-name") if k in argv}
        port = self._port()
        envs = task.envs or {}
        pid = self._spawn([self.python, "-m", "infraplan.serving.sim", "--host", "127.0.0.1", "--port",
                           str(port), "--model-path", opt["--model-path"], "--revision", opt.get("--revision", ""),
                           "--served-model-name", opt.get("--served-model-name", opt["--model-path"]),
                           "--ttft-ms", envs.get("SIM_TTFT_MS", "2"), "--tpot-ms", "1",
                           "--error-rate", envs.get("SIM_ERROR_RATE", "0")], f"{name}-{rid}")
        self._wait(f"http://127.0.0.1:{port}")
        return {"id": rid, "pid": pid, "port": port, "version": version}

    def _lb(self, lb: dict):
        from infraplan.serving.smg import SmgClient

        return SmgClient(f"http://127.0.0.1:{lb['port']}", timeout=10)

    def up(self, name: str, task) -> str:
        data = self.load()
        if name in data:
            raise ValueError(f"Service {name!r} already exists.")
        n = task.service.min_replicas
        reps = [self._replica(name, task, i + 1, 1) for i in range(n)]
        port = self._port()
        pid = self._spawn([self.python, "-m", "smg", "launch", "--host", "127.0.0.1", "--port", str(port),
                           "--prometheus-host", "127.0.0.1", "--prometheus-port", str(self._port()),
                           "--policy", "round_robin"], f"{name}-lb")
        lb = {"pid": pid, "port": port}
        self._wait(f"http://127.0.0.1:{port}")
        with self._lb(lb) as c:
            c.sync([f"http://127.0.0.1:{r['port']}" for r in reps])
        data[name] = {"version": 1, "lb": lb, "replicas": reps, "next_id": n + 1,
                      "policy": task.service.autoscaling_policy_str()}
        self.save(data)
        return f"127.0.0.1:{port}"

    def update(self, name: str, task) -> None:
        data = self.load()
        svc = data[name]
        version = svc["version"] + 1
        new = [self._replica(name, task, svc["next_id"] + i, version) for i in range(task.service.min_replicas)]
        with self._lb(svc["lb"]) as c:
            c.sync([f"http://127.0.0.1:{r['port']}" for r in new])  # new in, then old out (drained)
        for r in svc["replicas"]:
            self._kill(r["pid"])
        svc.update(version=version, replicas=new, next_id=svc["next_id"] + len(new),
                   policy=task.service.autoscaling_policy_str())
        self.save(data)

    @staticmethod
    def _kill(pid: int) -> None:
        try:
            os.killpg(pid, signal.SIGTERM)
        except ProcessLookupError:
            pass

    def down(self, name: str) -> None:
        data = self.load()
        svc = data.pop(name, None)
        if svc:
            for pid in [svc["lb"]["pid"], *(r["pid"] for r in svc["replicas"])]:
                self._kill(pid)
        self.save(data)

    def records(self, names: list[str]) -> list[dict]:
        data = self.load()
        return [{"name": n, "active_versions": [svc["version"]], "status": ServiceStatus.READY,
                 "endpoint": f"127.0.0.1:{svc['lb']['port']}", "policy": svc["policy"],
                 "replica_info": [{"replica_id": r["id"], "name": f"{n}-{r['id']}", "status": ReplicaStatus.READY,
                                   "version": r["version"], "endpoint": f"127.0.0.1:{r['port']}"}
                                  for r in svc["replicas"]]}
                for n in (list(data) if names is None else names) if (svc := data.get(n))]


class FakeServe:
    """`sky.serve`: up, update, status, down over service records kept in memory, in the JSON
    file ``FAKE_SKY_SERVICES`` names (shared by the workers of one test: each is a run of
    infraplan), or as real processes (`LocalServices`)."""

    UpdateMode = UpdateMode

    def __init__(self, owner: "FakeSky"):
        self.owner = owner
        self.local = LocalServices(os.environ["FAKE_SKY_STATE"]) if os.environ.get("FAKE_SKY_STATE") else None
        shared = os.environ.get("FAKE_SKY_SERVICES")
        self.file = Path(shared) if shared else None
        self._services: dict[str, dict] = {}
        # scripted (ServiceStatus, [ReplicaStatus, ...]) per status call, per service; the last one sticks
        self.script: dict[str, list[tuple]] = {}

    @property
    def services(self) -> dict[str, dict]:
        """The service records (JSON-able: statuses are made SkyPilot's enums when read)."""
        if self.file is not None:
            return json.loads(self.file.read_text()) if self.file.exists() else {}
        return self._services

    def _save(self, services: dict[str, dict]) -> None:
        if self.file is not None:
            self.file.write_text(json.dumps(services))
        else:
            self._services = services

    def _record(self, name: str, task, version: int, services: dict) -> dict:
        spec = task.service
        return {"name": name, "active_versions": [version], "controller_job_id": 1, "uptime": 0,
                "controller_port": 20001, "load_balancer_port": 30001,
                "endpoint": f"44.1.2.3:{30000 + len(services) + 1}", "policy": spec.autoscaling_policy_str(),
                "requested_resources_str": str(task.resources), "load_balancing_policy": spec.load_balancing_policy,
                "min_replicas": spec.min_replicas,
                # what each replica's handle will say it was launched with (labels included)
                "labels": dict(next(iter(task.resources)).labels or {})}

    def up(self, task, service_name, _need_confirmation=False):
        self.owner._enter("serve.up", service=service_name, task=task_summary(task))

        def do():
            if self.local:
                return service_name, self.local.up(service_name, task)
            services = self.services
            if service_name in services:
                raise ValueError(f"Service {service_name!r} already exists.")
            services[service_name] = self._record(service_name, task, 1, services)
            self._save(services)
            return service_name, services[service_name]["endpoint"]
        return self.owner._req(do)

    def update(self, task, service_name, mode, _need_confirmation=False):
        self.owner._enter("serve.update", service=service_name, task=task_summary(task), mode=enum_name(mode))

        def do():
            if self.local:
                return self.local.update(service_name, task)
            services = self.services
            if service_name not in services:
                raise RuntimeError(f"Service {service_name!r} does not exist.")
            old = services[service_name]
            new = self._record(service_name, task, old["active_versions"][-1] + 1, services)
            new["endpoint"] = old["endpoint"]
            services[service_name] = new
            self._save(services)
        return self.owner._req(do)

    def status(self, service_names):
        names = [service_names] if isinstance(service_names, str) else service_names
        self.owner._enter("serve.status", services=None if names is None else list(names))

        def do():
            if self.owner.controller_down:
                raise sky.exceptions.ClusterNotUpError("Sky serve controller is not up.")
            if self.local:
                return self.local.records(names)
            services = self.services
            out = []
            for n in (list(services) if names is None else names):
                if n not in services:
                    continue
                rec = {k: v for k, v in services[n].items() if k != "labels"}
                handle = SimpleNamespace(launched_resources=sky.Resources(labels=services[n].get("labels") or None))
                steps = self.script.get(n)
                status, reps = (steps.pop(0) if len(steps) > 1 else steps[0]) if steps else (
                    ServiceStatus.READY, [ReplicaStatus.READY] * rec["min_replicas"])
                version = rec["active_versions"][-1]
                net = list(services).index(n)  # each service's replicas on their own addresses
                out.append(dict(rec, status=status, replica_info=[
                    {"replica_id": i + 1, "name": f"{n}-{i + 1}", "status": s, "version": version, "launched_at": 0,
                     "handle": handle, "endpoint": f"10.{net}.0.{i + 1}:30000"} for i, s in enumerate(reps)]))
            return out
        return self.owner._req(do)

    def down(self, service_names, all=False, purge=False):  # noqa: A002 - SkyPilot's own name
        names = [service_names] if isinstance(service_names, str) else service_names
        self.owner._enter("serve.down", services=list(names))

        def do():
            services = self.services
            for n in names:
                services.pop(n, None)
                if self.local:
                    self.local.down(n)
            self._save(services)
        return self.owner._req(do)


def enum_name(value) -> str:
    """``Class.MEMBER`` of an enum member, so a log shows that SkyPilot's own enum was passed."""
    return f"{type(value).__module__}.{type(value).__qualname__}.{value.name}" if hasattr(value, "name") \
        else repr(value)


def task_summary(task) -> dict:
    """What the provider sent in a `sky.Task`, as JSON for the call log (secret names, never values)."""
    listed = isinstance(task.resources, list)
    resources = task.resources if listed else list(task.resources)
    out = {"class": f"{type(task).__module__}.{type(task).__qualname__}", "name": task.name, "run": task.run,
           "setup": task.setup, "envs": dict(task.envs or {}), "secrets": sorted(task.secrets or {}),
           "ordered": listed,
           "resources": [{"cloud": str(r.cloud) if r.cloud else None, "region": r.region, "use_spot": r.use_spot,
                          "accelerators": r.accelerators, "instance_type": r.instance_type,
                          "disk_size": r.disk_size, "ports": r.ports, "labels": r.labels} for r in resources]}
    spec = task.service
    if spec is not None:
        out["service"] = {"class": f"{type(spec).__module__}.{type(spec).__qualname__}",
                          "readiness_path": spec.readiness_path, "initial_delay_seconds": spec.initial_delay_seconds,
                          "min_replicas": spec.min_replicas, "max_replicas": spec.max_replicas,
                          "target_qps_per_replica": spec.target_qps_per_replica,
                          "load_balancing_policy": spec.load_balancing_policy,
                          "dynamic_ondemand_fallback": spec.dynamic_ondemand_fallback,
                          "policy": spec.autoscaling_policy_str()}
    return out


def _error(spec: dict) -> BaseException:
    """A SkyPilot exception (or a builtin one) from a control command's ``{"error", "message"}``."""
    cls = getattr(sky.exceptions, spec["error"], None) or getattr(builtins, spec["error"])
    if "failover_history" in spec:
        return cls(spec["message"], failover_history=[_error(h) for h in spec["failover_history"]])
    return cls(spec["message"])


class FakeSky:
    """SDK calls return request ids; get/stream_and_get resolve them (or raise SkyPilot's errors)."""

    exceptions = sky.exceptions
    StatusRefreshMode = sky.StatusRefreshMode

    def __init__(self):
        self.clusters: dict[str, StatusResponse] = {}
        self.results: dict[str, object] = {}
        self.calls: list[dict] = []
        self.fail_next: list[BaseException] = []
        self.fail_on: dict[str, list[BaseException]] = {}  # SDK call -> its next requests' errors
        self.controller_down = False
        self.log = Path(os.environ["FAKE_SKY_CALLS"]) if os.environ.get("FAKE_SKY_CALLS") else None
        self.control = Path(os.environ["FAKE_SKY_CONTROL"]) if os.environ.get("FAKE_SKY_CONTROL") else None
        self.procs: dict[str, subprocess.Popen] = {}  # FAKE_SKY_RUN_LOCAL: cluster -> its run command
        state = os.environ.get("FAKE_SKY_STATE")
        self.kept = Path(state).with_suffix(".clusters.json") if state else None  # clusters across processes
        self.serve = FakeServe(self)
        self._ids = itertools.count()

    def _enter(self, call: str, **fields) -> None:
        """At every SDK call: apply the test's control commands, then log the call."""
        self._apply_control()
        if self.fail_on.get(call):  # the client resolves each request right after making it
            self.fail_next.insert(0, self.fail_on[call].pop(0))
        entry = {"call": call, **fields}
        self.calls.append(entry)
        if self.log is not None:
            with open(self.log, "a") as f:
                f.write(json.dumps(entry, default=str) + "\n")

    def _apply_control(self) -> None:
        """Commands a test appended to ``FAKE_SKY_CONTROL`` (JSON lines), in order, each once."""
        if self.control is None or not self.control.exists():
            return
        lines = self.control.read_text().splitlines()
        self.control.write_text("")
        for line in lines:
            cmd = json.loads(line)
            if cmd.get("reset"):  # a new test: nothing launched, scripted or failing (shared files are the test's)
                self.clusters.clear()
                self.calls.clear()
                self.fail_next = []
                self.fail_on.clear()
                self.controller_down = False
                self.serve.script.clear()
                self.serve._services = {}
            for e in cmd.get("fail_next", []):  # with "on": the next request of that SDK call only
                (self.fail_on.setdefault(e["on"], []) if "on" in e else self.fail_next).append(_error(e))
            if "cluster_status" in cmd:
                name, status = cmd["cluster_status"]
                self.clusters[name].status = sky.ClusterStatus[status]
            if "controller_down" in cmd:
                self.controller_down = bool(cmd["controller_down"])
            for name, steps in (cmd.get("script") or {}).items():
                self.serve.script[name] = [(ServiceStatus[st], [ReplicaStatus[r] for r in reps]) for st, reps in steps]
            if cmd.get("drop_services"):
                self.serve._save({})

    def _req(self, result) -> str:
        rid = f"req-{next(self._ids)}"
        self.results[rid] = result
        return rid

    def _resolve(self, rid):
        if self.fail_next:
            self.results.pop(rid, None)
            raise self.fail_next.pop(0)
        r = self.results.pop(rid)
        return r() if callable(r) else r

    get = stream_and_get = _resolve

    def launch(self, task, cluster_name, idle_minutes_to_autostop=None, **kw):
        self._enter("launch", cluster=cluster_name, idle_minutes_to_autostop=idle_minutes_to_autostop,
                    task=task_summary(task))

        def up():
            if os.environ.get("FAKE_SKY_RUN_LOCAL") == "1":
                self._run_local(cluster_name, task)
            res = task.resources[0] if isinstance(task.resources, list) else next(iter(task.resources))
            self.clusters[cluster_name] = _status(cluster_name, res.copy(instance_type="p5.48xlarge"))
            if self.kept:
                kept = self._kept()
                kept[cluster_name] = {"pid": self.procs[cluster_name].pid if cluster_name in self.procs else None,
                                      "cloud": str(res.cloud), "region": res.region, "labels": res.labels}
                self.kept.write_text(json.dumps(kept))
            return (1, None)
        return self._req(up)

    @staticmethod
    def _free_port() -> int:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return s.getsockname()[1]

    def _kept(self) -> dict:
        return json.loads(self.kept.read_text()) if self.kept and self.kept.exists() else {}

    def status(self, cluster_names=None, refresh=sky.StatusRefreshMode.NONE, all_users=False):
        """`sky.status`: the named clusters, or all of them when no names are given."""
        names = cluster_names
        self._enter("status", clusters=names, refresh=enum_name(refresh))
        if self.kept:
            for n, c in self._kept().items():
                self.clusters.setdefault(n, _status(n, SimpleNamespace(cloud=c["cloud"], region=c["region"],
                                                                       instance_type="p5.48xlarge",
                                                                       labels=c.get("labels"))))
        return self._req(lambda: [c for n, c in self.clusters.items() if names is None or n in names])

    def api_status(self, request_ids=None, all_status=False, limit=None, fields=None, cluster_name=None):
        """`sky.api_status`: this fake resolves every request when it is waited for, so none is
        ever left running (a list of SkyPilot's own RequestPayload, empty)."""
        self._enter("api_status", cluster=cluster_name)
        return []

    def endpoints(self, cluster, port=None):
        self._enter("endpoints", cluster=cluster, port=port)
        host = "127.0.0.1" if os.environ.get("FAKE_SKY_RUN_LOCAL") == "1" else "3.1.2.3"
        return self._req({port: f"{host}:{port}"})

    def _run_local(self, cluster_name, task) -> None:
        secrets = {k: getattr(v, "get_secret_value", lambda v=v: v)() for k, v in (task.secrets or {}).items()}
        env = {**os.environ, **(task.envs or {}), **secrets}
        env["PATH"] = os.pathsep.join(p for p in (os.environ.get("FAKE_SKY_PATH"), env.get("PATH")) if p)
        run = task.run
        if run.startswith("smg launch") and "--prometheus-port" not in run:
            run += f" --prometheus-port {self._free_port()}"  # a VM has 29000 to itself; this machine does not
        self.procs[cluster_name] = subprocess.Popen(["bash", "-c", run], env=env, start_new_session=True,
                                                    stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    def down(self, name):
        self._enter("down", cluster=name)

        def gone():
            kept = self._kept()
            if name not in self.clusters and name not in kept:
                raise sky.exceptions.ClusterDoesNotExist(f"Cluster {name!r} does not exist.")
            self.clusters.pop(name, None)
            proc = self.procs.pop(name, None)
            pid = proc.pid if proc is not None else (kept.get(name) or {}).get("pid")
            if pid:
                try:
                    os.killpg(pid, signal.SIGTERM)
                except ProcessLookupError:
                    pass
            if proc is not None:
                proc.wait(10)
            if name in kept:
                del kept[name]
                self.kept.write_text(json.dumps(kept))
        return self._req(gone)


def _status(name: str, launched_resources) -> StatusResponse:
    return StatusResponse(
        name=name, launched_at=0, status=sky.ClusterStatus.UP, autostop=-1, to_down=False, cluster_hash="h",
        cluster_ever_up=True, user_hash="u", user_name="me", workspace="default", is_managed=False, nodes=1,
        handle=SimpleNamespace(launched_resources=launched_resources))
