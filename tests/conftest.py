"""Shared fixtures: the anyio backend and an in-process seeded sandbox."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from migrate import credentials


@pytest.fixture
def anyio_backend() -> str:
    """Run async tests on asyncio only (the tool's own loop)."""
    return "asyncio"


@pytest.fixture(autouse=True)
def _isolated_secrets() -> Iterator[None]:
    """Secrets a test registers (Hypothesis draws many) are forgotten when it ends."""
    saved = set(credentials._known_secrets)
    yield
    credentials._known_secrets.clear()
    credentials._known_secrets.update(saved)
