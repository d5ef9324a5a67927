"""Settings of a `skypilot` provider block."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, field_validator, model_validator

from infraplan.models.base import StrictModel
from infraplan.serving.sglang_args import DEFAULT_VERSION, unsupported_version

DEFAULT_PLAN_CLOUDS = ("aws", "gcp", "lambda", "runpod")


class SkyPilotSettings(StrictModel):
    """`provider: {sky: {type: skypilot, settings: {...}}}`."""

    @model_validator(mode="before")
    @classmethod
    def _no_retries(cls, data):
        if isinstance(data, dict) and "retries" in data:
            raise ValueError("`retries` is no longer a SkyPilot setting: infraplan retries every provider call "
                             "that fails transiently, 3 attempts in all; remove it")
        return data

    placement: Literal["cluster", "service"] = Field(
        "cluster", description="Default placement: one SkyPilot cluster per replica, or one SkyServe service per fleet.")
    sglang_version: str = Field(
        DEFAULT_VERSION, description="SGLang version `setup` installs on each node (`sglang[all]==VERSION`) for fleets "
        "that pin none (`engine.sglang_version`); one of the supported releases, the newest by default.")
    @field_validator("sglang_version")
    @classmethod
    def _supported(cls, v: str) -> str:
        problem = unsupported_version(v)
        if problem:
            raise ValueError(problem)
        return v

    port: int = Field(30000, description="Port the SGLang server listens on, on each node.", ge=1, le=65535)
    idle_minutes_to_autostop: int | None = Field(
        None, description="Cluster placement: stop a cluster after this many idle minutes.", ge=0)
    secrets_env: list[str] = Field(
        default_factory=lambda: ["HF_TOKEN"],
        description="Names of environment variables copied from your environment to the servers as SkyPilot "
        "secrets (never written to state or plan). Missing ones are skipped.")
    plan_clouds: list[str] = Field(
        default_factory=lambda: list(DEFAULT_PLAN_CLOUDS),
        description="Clouds the plan-time optimizer may choose from when a fleet names none (pricing needs no credentials).")
    timeout_s: float = Field(3600.0, description="Longest wait for one SkyPilot request (launch, serve up, ...).", gt=0)
    poll_s: float = Field(15.0, description="Service placement: seconds between `sky serve status` polls while "
                          "waiting for replicas to be READY.", ge=0)
    name_prefix: str = Field("infraplan", description="Prefix of cluster and service names.")
    router_infra: str | None = Field(
        None, description="Routers: where the router's CPU VM runs, as a SkyPilot infra string (`aws/us-east-1`); "
        "put it near the fleets. Unset: the cheapest CPU VM on `plan_clouds`.")
    router_cpus: str = Field("2+", description="Routers: vCPUs of the router's VM (a SkyPilot `cpus` value).")
    router_port: int = Field(30080, description="Routers: the port smg listens on when the router block sets none.",
                             ge=1, le=65535)
    smg_version: str = Field("1.13.0", description="Routers: the SGLang Model Gateway version `setup` installs "
                             "(`smg==VERSION`).")
    router_admin_key_env: str = Field(
        "INFRAPLAN_ROUTER_ADMIN_KEY", description="Routers: environment variable holding the key that guards smg's "
        "control plane (its /workers API) on the public port; passed as a SkyPilot secret, never stored. Unset "
        "in the environment: the control plane is open to whoever reaches the port.")
    router_api_key_env: str = Field(
        "INFRAPLAN_ROUTER_API_KEY", description="Routers: environment variable holding the key clients must send "
        "(as a bearer token) to reach the models through the router's public port (smg's `--api-key`); passed as "
        "a SkyPilot secret, never stored. Unset in the environment: the plan warns that inference is open to "
        "whoever reaches the port.")
    router_ready_timeout_s: float = Field(900.0, description="Routers: longest wait for smg to answer /health "
                                          "after the cluster is up (it installs smg first).", gt=0)
