"""Fixtures for sandbox tests: a demo-seeded in-memory app and an httpx client bound to it."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from migrate.sandbox import DEFAULT_TOKEN, Sandbox, SandboxConfig, create_app

AUTH = {"Authorization": f"Bearer {DEFAULT_TOKEN}"}


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


@pytest.fixture
def config() -> SandboxConfig:
    return SandboxConfig(db_path=":memory:", seed="demo", random_seed=7)


@pytest.fixture
def app(config: SandboxConfig) -> Starlette:
    return create_app(config)


@pytest.fixture
def sandbox(app: Starlette) -> Sandbox:
    result: Sandbox = app.state.sandbox
    return result


def client_for(app: Starlette, **kwargs: Any) -> httpx.AsyncClient:
    """An authenticated in-process client for `app`."""
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://sandbox", headers=AUTH, **kwargs
    )


@pytest.fixture
async def client(app: Starlette) -> AsyncIterator[httpx.AsyncClient]:
    async with client_for(app) as c:
        yield c
