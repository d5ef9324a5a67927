"""Run in the skypilot plugin worker (INFRAPLAN_PLUGIN_PRELOAD): the SDK boundary replaced by
tests/helpers/fake_sky.py, which returns SkyPilot's real types (a test steers it through the files
that file describes). FAKE_SKY_FAIL=transient makes every request fail as when the API server
never answers."""

import importlib.util
import os
import sys
from pathlib import Path

import sky

from infraplan_providers.skypilot import client

_spec = importlib.util.spec_from_file_location("infraplan_test_fake_sky",
                                               Path(__file__).with_name("fake_sky.py"))
_mod = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = _mod
_spec.loader.exec_module(_mod)

FAKE = _mod.FakeSky()
client.sdk = lambda: FAKE
if os.environ.get("FAKE_SKY_FAIL") == "transient":  # the API server never answers
    class _Always(list):
        def __bool__(self):
            return True

        def pop(self, _i=-1):
            return sky.exceptions.ApiServerConnectionError("http://127.0.0.1:46580")

    FAKE.fail_next = _Always()
