"""The blocks of an infraplan configuration.

Resource blocks are validated *after* variables, locals, ``each`` and model
references are interpolated; a string that still holds ``${fleet...}`` is a
deferred value resolved at plan/apply time.
"""

from __future__ import annotations

import re
from typing import Any, Literal

from pydantic import Field, field_validator, model_validator

from infraplan.models.base import StrictModel
from infraplan.models.types import Duration
from infraplan.util.patterns import compile_pattern

#: Most replicas one fleet (or one for_each instance) may have: plans hold every replica in memory.
MAX_REPLICAS = 1000
#: Most instances one `for_each` may create.
MAX_FOR_EACH = 1000

Scalar = str | int | float | bool
ALERT_EVENTS = ("drift", "rollout")



def _re2_pattern(pattern: str | None) -> str | None:
    """A user's regular expression must compile on RE2, which runs in linear time (raises ValueError)."""
    if pattern is not None:
        compile_pattern(pattern)
    return pattern


class VariableValidation(StrictModel):
    """One validation rule on a variable's value; every set check must pass."""

    regex: str | None = Field(None, description="The value (as a string) must match this regular expression "
                              "(RE2 syntax: no backreferences or lookaround).")
    allowed: list[Any] | None = Field(None, description="The value must be one of these.")
    min: float | None = Field(None, description="Numbers: the smallest allowed value.")
    max: float | None = Field(None, description="Numbers: the largest allowed value.")
    min_length: int | None = Field(None, description="Strings and lists: the smallest allowed length.")
    max_length: int | None = Field(None, description="Strings and lists: the largest allowed length.")
    error_message: str = Field(..., description="What to tell the user when the rule fails.")

    @field_validator("regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        return _re2_pattern(v)


class VariableBlock(StrictModel):
    """An input variable, set with --var, --var-file or INFRAPLAN_VAR_<name>."""

    type: Literal["string", "number", "bool", "list", "map", "any"] = Field(
        "any", description="The value's type; values from the command line are converted to it."
    )
    default: Any = Field(None, description="The value when none is given; without a default the variable is required.")
    description: str | None = Field(None, description="What the variable is for.")
    sensitive: bool = Field(False, description="Redact the value in plans, output, state history and logs.")
    nullable: bool = Field(False, description="Whether null is an acceptable value.")
    validation: list[VariableValidation] = Field(default_factory=list, description="Rules the value must pass.")


class PluginTimeouts(StrictModel):
    """The longest wait for each call to a provider running as a plugin (its own process).

    A call past its limit is cancelled (the worker is told to stop waiting) and fails with
    a one-line error. A timed-out create, update or delete is not retried, since what it did
    is unknown: the next plan's refresh finds out. Reads, plans and listings may be retried.
    """

    initialize: Duration = Field("2m", description="Starting the plugin process and the protocol handshake.")
    validate_settings: Duration = Field("1m", description="Checking the provider block's settings.")
    plan: Duration = Field("5m", description="Planning one resource (SkyPilot validates resources here).")
    estimate: Duration = Field("5m", description="Pricing one fleet or router (catalog look-ups).")
    prepare_create: Duration = Field("1m", description="Allocating a new resource's identity.")
    create: Duration = Field("2h", description="Creating one resource (launching a cluster, `serve up`).")
    read: Duration = Field("2m", description="Refreshing one resource.")
    update: Duration = Field("2h", description="Updating one resource in place (a SkyServe rolling update).")
    delete: Duration = Field("1h", description="Deleting one resource.")
    service_workers: Duration = Field("2m", description="Listing a service's ready replicas.")
    create_canary: Duration = Field("2h", description="Starting a canary service beside a service fleet.")
    list_instances: Duration = Field("5m", description="Listing the project's instances (orphan discovery).")
    delete_instance: Duration = Field("30m", description="Stopping one listed instance (`infraplan cleanup`).")
    close: Duration = Field("30s", description="Releasing the provider's clients at the end of a run.")


class ProviderBlock(StrictModel):
    """Settings for one provider instance; `type` names the provider plugin."""

    type: str | None = Field(None, description="Provider plugin name (entry point in `infraplan.providers`); defaults to the block's key.")
    settings: dict[str, Any] = Field(default_factory=dict, description="Provider-specific settings, checked by the provider.")
    isolation: Literal["auto", "in_process", "plugin"] = Field(
        "auto", description="Where the provider runs: `in_process`, or `plugin` (its own process and virtualenv, "
        "from `infraplan plugins install TYPE`; for SDKs whose pins clash with infraplan's). `auto`: in-process when "
        "the provider's SDK imports here, else the installed plugin.")
    plugin_timeouts: PluginTimeouts = Field(
        default_factory=PluginTimeouts, description="When the provider runs as a plugin: the longest wait for each "
        "call (durations such as `90s` or `2h`); a call past it is cancelled and fails.")


class AlertBlock(StrictModel):
    """Where to send alerts: one Apprise URL and the topics it gets. The URL is treated as sensitive."""

    url: str = Field(
        ...,
        repr=False,
        description="Apprise URL (slack://, pagerduty://, mailto://, json://host/path, ...); usually holds a secret, "
        "so set it from a `sensitive` variable. Never printed: output shows only its scheme.",
    )
    events: list[Literal["drift", "rollout"]] = Field(
        default_factory=lambda: list(ALERT_EVENTS), description="Topics alerted to this URL; all of them when unset."
    )
    min_severity: Literal["info", "warning", "error"] | None = Field(
        None,
        description="Only findings at least this severe: `info` (idle), `warning` (changed, orphaned), "
        "`error` (missing, unhealthy, cannot be asked). All when unset.",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, v: str) -> str:
        scheme, sep, rest = v.strip().partition("://")
        if not sep or not scheme or not rest:
            raise ValueError("must be an Apprise URL such as `slack://...` or `json://host/path`")
        return v


class ModelArchitecture(StrictModel):
    """Architecture figures used for GPU-fit checks."""

    num_layers: int | None = Field(None, description="Transformer layers.", gt=0)
    num_kv_heads: int | None = Field(None, description="Key/value attention heads.", gt=0)
    head_dim: int | None = Field(None, description="Dimension of one attention head.", gt=0)
    hidden_size: int | None = Field(None, description="Model hidden size.", gt=0)


class ModelBlock(StrictModel):
    """A model version: a registry entry in state, with no infrastructure of its own."""

    source: str = Field(..., description="Where the weights come from, e.g. `hf://org/name` or a local path "
                        "(at most 2048 characters).", max_length=2048)
    revision: str = Field("main", description="The exact revision (commit, tag or branch) to serve.")
    served_name: str | None = Field(None, description="The name clients use (`--served-model-name`); defaults to the source's name.")
    parameters: float | None = Field(None, description="Parameter count, e.g. 8.03e9, for GPU-fit checks.", gt=0)
    dtype: Literal["auto", "float16", "bfloat16", "float32", "fp8", "int8", "int4"] = Field(
        "auto", description="Weight data type, for GPU-fit checks."
    )
    architecture: ModelArchitecture | None = Field(None, description="Architecture figures for KV-cache sizing.")
    owner: str | None = Field(None, description="Who answers for this model version.")
    compliance: dict[str, Any] = Field(default_factory=dict, description="Free-form compliance metadata (license, data class, approvals).")
    description: str | None = Field(None, description="Free text.")

    @field_validator("source")
    @classmethod
    def _source_not_empty(cls, v: str) -> str:
        if not v.strip():
            raise ValueError("source must not be empty")
        return v

    def default_served_name(self) -> str:
        return self.served_name or self.source.rstrip("/").split("/")[-1]


class SimSettings(StrictModel):
    """Knobs of the `sim` engine: a simulator of SGLang's HTTP API, not inference."""

    ttft_ms: float = Field(20.0, description="Simulated time to first token, in milliseconds.", ge=0)
    tpot_ms: float = Field(5.0, description="Simulated time per output token, in milliseconds.", ge=0)
    error_rate: float = Field(0.0, description="Fraction of generation requests that fail with HTTP 500.", ge=0, le=1)
    startup_s: float = Field(0.0, description="Seconds before /health reports ready.", ge=0)
    seed: int = Field(0, description="Seed for the deterministic text.")


class EngineBlock(StrictModel):
    """How replicas serve the model."""

    type: Literal["sim", "sglang"] = Field("sim", description="`sglang` runs SGLang's server; `sim` runs infraplan's SGLang API simulator.")
    args: dict[str, Any] = Field(
        default_factory=dict,
        description="SGLang server args in snake_case (tp_size, context_length, mem_fraction_static, ...); mapped to `--tp-size` etc.",
    )
    sglang_version: str | None = Field(
        None,
        description="The SGLang release this fleet runs: `engine.args` are checked against its parser, and providers "
        "that install SGLang (skypilot) install it. One of the supported releases (README, \"SGLang server args\"); "
        "unset: the newest supported.",
    )
    sim: SimSettings = Field(default_factory=SimSettings, description="Simulator settings (engine `sim` only).")
    env: dict[str, str] = Field(default_factory=dict, description="Extra environment variables for the server process.")


class Lifecycle(StrictModel):
    """Lifecycle rules, as in Terraform."""

    prevent_destroy: bool = Field(False, description="Refuse any plan that destroys or replaces this resource.")
    create_before_destroy: bool | None = Field(
        None, description="Create the replacement before destroying the old one (default for fleet replicas)."
    )
    ignore_changes: list[str] = Field(default_factory=list, description="Attributes whose changes are ignored when planning.")


class ServiceSettings(StrictModel):
    """A fleet served as one load-balanced service (SkyPilot's SkyServe, `placement: service`)."""

    readiness_path: str = Field("/health_generate", description="HTTP path probed before a replica takes traffic.")
    initial_delay_seconds: int = Field(1200, description="Grace period for a replica to load the model before probes count.", ge=0)
    timeout_seconds: int = Field(15, description="Timeout of one readiness probe.", ge=1)
    min_replicas: int | None = Field(None, description="Autoscaling floor; defaults to the fleet's `replicas`.", ge=0,
                                     le=MAX_REPLICAS)
    max_replicas: int | None = Field(None, description="Autoscaling ceiling; unset means a fixed number of replicas.", ge=1,
                                     le=MAX_REPLICAS)
    target_qps_per_replica: float | None = Field(None, description="Autoscale to keep this many requests/s per replica.", gt=0)
    load_balancing_policy: str | None = Field(None, description="SkyServe load balancing policy, e.g. `least_load` or `round_robin`.")
    update_mode: Literal["rolling", "blue_green"] = Field("rolling", description="How a new version replaces the old one.")


# Fleet fields passed to the provider in each replica's attributes (only when set, so
# configs that do not use them plan exactly as before).
FLEET_PROVIDER_FIELDS = ("placement", "instance_type", "use_spot", "spot_fallback", "failover", "disk_size", "service")


class GoldenPrompt(StrictModel):
    """A prompt the new version must answer acceptably before it takes traffic."""

    prompt: str = Field(..., description="The user message sent (chat API).")
    max_tokens: int = Field(32, description="Output tokens to ask for.", ge=1)
    contains: list[str] = Field(default_factory=list, description="Substrings the answer must contain.")
    regex: str | None = Field(None, description="A regular expression the answer must match "
                              "(RE2 syntax: no backreferences or lookaround).")
    json_valid: bool = Field(False, description="The answer must be valid JSON.")
    max_output_tokens: int | None = Field(None, description="The answer may use at most this many tokens.", ge=1)

    @field_validator("regex")
    @classmethod
    def _regex(cls, v: str | None) -> str | None:
        return _re2_pattern(v)


class SloGate(StrictModel):
    """One SLO gate: a metric of the new version, absolute or relative to the baseline."""

    metric: Literal["ttft_p50_ms", "ttft_p95_ms", "ttft_p99_ms", "tpot_p95_ms", "itl_p95_ms", "e2e_p95_ms",
                    "error_rate"] = Field(..., description="What is measured over the step's window.")
    max: float | None = Field(None, description="Absolute upper bound.", ge=0)
    max_ratio: float | None = Field(None, description="Upper bound as a multiple of the baseline's value.", gt=0)


class RolloutAnalysis(StrictModel):
    """How each canary step (or the new set, for blue-green) is judged."""

    window_s: float = Field(20.0, description="Seconds of traffic judged at each step.", gt=0)
    min_requests: int = Field(10, description="Fewest requests the new version must serve to be judged.", ge=1)
    gates: list[SloGate] = Field(default_factory=list, description="SLO gates; any failing gate rolls back.")
    generate_load: bool = Field(True, description="Send a bounded load (as `infraplan bench`) when there is too little traffic.")
    load_concurrency: int = Field(4, description="Concurrency of that load.", ge=1, le=256)


class RolloutBlock(StrictModel):
    """How replicas are replaced when the model version or server args change."""

    strategy: Literal["default", "recreate", "rolling", "blue_green", "canary"] = Field(
        "default", description="`default`: create-before-destroy, all replicas at once; `recreate` stops the old "
        "ones first (capacity drops to zero); `rolling`, `blue_green` and `canary` move traffic through the routers "
        "in front of the fleet.")
    max_surge: int = Field(1, description="rolling: new replicas started at a time.", ge=1, le=MAX_REPLICAS)
    max_unavailable: int = Field(0, description="rolling: old replicas that may be gone before their successor is ready.",
                                 ge=0, le=MAX_REPLICAS)
    readiness_timeout_s: float = Field(120.0, description="Most time a new replica may take to pass readiness.", gt=0)
    steps: list[float] = Field(default_factory=lambda: [25.0, 50.0, 100.0],
                               description="canary: traffic weights in percent, ending at 100 (at most 100 steps).",
                               max_length=100)
    pause_s: float = Field(0.0, description="canary: pause after each step's analysis.", ge=0)
    rollback_window: Duration | None = Field(None, description="blue_green: keep the old set this long (e.g. `10m`) after the switch.")
    analysis: RolloutAnalysis = Field(default_factory=RolloutAnalysis, description="Gates judged at each step.")
    golden_prompts: list[GoldenPrompt] = Field(default_factory=list,
                                               description="Checked against each new replica before it takes traffic.")

    @field_validator("steps")
    @classmethod
    def _steps(cls, v: list[float]) -> list[float]:
        if not v or any(not 0 < x <= 100 for x in v) or v != sorted(v) or v[-1] != 100:
            raise ValueError("steps must be increasing percentages in (0, 100], ending at 100")
        return v


class FleetBlock(StrictModel):
    """Replicas of a model served on given accelerators by one provider."""

    provider: str = Field("local", description="Provider block name (or plugin name) that runs the replicas.")
    model: str = Field(..., description="The model to serve: `model.NAME`.")
    replicas: int = Field(1, description=f"How many replicas (addresses `fleet.NAME[i]`), at most {MAX_REPLICAS}.",
                          ge=0, le=MAX_REPLICAS)
    accelerators: str | None = Field(None, description="GPUs per replica, e.g. `H100:1`.")
    engine: EngineBlock = Field(default_factory=EngineBlock, description="The serving engine and its arguments.")
    port: int | None = Field(None, description="Base port; replica i listens on port+i. Chosen by the provider when unset.", ge=1, le=65535)
    labels: dict[str, str] = Field(default_factory=dict, description="Labels copied to every replica.")
    region: str | None = Field(None, description="Cloud region, where the provider has regions.")
    cloud: str | None = Field(None, description="Cloud, where the provider spans clouds.")
    depends_on: list[str] = Field(default_factory=list, description="Explicit dependencies: addresses such as `fleet.other`.")
    lifecycle: Lifecycle = Field(default_factory=Lifecycle, description="Lifecycle rules.")
    rollout: RolloutBlock = Field(default_factory=RolloutBlock, description="How replicas are replaced on a change.")
    idle_after: Duration | None = Field(
        None, description="`infraplan drift` reports a replica idle after this long without requests, e.g. `2h`, `30m`, `90s`."
    )
    for_each: list[Any] | dict[str, Any] | str | None = Field(
        None,
        description="One fleet instance per item (`fleet.NAME[\"key\"]`); use `${each.key}` and `${each.value}` inside "
        f"(at most {MAX_FOR_EACH} items).",
    )
    description: str | None = Field(None, description="Free text.")
    placement: Literal["cluster", "service"] | None = Field(
        None, description="Cloud providers: `cluster` (one cluster per replica) or `service` (one load-balanced "
        "service for the fleet). Defaults to the provider's setting.")
    instance_type: str | None = Field(None, description="Cloud instance type; chosen by the provider's optimizer when unset.")
    use_spot: bool = Field(False, description="Run replicas on spot (preemptible) instances.")
    spot_fallback: bool = Field(False, description="With `use_spot`: fall back to on-demand instances when no spot capacity is found.")
    failover: list[str] = Field(
        default_factory=list,
        description="Where to run, tried in this order, as `cloud` or `cloud/region` (e.g. `aws/us-east-1`, `gcp`). "
        "Overrides `cloud` and `region`.")
    disk_size: int | None = Field(None, description="Boot disk per replica, in GB.", ge=1)
    throughput_tokens_per_s: float | None = Field(
        None, description="Expected output tokens/s of one replica; the plan then shows $ per 1M output tokens.", gt=0)
    service: ServiceSettings | None = Field(None, description="Service settings for `placement: service`.")

    def provider_attributes(self) -> dict[str, Any]:
        """The set fleet fields of `FLEET_PROVIDER_FIELDS`, for replica attributes."""
        data = self.model_dump(mode="json", include=set(FLEET_PROVIDER_FIELDS), exclude_defaults=True)
        if self.placement == "service" and self.rollout.strategy in ("rolling", "blue_green"):
            # SkyServe carries these two strategies itself: they become its update mode
            data["service"] = {**(data.get("service") or {}), "update_mode": self.rollout.strategy}
        return {k: data[k] for k in FLEET_PROVIDER_FIELDS if k in data}

    @field_validator("failover")
    @classmethod
    def _failover(cls, v: list[str]) -> list[str]:
        for item in v:
            parts = item.split("/")
            if not item or len(parts) > 3 or not all(parts):
                raise ValueError(f"{item!r} must look like `cloud`, `cloud/region` or `cloud/region/zone`")
        return v

    @field_validator("model")
    @classmethod
    def _model_ref(cls, v: str) -> str:
        if not v.startswith("model.") or len(v.split(".")) != 2:
            raise ValueError("must reference a model as `model.NAME`")
        return v

    @field_validator("accelerators")
    @classmethod
    def _accelerators(cls, v: str | None) -> str | None:
        if v is None:
            return v
        name, _, count = v.partition(":")
        if not name or (count and not count.isdigit()) or (count and int(count) < 1):
            raise ValueError("must look like `H100:1` (name and a positive count)")
        return v


#: smg (SGLang Model Gateway) routing policies that need no extra setup.
ROUTER_POLICIES = ("cache_aware", "round_robin", "random", "power_of_two", "least_load", "consistent_hashing",
                   "prefix_hash")


class RouterRetries(StrictModel):
    """How the router retries a request that failed on a worker (smg's retry flags; unset: smg's defaults)."""

    enabled: bool = Field(
        True, description="Retry a failed request on another worker (smg's default). `false` (smg's "
        "`--disable-retries`) lets clients see a failing worker's errors, e.g. a bad canary's.")
    max_retries: int | None = Field(
        None, ge=1, description="Most attempts per request, the first included (smg's `--retry-max-retries`, "
        "default 5; 1 means no retry).")
    initial_backoff_ms: int | None = Field(None, ge=0, description="Wait before the first retry (smg default 50).")
    max_backoff_ms: int | None = Field(None, ge=0, description="Longest wait between retries (smg default 30000).")
    backoff_multiplier: float | None = Field(None, ge=1.0, description="Growth of the wait per retry (smg default 1.5).")
    jitter_factor: float | None = Field(None, ge=0.0, le=1.0, description="Randomness added to the waits, 0-1 "
                                        "(smg default 0.2).")

    @model_validator(mode="after")
    def _tuning_needs_retries(self) -> RouterRetries:
        tuned = [k for k in type(self).model_fields if k != "enabled" and getattr(self, k) is not None]
        if not self.enabled and tuned:
            raise ValueError(f"{', '.join(tuned)} has no effect with `enabled: false`")
        return self


class RouterCircuitBreaker(StrictModel):
    """smg's per-worker circuit breaker: a worker failing this often is ejected, then tried again."""

    enabled: bool = Field(True, description="`false`: smg's `--disable-circuit-breaker`.")
    failure_threshold: int | None = Field(None, ge=1, description="Failures that open a worker's circuit "
                                          "(`--cb-failure-threshold`, smg default 10).")
    success_threshold: int | None = Field(None, ge=1, description="Successes in half-open state that close it "
                                          "again (`--cb-success-threshold`, smg default 3).")
    open_duration: Duration | None = Field(None, description="How long a circuit stays open before a worker is "
                                           "tried again (`--cb-timeout-duration-secs`, smg default 60s).")
    window: Duration | None = Field(None, description="Sliding window the failures are counted in "
                                    "(`--cb-window-duration-secs`, smg default 120s).")

    @model_validator(mode="after")
    def _tuning_needs_the_breaker(self) -> RouterCircuitBreaker:
        tuned = [k for k in type(self).model_fields if k != "enabled" and getattr(self, k) is not None]
        if not self.enabled and tuned:
            raise ValueError(f"{', '.join(tuned)} has no effect with `enabled: false`")
        return self


class RouterTimeouts(StrictModel):
    """How long smg waits (smg has no separate connect timeout: a refused connection fails at once)."""

    request: Duration | None = Field(None, description="Longest a request may take, streaming included "
                                     "(`--request-timeout-secs`, smg default 30m).")
    worker_startup: Duration | None = Field(None, description="Longest a worker may take to be registered "
                                            "(`--worker-startup-timeout-secs`, smg default 30m).")
    idle_connection: Duration | None = Field(None, description="Idle keep-alive connections to workers are "
                                             "closed after this (`--idle-connection-timeout-secs`).")


class RouterRateLimit(StrictModel):
    """Load shedding: admitted requests keep their latency, the excess is answered 429 at once."""

    max_concurrent_requests: int | None = Field(None, ge=1, description="Requests served at once "
                                                "(`--max-concurrent-requests`; smg derives one by default).")
    queue_size: int | None = Field(None, ge=0, description="Requests waiting beyond that; 0 answers 429 at once "
                                   "(`--queue-size`, smg default 100).")
    queue_timeout: Duration | None = Field(None, description="Longest a request waits in the queue "
                                           "(`--queue-timeout-secs`, smg default 60s).")
    tokens_per_second: float | None = Field(None, gt=0, description="Sustained admission rate in requests per "
                                            "second (`--rate-limit-tokens-per-second`).")


class RouterHealthCheck(StrictModel):
    """smg's own probes of its workers (SGLang's `/health` runs a one-token generation)."""

    enabled: bool = Field(True, description="`false`: smg's `--disable-health-check`.")
    interval: Duration | None = Field(None, description="Between probes (`--health-check-interval-secs`, "
                                      "smg default 60s).")
    timeout: Duration | None = Field(None, description="Per probe (`--health-check-timeout-secs`, smg default 5s).")
    failure_threshold: int | None = Field(None, ge=1, description="Failed probes before a worker is marked "
                                          "unhealthy (`--health-failure-threshold`, smg default 3).")
    success_threshold: int | None = Field(None, ge=1, description="Passed probes before it is healthy again "
                                          "(`--health-success-threshold`, smg default 2).")
    endpoint: str | None = Field(None, pattern=r"^/[\w./-]*$", max_length=200, description="Route probed "
                                 "(`--health-check-endpoint`, smg default `/health`).")

    @model_validator(mode="after")
    def _tuning_needs_the_check(self) -> RouterHealthCheck:
        tuned = [k for k in type(self).model_fields if k != "enabled" and getattr(self, k) is not None]
        if not self.enabled and tuned:
            raise ValueError(f"{', '.join(tuned)} has no effect with `enabled: false`")
        return self


#: a router's blocks that are smg launch flags (`infraplan.serving.smg.LAUNCH_ATTRS` maps them)
ROUTER_LAUNCH_BLOCKS = ("retries", "circuit_breaker", "timeouts", "rate_limit", "health_check")


class RouterBlock(StrictModel):
    """A router in front of fleets: one endpoint whose workers are the fleets' replicas."""

    provider: str = Field("local", description="Provider block name (or plugin name) that runs the router.")
    fleets: list[str] = Field(
        ..., min_length=1,
        description="The fleets behind the router, as `fleet.NAME` (every instance of a for_each fleet); "
        "their replicas' endpoints are its workers.")
    policy: Literal[ROUTER_POLICIES] = Field(  # type: ignore[valid-type]
        "cache_aware", description="Load-balancing policy (smg's `--policy`).")
    port: int | None = Field(None, description="Port the router listens on. Chosen by the provider when unset.",
                             ge=1, le=65535)
    retries: RouterRetries = Field(
        default_factory=RouterRetries, description="Retries of failed requests on another worker; a change "
        "restarts the router (they are launch arguments).")
    circuit_breaker: RouterCircuitBreaker = Field(
        default_factory=RouterCircuitBreaker, description="Ejecting a failing worker (smg's circuit breaker); a "
        "change restarts the router.")
    timeouts: RouterTimeouts = Field(default_factory=RouterTimeouts, description="smg's timeouts; a change "
                                     "restarts the router.")
    rate_limit: RouterRateLimit = Field(default_factory=RouterRateLimit, description="Load shedding (smg's "
                                        "admission limits); a change restarts the router.")
    health_check: RouterHealthCheck = Field(default_factory=RouterHealthCheck, description="smg's probes of its "
                                            "workers; a change restarts the router.")
    labels: dict[str, str] = Field(default_factory=dict, description="Labels of the router.")
    description: str | None = Field(None, description="Free text.")

    @field_validator("fleets")
    @classmethod
    def _fleet_refs(cls, v: list[str]) -> list[str]:
        for item in v:
            if not re.fullmatch(r"fleet\.[A-Za-z_][A-Za-z0-9_-]*", item):
                raise ValueError(f"{item!r} must reference a fleet as `fleet.NAME`")
        if len(set(v)) != len(v):
            raise ValueError("lists a fleet twice")
        return v


class OutputBlock(StrictModel):
    """A value shown after apply and by `infraplan output`."""

    value: Any = Field(..., description="The value; may reference resources, e.g. `${fleet.chat.endpoint}`.")
    description: str | None = Field(None, description="Free text.")
    sensitive: bool = Field(False, description="Redact the value in output.")


class BackendBlock(StrictModel):
    """Where the state lives; `--state` and `$INFRAPLAN_STATE` override it. Read before variables:
    its values are written as they are, without `${...}`."""

    url: str | None = Field(None, description="A `postgresql://user@host:port/database` URL: one state a team "
                            "shares. Keep the password out of the file: libpq reads `PGPASSWORD` and `~/.pgpass`.")
    path: str | None = Field(None, description="An SQLite state file, relative to the config directory "
                             "(the default is `infraplan.db` there).")

    @field_validator("url")
    @classmethod
    def _postgres_url(cls, v: str | None) -> str | None:
        if v is not None and not re.match(r"(?i)postgres(ql)?://", v):
            raise ValueError("url must be a postgresql:// URL (an SQLite file is given as `path`)")
        return v

    @model_validator(mode="after")
    def _one(self) -> "BackendBlock":
        if (self.url is None) == (self.path is None):
            raise ValueError("give exactly one of `url` (PostgreSQL) and `path` (an SQLite file)")
        return self


class ConfigFile(StrictModel):
    """One configuration file; a directory's files are merged."""

    variable: dict[str, VariableBlock] = Field(default_factory=dict, description="Input variables.")
    locals: dict[str, Any] = Field(default_factory=dict, description="Named values computed once.")
    provider: dict[str, ProviderBlock] = Field(default_factory=dict, description="Provider settings.")
    model: dict[str, ModelBlock] = Field(default_factory=dict, description="Model versions.")
    fleet: dict[str, FleetBlock] = Field(default_factory=dict, description="Fleets of model servers.")
    router: dict[str, RouterBlock] = Field(default_factory=dict, description="Routers in front of fleets.")
    output: dict[str, OutputBlock] = Field(default_factory=dict, description="Outputs.")
    alert: dict[str, AlertBlock] = Field(default_factory=dict, description="Alert destinations (Apprise URLs).")
    backend: BackendBlock | None = Field(None, description="Where the state lives: an SQLite file (the default, "
                                         "`infraplan.db` beside the config) or a PostgreSQL database.")
