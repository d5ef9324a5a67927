"""The engine's one retry policy for provider calls.

Providers and their clients do not retry: they raise ``TransientProviderError`` and
the engine (the apply executor for create/update/delete, refresh for reads) calls
again, at most `ATTEMPTS` times in all, with exponential back-off. One owner keeps
the bound true: a SkyPilot launch that keeps failing is submitted 3 times, not 3 x 3.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

#: attempts per provider call, the first included
ATTEMPTS = 3
#: back-off between attempts: 0.2 s, 0.4 s, ... at most 5 s
WAIT_MULTIPLIER_S = 0.2
WAIT_MAX_S = 5.0


def call_with_retries(fn: Callable[[], T], *, retry_on: type[BaseException] | tuple[type[BaseException], ...],
                      attempts: int = ATTEMPTS, what: str = "call", log: logging.Logger | None = None,
                      wait_multiplier_s: float = WAIT_MULTIPLIER_S) -> T:
    """``fn()``, called again on `retry_on` until it succeeds or `attempts` tries are spent (then it raises)."""
    log = log or logging.getLogger(__name__)
    try:  # the first try without tenacity's machinery: most calls succeed at once
        return fn()
    except retry_on as exc:
        if attempts <= 1:
            raise
        log.debug("%s: transient error, retrying: %s", what, _reason(exc))

    from tenacity import Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

    def before_sleep(state) -> None:
        # +1: the first try ran before tenacity's attempts
        log.debug("%s: try %d of %d failed: %s", what, state.attempt_number + 1, attempts,
                  _reason(state.outcome.exception()))

    for attempt in Retrying(retry=retry_if_exception_type(retry_on), stop=stop_after_attempt(attempts - 1),
                            wait=wait_exponential(multiplier=wait_multiplier_s, max=WAIT_MAX_S),
                            before_sleep=before_sleep, reraise=True):
        with attempt:  # a swallowed failure skips the rest of this block, so return in it
            return fn()
    raise AssertionError("unreachable")  # pragma: no cover - reraise=True raises the last error


def _reason(exc: BaseException | None) -> str:
    text = str(exc) if exc is not None else ""
    return text.splitlines()[0] if text else type(exc).__name__
