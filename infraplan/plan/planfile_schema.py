"""The schema of a saved plan file (`plan --out`), checked before anything reads the file.

Strict pydantic models of the plan JSON (`infraplan.plan.model`) and of the apply options
stored beside it: a hand-edited file with a missing key, a value of the wrong type or an
unknown action is refused, naming the first bad field, instead of failing somewhere in
apply or show. Provider attributes (`before`, `after`) stay free-form; cost estimates are
open (providers add their own keys) but the keys the plan views read are typed.

`tests/unit/plan/test_planfile.py` checks that these models name every field of `Change`
and `ApplyOptions`: a field added there must be added here.
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from infraplan.models.actions import Action
from infraplan.models.kinds import ResourceKind


class _Closed(BaseModel):
    """Every key known, no conversions (a "1" is not a number)."""

    model_config = ConfigDict(strict=True, extra="forbid")


class _Open(BaseModel):
    """Known keys typed; others (a provider's own estimate fields) kept as they are."""

    model_config = ConfigDict(strict=True, extra="allow")


class AttributeChangeFile(_Closed):
    path: str
    before: Any  # required, null allowed
    after: Any
    forces_replace: bool = False


class FailoverOption(_Open):
    cloud: str | None = None
    region: str | None = None
    instance_type: str | None = None
    use_spot: bool | None = None
    hourly: float | None = None


class CostUnit(_Open):
    """One replica's estimate (`Provider.estimate`)."""

    cloud: str | None = None
    region: str | None = None
    instance_type: str | None = None
    hourly: float | None = None
    hourly_on_demand: float | None = None
    hourly_spot: float | None = None
    use_spot: bool | None = None
    note: str | None = None
    gpu_memory_gib: float | None = None
    failover: list[FailoverOption] | None = None
    controller: dict[str, Any] | None = None


class RollbackWindowCost(_Open):
    window: str
    seconds: float
    extra_hourly: float
    extra_total: float


class CanaryServiceCost(_Open):
    replicas: int
    extra_hourly: float


class FleetCost(_Open):
    """A fleet change's `cost` (`infraplan.cost.price_plan`)."""

    replicas: int
    unit: CostUnit | None = None
    hourly: float | None = None
    hourly_on_demand: float | None = None
    hourly_spot: float | None = None
    before_hourly: float | None = None
    throughput_tokens_per_s: float | None = None
    usd_per_million_output_tokens: float | None = None
    fit: dict[str, Any] | None = None
    rollback_window: RollbackWindowCost | None = None
    canary_service: CanaryServiceCost | None = None


class ChangeFile(_Closed):
    """One `Change`."""

    address: str = Field(min_length=1)
    kind: ResourceKind = Field(strict=False)  # the enum's value, as JSON has it
    action: Action = Field(strict=False)
    provider: str | None = None
    provider_type: str | None = None
    reasons: list[str] = []
    before: dict[str, Any] | None = None
    after: dict[str, Any] | None = None
    after_unknown: list[str] = []
    attributes: list[AttributeChangeFile] = []
    requires_replace: list[str] = []
    create_before_destroy: bool = True
    dependencies: list[str] = []
    deposed: str = ""
    risks: list[str] = []
    warnings: list[str] = []
    fleet: str | None = None
    cost: FleetCost | None = None
    rolls_out: bool = False


class StateRef(_Closed):
    lineage: str | None
    serial: int = Field(ge=0)


class ConfigRef(_Closed):
    path: str
    digest: str


class PlannedOutput(_Closed):
    value: Any = None
    unknown: bool = False
    sensitive: bool = False


class LocationFile(_Closed):
    file: str
    line: int
    col: int


class DiagnosticFile(_Closed):
    summary: str
    severity: Literal["error", "warning"] = "error"
    location: LocationFile | None = None
    path: str | None = None
    detail: str | None = None
    extra: dict[str, Any] = {}


class SharedMachine(_Open):
    """A machine several fleets share (a SkyServe controller, a router VM), counted once."""

    key: str
    note: str | None = None
    hourly: float | None = None
    cloud: str | None = None
    region: str | None = None
    instance_type: str | None = None
    before: bool = False
    after: bool = False


class PlanCost(_Open):
    currency: str = "USD"
    before_hourly: float
    after_hourly: float
    delta_hourly: float
    unpriced: list[str] = []
    shared: list[SharedMachine] | None = None


class DesiredConfig(_Open):
    variables: dict[str, Any] = {}


class ApplyOptionsFile(_Closed):
    """`infraplan.plan.planfile.ApplyOptions`."""

    refresh: bool = True
    targets: list[str] = []
    replace: list[str] = []
    destroy: bool = False
    var_args: list[str] = []
    var_files: list[str] = []
    state: str = ""
    refresh_only: bool = False
    force: bool = False
    withheld_vars: list[str] = []
    author: str = ""


class PlanFile(_Closed):
    """A whole plan file: the plan JSON (format 1.0) and `apply_options`."""

    format_version: Literal["1.0"]
    infraplan_version: str = ""
    created_at: str
    state: StateRef
    config: ConfigRef
    refreshed: bool = True
    destroy: bool = False
    summary: dict[str, int] = {}  # derived from the changes; not read back
    changes: list[ChangeFile]
    outputs: dict[str, PlannedOutput] = {}
    diagnostics: list[DiagnosticFile] = []
    desired_config: DesiredConfig | None = None
    cost: PlanCost | None = None
    apply_options: ApplyOptionsFile = ApplyOptionsFile()
