"""The base every config model derives from."""

from pydantic import BaseModel, ConfigDict


class StrictModel(BaseModel):
    """Unknown keys are errors, so a typo never passes silently."""

    # defer_build: a model is compiled on first use, so commands pay only for the blocks they meet
    model_config = ConfigDict(extra="forbid", populate_by_name=True, defer_build=True)
