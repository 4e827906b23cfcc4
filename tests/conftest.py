"""Shared by every test: logs go to the current test's stream."""

from __future__ import annotations

import pytest
import structlog


@pytest.fixture(autouse=True)
def logs_to_the_current_stderr():
    """Tests that run the CLI in-process configure structlog with pytest's captured stream,
    which pytest closes after that test: every test starts from structlog's defaults."""
    structlog.reset_defaults()
    yield
