"""`no_cyclic_gc`: the cyclic garbage collector kept out of work whose objects stay alive."""

from __future__ import annotations

import contextlib
import gc
from collections.abc import Iterator


@contextlib.contextmanager
def no_cyclic_gc() -> Iterator[None]:
    """Keep the cyclic GC off while the block runs.

    Config loading and a plan build a great many small objects that stay alive (the
    config, networkx, pydantic validators, the plan); young-generation passes would
    rescan them again and again and free nothing (on a 10,000-resource config more than
    parsing costs; ~3 % of a 1,000-resource plan). Reference counting still frees the
    rest. Afterwards the survivors go straight to the oldest generation (freeze +
    unfreeze), so the first pass after it does not rescan them all, unless someone else
    uses gc.freeze, in which case the permanent generation is left alone.
    """
    was_enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()
        if was_enabled:
            gc.enable()
