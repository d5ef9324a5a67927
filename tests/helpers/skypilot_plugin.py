"""The skypilot plugin (SkyPilot 0.14 in its own virtualenv) in tests: the shared catalogs, the
environment SkyPilot runs in over them, plugin workers with the SDK faked inside them, and one
plugin-venv interpreter that runs snippets against SkyPilot's own objects.

SkyPilot cannot be imported here (it pins click<8.2, sqlite-utils 4 needs click>=8.3.1), so
every test of it runs in the plugin's interpreter: through `RemoteProvider` (the JSON-RPC
worker) or through `PluginSession`.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import textwrap
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator

import pytest

from infraplan.providers.contract import ProviderContext
from infraplan.providers.plugin.host import RemoteProvider, plugin_python, plugin_root
from infraplan_providers.skypilot.provider import SkyPilotProvider

from helpers.paths import HELPERS, REPO


def _catalogs() -> Path:
    """``$INFRAPLAN_SKY_CATALOGS``, else ``shared/catalogs`` beside the checkout (for a git
    worktree, beside the main checkout it belongs to)."""
    if os.environ.get("INFRAPLAN_SKY_CATALOGS"):
        return Path(os.environ["INFRAPLAN_SKY_CATALOGS"])
    found = REPO.parent / "shared" / "catalogs"
    dotgit = REPO / ".git"
    if not found.is_dir() and dotgit.is_file():  # a worktree: "gitdir: MAIN/.git/worktrees/NAME"
        gitdir = Path(dotgit.read_text().partition("gitdir:")[2].strip())
        if gitdir.parent.name == "worktrees":
            found = gitdir.parents[2].parent / "shared" / "catalogs"
    return found


CATALOGS = _catalogs()

#: a module that runs SkyPilot needs the plugin installed and the catalogs (CI has both)
NEEDS_PLUGIN = [
    pytest.mark.skipif(plugin_python("skypilot") is None,
                       reason="skypilot plugin not installed (infraplan plugins install skypilot)"),
    pytest.mark.skipif(not (CATALOGS / "v8").is_dir(), reason=f"shared SkyPilot catalogs not at {CATALOGS}"),
]


def sky_environment(root: Path) -> dict[str, str]:
    """What the catalogs' README asks for, for a plugin process to inherit: a SKY_RUNTIME_DIR
    holding a copy of `v8` under `root`, HOME there too (no ~/.sky, no credentials), no AWS
    metadata probe; the plugin directory fixed before HOME moves."""
    runtime = root / "sky-runtime"
    shutil.copytree(CATALOGS / "v8", runtime / ".sky" / "catalogs" / "v8")
    (runtime / "home").mkdir()
    return {"INFRAPLAN_PLUGIN_DIR": str(plugin_root()), "SKY_RUNTIME_DIR": str(runtime),
            "AWS_EC2_METADATA_DISABLED": "true", "HOME": str(runtime / "home")}


class FakeSkyControl:
    """The fake SDK inside one plugin worker, seen from the test: the calls it got, and the
    commands it applies at its next SDK call (see tests/helpers/fake_sky.py)."""

    def __init__(self, directory: Path, name: str):
        self.calls_file = directory / "calls.jsonl"  # the workers of one module share it
        self.control_file = directory / f"{name}.control.jsonl"
        self.services_file = directory / "services.json"

    def environment(self) -> dict[str, str]:
        return {"INFRAPLAN_PLUGIN_PRELOAD": str(HELPERS / "fake_preload.py"), "FAKE_SKY_CALLS": str(self.calls_file),
                "FAKE_SKY_CONTROL": str(self.control_file), "FAKE_SKY_SERVICES": str(self.services_file)}

    def send(self, **command: Any) -> None:
        with open(self.control_file, "a") as f:
            f.write(json.dumps(command) + "\n")

    def fail_next(self, error: str, message: str, **fields: Any) -> None:
        """The next request raises `error` (a `sky.exceptions` class, or a builtin one); with
        ``on="serve.up"`` (an SDK call), the next request of that call; `failover_history`:
        a list of such errors."""
        self.send(fail_next=[{"error": error, "message": message, **fields}])

    def reset(self) -> None:
        """A fresh fake: no clusters, services, scripts, failures or logged calls."""
        self.send(reset=True)
        self.calls_file.write_text("")
        self.services_file.unlink(missing_ok=True)

    def calls(self, name: str | None = None) -> list[dict[str, Any]]:
        """The SDK calls since the last reset, oldest first; only those named `name` if given."""
        if not self.calls_file.exists():
            return []
        got = [json.loads(line) for line in self.calls_file.read_text().splitlines() if line]
        return [c for c in got if name is None or c["call"] == name]


@contextmanager
def faked_worker(tmp: Path, env: dict[str, str], name: str = "worker", **settings: Any
                 ) -> Iterator[tuple[RemoteProvider, FakeSkyControl]]:
    """A skypilot plugin worker whose SDK is the fake, with its control (one per module is
    enough: a worker starts in about 2 s, a call takes milliseconds)."""
    fake = FakeSkyControl(tmp, name)
    ctx = ProviderContext(project_dir=tmp, state_path=tmp / "s.db", runtime_dir=tmp / f"rt-{name}", name="sky",
                          settings=settings)
    with pytest.MonkeyPatch.context() as mp:  # the worker inherits them; this process keeps its own
        for k, v in {**env, **fake.environment()}.items():
            mp.setenv(k, v)
        provider = RemoteProvider.connect(SkyPilotProvider, ctx, "skypilot")
    try:
        yield provider, fake
    finally:
        provider.close()


_LOOP = """\
import json, sys, traceback
sys.path.insert(0, sys.argv[1])  # infraplan and infraplan_providers from the repository, as the worker loads them
channel, sys.stdout = sys.stdout, sys.stderr
for line in sys.stdin:
    msg = json.loads(line)
    ns = {"__name__": "__snippet__", **msg["values"]}
    try:
        exec(compile(msg["code"], "<snippet>", "exec"), ns)
        reply = json.dumps({"result": ns.get("result")})
    except BaseException:
        reply = json.dumps({"error": traceback.format_exc()})
    channel.write(reply + "\\n")
    channel.flush()
"""


class PluginSession:
    """One interpreter of the skypilot plugin venv, started once, running snippets in turn.

    `run` sends a snippet with `values` as its variables (its own namespace; modules stay
    imported between snippets) and returns what it left in ``result`` (JSON); a snippet that
    raises fails the test with the traceback from the plugin side.
    """

    def __init__(self, env: dict[str, str], log: Path):
        python = plugin_python("skypilot")
        assert python is not None
        base = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
        self._log = open(log, "ab")  # noqa: SIM115 - the child's stderr for its lifetime
        self.proc = subprocess.Popen([str(python), "-I", "-c", _LOOP, str(REPO)], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, stderr=self._log, env={**base, **env}, text=True)

    def run(self, code: str, **values: Any) -> Any:
        assert self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(json.dumps({"code": textwrap.dedent(code), "values": values}) + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        assert line, f"the plugin interpreter exited (code {self.proc.poll()}); see {self._log.name}"
        reply = json.loads(line)
        if "error" in reply:
            pytest.fail("the snippet raised in the plugin interpreter:\n" + reply["error"], pytrace=False)
        return reply["result"]

    def close(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self._log.close()
