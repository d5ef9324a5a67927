"""SkyClient's call timeout fires on time, cancels the request and is not retried."""

from __future__ import annotations

import threading
import time
import types

import pytest

from infraplan.errors import ProviderError, TransientProviderError
from infraplan_providers.skypilot import client as client_mod
from helpers.timing import within


class _Exceptions:  # what translate_error looks at; none of these is raised here
    ResourcesUnavailableError = NoCloudAccessError = ClusterDoesNotExist = type("Never", (Exception,), {})


def test_a_half_second_timeout_fires_after_half_a_second_not_after_the_call(monkeypatch):
    calls, cancelled, release = [], [], threading.Event()

    def launch(*args, **kwargs):
        calls.append(args)
        return f"req-{len(calls)}"

    def get(request_id):
        release.wait(3.0)  # a request that takes 3 s
        return None

    fake = types.SimpleNamespace(launch=launch, get=get, stream_and_get=get, api_cancel=cancelled.append,
                                 exceptions=_Exceptions)
    monkeypatch.setattr(client_mod, "sdk", lambda: fake)
    sky = client_mod.SkyClient(timeout_s=0.5)
    t0 = time.monotonic()
    with pytest.raises(ProviderError, match="did not finish in 0.5s") as info:
        sky._call("launch", "task")
    elapsed = time.monotonic() - t0
    release.set()
    assert elapsed < within(1.5), elapsed
    assert not isinstance(info.value, TransientProviderError)
    assert calls == [("task",)], "a timed-out launch is never submitted again"
    assert cancelled == ["req-1"]
