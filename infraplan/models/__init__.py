"""pydantic models: the single source of truth for the config language."""

from infraplan.models.base import StrictModel
from infraplan.models.config import (
    ConfigFile,
    EngineBlock,
    FleetBlock,
    Lifecycle,
    ModelBlock,
    OutputBlock,
    PluginTimeouts,
    ProviderBlock,
    SimSettings,
    VariableBlock,
    VariableValidation,
)

__all__ = [
    "ConfigFile",
    "EngineBlock",
    "FleetBlock",
    "Lifecycle",
    "ModelBlock",
    "OutputBlock",
    "PluginTimeouts",
    "ProviderBlock",
    "SimSettings",
    "StrictModel",
    "VariableBlock",
    "VariableValidation",
]
