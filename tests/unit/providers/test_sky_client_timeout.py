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


def _fake_sdk(requests: list, calls: list):
    """The SDK calls `launch` makes; `api_status` answers like SkyPilot's (RequestPayload fields)."""
    def launch(*args, **kwargs):
        calls.append(("launch", kwargs.get("cluster_name")))
        return "req-new"

    def get(request_id):
        calls.append(("wait", request_id))
        return None

    def api_status(cluster_name=None, **_):
        calls.append(("api_status", cluster_name))
        return [r for r in requests if r.cluster_name == cluster_name]

    return types.SimpleNamespace(launch=launch, get=get, stream_and_get=get, api_status=api_status,
                                 api_cancel=lambda rid: None, exceptions=_Exceptions,
                                 status=lambda *a, **k: "req-status",
                                 StatusRefreshMode=types.SimpleNamespace(FORCE="force", NONE="none"))


def _payload(name: str, status: str, cluster: str, rid: str):
    return types.SimpleNamespace(request_id=rid, name=name, status=status, cluster_name=cluster)


def test_a_launch_still_running_on_the_api_server_is_waited_for_not_submitted_again(monkeypatch):
    """After a timed-out or killed apply, the next launch of the same cluster asks SkyPilot
    first: one intent never makes two launches (or two clusters)."""
    calls: list = []
    running = [_payload("sky.launch", "RUNNING", "infraplan-chat-0", "req-old"),
               _payload("sky.down", "RUNNING", "infraplan-chat-0", "req-down"),
               _payload("sky.launch", "RUNNING", "infraplan-chat-1", "req-other")]
    monkeypatch.setattr(client_mod, "sdk", lambda: _fake_sdk(running, calls))
    sky = client_mod.SkyClient(timeout_s=5)
    monkeypatch.setattr(sky, "status", lambda name, **_: {"status": "running"})
    assert sky.launch("task", "infraplan-chat-0") == {"status": "running"}
    assert calls == [("api_status", "infraplan-chat-0"), ("wait", "req-old")]

    calls.clear()
    done = [_payload("sky.launch", "SUCCEEDED", "infraplan-chat-0", "req-old")]
    monkeypatch.setattr(client_mod, "sdk", lambda: _fake_sdk(done, calls))
    sky.launch("task", "infraplan-chat-0")
    assert calls == [("api_status", "infraplan-chat-0"), ("launch", "infraplan-chat-0"), ("wait", "req-new")]
