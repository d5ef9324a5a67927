"""Fixtures of the drift tests (defined in drift_helpers, a uniquely named module)."""

from drift_helpers import make_fleet, webhook  # noqa: F401
