"""Fixtures of tests/models (defined in hub_server.py, which the tests also import helpers from)."""

from hub_server import hub_env, server  # noqa: F401
