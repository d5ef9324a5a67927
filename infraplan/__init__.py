"""infraplan: Terraform for LLM fleets.

Kept import-light on purpose: `infraplan --version` must not pay for pydantic,
networkx or rich. Import submodules where they are used.
"""

__version__ = "0.1.0"
