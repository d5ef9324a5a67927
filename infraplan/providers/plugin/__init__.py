"""Providers in a process of their own: the host (`host`) and the worker it starts (`worker`), speaking
JSON-RPC 2.0 (`protocol`)."""
