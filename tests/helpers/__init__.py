"""Test helpers, one importable package (``import helpers.cli``; `tests/` is on the path).

    cli           the CLI in-process, a small config, state fingerprints
    net           free ports
    drift         an applied local fleet with helpers that change the world behind its back
    rollout       a rollout fleet of simulator replicas, and steady load
    fixtures      pytest fixtures every folder may use (registered by tests/conftest.py)
    fake_server   a non-SGLang HTTP server script (drift's "not an SGLang server" case)
    fake_sky      SkyPilot's SDK faked at the narrow client boundary, returning SkyPilot's real types
    fake_preload  loads fake_sky into a skypilot plugin worker (INFRAPLAN_PLUGIN_PRELOAD)
    skypilot_plugin  the shared catalogs, SkyPilot's environment, faked plugin workers, a plugin interpreter
    plugins       a plugin virtualenv that is this venv (the `plugin_venv` fixture)
    golden_state  the script that makes the golden tests' state files
    postgres      a throwaway PostgreSQL database per test (the `postgres_url` and `state_location` fixtures)
"""
