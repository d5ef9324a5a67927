"""The configuration loader: HCL-like YAML files -> a validated, evaluated `Config`."""

from infraplan.config.expressions import (
    INVALID,
    UNKNOWN,
    EvalContext,
    ExpressionError,
    Reference,
    escape,
    evaluate,
    has_deferred,
    parse_template,
    references,
    resolve_deferred,
    unescape,
)
from infraplan.config.loader import Config, OutputConfig, ResourceConfig, load_config, validate_config
from infraplan.config.variables import resolve_variables
from infraplan.config.yaml_positions import Positions, format_path, load_yaml, parse_path

__all__ = [
    "INVALID",
    "UNKNOWN",
    "Config",
    "EvalContext",
    "ExpressionError",
    "OutputConfig",
    "Positions",
    "Reference",
    "ResourceConfig",
    "escape",
    "evaluate",
    "format_path",
    "has_deferred",
    "load_config",
    "load_yaml",
    "parse_path",
    "parse_template",
    "references",
    "resolve_deferred",
    "resolve_variables",
    "unescape",
    "validate_config",
]
