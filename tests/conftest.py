"""Shared fixtures: the anyio backend and an in-process seeded sandbox."""

from __future__ import annotations

import pytest


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio only (the tool's own loop)."""
    return "asyncio"
