"""Replica attributes -> real `sky.Task` and `sky.Resources` objects.

Fail-over: ``failover`` (a list of `infra` strings) and ``use_spot`` with
``spot_fallback`` become an *ordered* resources list, tried first to last:
every infra with spot, then (with the fall-back) every infra on demand.
"""

from __future__ import annotations

import json
import os
import shlex
from typing import Any

from infraplan.errors import ProviderError
from infraplan.serving.sglang_args import build_launch_argv, secret_args

from .settings import SkyPilotSettings


def infras(attrs: dict[str, Any]) -> list[str | None]:
    """Where to run, in order: ``failover``, else ``cloud[/region]``, else anywhere (None)."""
    if attrs.get("failover"):
        return list(attrs["failover"])
    if attrs.get("cloud"):
        return ["/".join(x for x in (attrs["cloud"], attrs.get("region")) if x)]
    if attrs.get("region"):
        return [f"*/{attrs['region']}"]
    return [None]


def spot_fallback_by_policy(attrs: dict[str, Any]) -> bool:
    """A SkyServe fleet on spot with on-demand fallback: SkyServe refuses a mixed spot/on-demand
    resource list, so the fallback is its replica policy's `dynamic_ondemand_fallback`."""
    return attrs.get("placement") == "service" and bool(attrs.get("use_spot")) and bool(attrs.get("spot_fallback"))


def candidate_kwargs(attrs: dict[str, Any], settings: SkyPilotSettings) -> list[dict[str, Any]]:
    """`sky.Resources` keyword arguments for each candidate, in fail-over order."""
    if spot_fallback_by_policy(attrs):
        spots = [True]
    elif attrs.get("use_spot") and attrs.get("spot_fallback"):
        spots = [True, False]
    else:
        spots = [bool(attrs.get("use_spot"))]
    out = []
    for spot in spots:
        for infra in infras(attrs):
            kw: dict[str, Any] = {"infra": infra, "accelerators": attrs.get("accelerators"), "use_spot": spot,
                                  "instance_type": attrs.get("instance_type"), "disk_size": attrs.get("disk_size"),
                                  "ports": settings.port}
            out.append({k: v for k, v in kw.items() if v is not None})
    return out


def make_resources(attrs: dict[str, Any], settings: SkyPilotSettings, labels: dict[str, str] | None = None) -> list:
    """Real `sky.Resources`, one per candidate, carrying `labels`; invalid ones are a ProviderError."""
    import sky

    out = []
    for kw in candidate_kwargs(attrs, settings):
        try:
            res = sky.Resources(**kw, labels=labels or None)
        except (ValueError, sky.exceptions.ResourcesUnavailableError, sky.exceptions.InvalidCloudConfigs) as exc:
            raise ProviderError(f"invalid SkyPilot resources {kw}: {exc}") from exc
        check_labels(res)
        out.append(res)
    return out


def check_labels(res) -> None:
    """SkyPilot's own label rules for `res`'s cloud (every registered cloud when it has none).

    SkyPilot 0.14 checks labels only on its API server (`Resources.validate`), so a label a
    cloud refuses would fail the launch there; it is refused here instead."""
    from sky.utils import registry

    targets = [res.cloud] if res.cloud is not None else list(registry.CLOUD_REGISTRY.values())
    for key, value in (res.labels or {}).items():
        for cloud in targets:
            ok, why = cloud.is_label_valid(key, value)
            if not ok:
                raise ProviderError(f"SkyPilot refuses label {key}={value!r} on {cloud}: {why}")


def sglang_version(attrs: dict[str, Any], settings: SkyPilotSettings) -> str:
    """The SGLang release a fleet runs: its pin (`engine.sglang_version`), else the provider's setting."""
    return attrs.get("sglang_version") or settings.sglang_version


def setup_script(settings: SkyPilotSettings, attrs: dict[str, Any] | None = None) -> str:
    version = sglang_version(attrs or {}, settings)
    return f"pip install --upgrade pip && pip install 'sglang[all]=={version}'"


#: the SkyPilot secret that carries a fleet's secret server args (`api_key`, ...) to the VM
SECRET_ARGS_ENV = "INFRAPLAN_SGLANG_SECRET_ARGS"
#: where the run command writes them (0600) for SGLang's own `--config`
SECRET_ARGS_FILE = "$HOME/.infraplan/sglang-secret-args.yaml"


def run_command(attrs: dict[str, Any], settings: SkyPilotSettings) -> str:
    """`python -m sglang.launch_server` with the fleet's args mapped to its SGLang release's options.

    Secret args never appear here (SkyPilot stores and shows `run`): they travel as the
    SkyPilot secret `SECRET_ARGS_ENV`, which the command writes to a 0600 file for `--config`."""
    args = attrs.get("args") or {}
    hidden = secret_args(args)
    argv = build_launch_argv(model_source=attrs.get("model_source") or "", revision=attrs.get("model_revision"),
                             served_name=attrs.get("served_name"), host="0.0.0.0", port=settings.port,
                             args=args, version=sglang_version(attrs, settings),
                             secrets_file="SECRETS_FILE" if hidden else None)
    cmd = shlex.join(["python", *argv[1:]]).replace("SECRETS_FILE", f'"{SECRET_ARGS_FILE}"')
    if not hidden:
        return cmd
    write = (f'(umask 077 && mkdir -p "$HOME/.infraplan" && printf %s "${{{SECRET_ARGS_ENV}}}" '
             f'> "{SECRET_ARGS_FILE}")')
    return f"{write} && {cmd}"


def secret_args_env(attrs: dict[str, Any]) -> dict[str, str]:
    """The SkyPilot secret holding the fleet's secret server args (empty when it has none)."""
    hidden = secret_args(attrs.get("args") or {})
    return {SECRET_ARGS_ENV: json.dumps(hidden, sort_keys=True)} if hidden else {}


def secrets_from_env(settings: SkyPilotSettings) -> dict[str, str]:
    """The secrets to pass, read from this process's environment (never stored)."""
    return {name: os.environ[name] for name in settings.secrets_env if os.environ.get(name)}


def make_task(name: str, attrs: dict[str, Any], settings: SkyPilotSettings, *, with_secrets: bool = False,
              labels: dict[str, str] | None = None):
    """The `sky.Task` for one replica (cluster placement) or the fleet (service placement);
    its resources carry `labels` (`infraplan.providers.contract.project_labels`)."""
    import sky

    resources = make_resources(attrs, settings, labels)
    task = sky.Task(name=name, setup=setup_script(settings, attrs), run=run_command(attrs, settings),
                    envs={k: str(v) for k, v in (attrs.get("env") or {}).items()},
                    secrets={**secrets_from_env(settings), **secret_args_env(attrs)} if with_secrets else None)
    task.set_resources(resources if len(resources) > 1 else resources[0])
    return task
