"""Fixtures for registry tests."""

from __future__ import annotations

import pytest

from .builders import Log


@pytest.fixture
def log() -> Log:
    return Log()
