"""The engine tests' lab fixture (make_lab: labs with unique names, destroyed after)."""

from tests.engine.conftest import make_lab  # noqa: F401
