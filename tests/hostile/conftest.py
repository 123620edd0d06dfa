"""Fixtures shared by the hostile tests: the in-process CLI on a clean environment."""

from tests.unit.test_cli import cli, home

__all__ = ["cli", "home"]
