"""Waits the tool takes between its own attempts end at once when the run is interrupted."""

from __future__ import annotations

import asyncio

import pytest

from migrate.client import DataAppClient, DatabrainClient
from migrate.throttle import Throttle


@pytest.mark.anyio
@pytest.mark.parametrize("kind", ["service", "data-app"])
async def test_a_pause_ends_when_the_throttle_closes(kind: str) -> None:
    """A 10-minute pause before re-checking an uncertain write ends on the first interrupt."""
    throttle = Throttle(4)
    client: DatabrainClient
    if kind == "service":
        client = DatabrainClient("http://127.0.0.1:9", "token-abcd", pacer=throttle)
    else:
        client = DataAppClient(
            "http://127.0.0.1:9", "key-abcd", data_app="App", pacer=throttle
        )._http
    try:
        waiting = asyncio.ensure_future(client.pause(600))
        await asyncio.sleep(0)  # let the pause begin
        assert not waiting.done()
        throttle.close()
        await asyncio.wait_for(waiting, timeout=10)
    finally:
        await client.aclose()
