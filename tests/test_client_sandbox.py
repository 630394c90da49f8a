"""The client against the in-process sandbox: documented shapes, pagination and error mappings
end to end through real HTTP semantics (ASGI), not mocks."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from migrate.client import ClientOptions, DatabrainClient
from migrate.errors import (
    AuthError,
    DashboardNotFoundError,
    RequestRejectedError,
    WorkspaceNotFoundError,
)
from migrate.jsontext import dump_json
from migrate.models import ExportFile, SchemaPair
from migrate.retry import RetryPolicy
from migrate.sandbox import SandboxConfig, create_app
from migrate.schemapairs import rewritten_text
from migrate.transport import asgi_transport

pytestmark = pytest.mark.anyio


@pytest.fixture
def app():  # type: ignore[no-untyped-def]
    """A seeded in-memory sandbox app."""
    return create_app(SandboxConfig(db_path=":memory:", seed="demo", token="good-token"))


@pytest.fixture
async def client(app) -> AsyncIterator[DatabrainClient]:  # type: ignore[no-untyped-def]
    """A client with the right token."""
    async with DatabrainClient(
        "http://sandbox",
        "good-token",
        token_source="env var SBX",
        transport=asgi_transport(app),
        options=ClientOptions(retry=RetryPolicy(attempts=1)),
    ) as c:
        yield c


async def test_listing_is_one_request(client: DatabrainClient, app) -> None:  # type: ignore[no-untyped-def]
    """14 dashboards come back whole from one unpaginated request, in the server's order."""
    refs = await client.list_dashboards("Sales Dev")
    assert len(refs) == 14
    assert [r.id for r in refs] == [i for i, _ in app.state.sandbox.list_dashboards("Sales Dev")]
    pages = [r for r in app.state.sandbox.requests("list_dashboards")]
    assert len(pages) == 1
    assert await client.list_workspaces() == [
        "Sales Dev",
        "Sales Staging",
        "Sales Prod",
        "Sales Dev Next",
    ]
    metrics = await client.list_metrics("Sales Dev")
    assert metrics and all(m.id for m in metrics)


@pytest.mark.parametrize(("count", "requests"), [(12, 1), (10, 3), (9, 1), (0, 1)])
async def test_listing_requests_by_workspace_size(app, count: int, requests: int) -> None:  # type: ignore[no-untyped-def]
    """Any size but exactly one page is one request; 10 items may be a page, so pages 1 and 2
    are read to be sure."""
    sandbox = app.state.sandbox
    sandbox.store.add_workspace("Sized")
    for n in range(count):
        sandbox.put_dashboard("Sized", f"t{n:02d}", f"T{n}", {"layout": []})
    async with DatabrainClient("http://sandbox", "good-token", transport=asgi_transport(app)) as c:
        refs = await c.list_dashboards("Sized")
    assert [r.id for r in refs] == [f"t{n:02d}" for n in range(count)]
    assert len(sandbox.requests("list_dashboards")) == requests


async def test_export_and_import_round_trip(client: DatabrainClient, app) -> None:  # type: ignore[no-untyped-def]
    """An export's data imports under the same id, and the copy equals the source."""
    export = await client.export_dashboard("Sales Dev", "kpi-core")
    assert export.document["_meta"]["dashboardId"] == "kpi-core"
    assert export.raw.startswith(b"{")
    result = await client.import_dashboard("Sales Prod", "kpi-core", export.data)
    assert result.dashboard_id == "kpi-core" and result.message
    assert app.state.sandbox.get_dashboard("Sales Prod", "kpi-core") == export.data


async def test_bad_token_is_auth_error_naming_the_variable(app) -> None:  # type: ignore[no-untyped-def]
    """The sandbox's 400 AUTH_ERROR becomes AuthError naming the env var, not the token."""
    async with DatabrainClient(
        "http://sandbox", "bad-token", token_source="env var SBX", transport=asgi_transport(app)
    ) as c:
        with pytest.raises(AuthError) as info:
            await c.list_dashboards("Sales Dev")
    assert "SBX" in str(info.value) and "bad-token" not in str(info.value)


async def test_unknown_workspace_lists_the_real_ones(client: DatabrainClient) -> None:
    """WORKSPACE_ID_ERROR names the missing workspace and the ones that exist."""
    with pytest.raises(WorkspaceNotFoundError) as info:
        await client.list_dashboards("sales dev")
    assert info.value.available == ("Sales Dev", "Sales Staging", "Sales Prod", "Sales Dev Next")


async def test_export_of_missing_dashboard(client: DatabrainClient) -> None:
    """An unknown dashboard id is 'dashboard X not found in workspace W'."""
    with pytest.raises(DashboardNotFoundError, match="dashboard nope not found in workspace Sales"):
        await client.export_dashboard("Sales Dev", "nope")


async def test_invalid_body_shows_the_validator_message(client: DatabrainClient) -> None:
    """INVALID_REQUEST_BODY from the sandbox carries its Joi-style message."""
    with pytest.raises(RequestRejectedError, match=r'replaceSchema" is not allowed to be empty'):
        await client.import_dashboard("Sales Prod", "x", {"layout": []}, schema_pairs=(("", "a"),))


async def test_duplicate_import_is_refused_and_creates_nothing(
    client: DatabrainClient, app
) -> None:  # type: ignore[no-untyped-def]
    """A second import of one id is refused (undocumented code) and leaves one copy."""
    export = await client.export_dashboard("Sales Dev", "kpi-core")
    await client.import_dashboard("Sales Prod", "kpi-core", export.data)
    with pytest.raises(RequestRejectedError):
        await client.import_dashboard("Sales Prod", "kpi-core", export.data)
    ids = [i for i, _ in app.state.sandbox.list_dashboards("Sales Prod")]
    assert ids.count("kpi-core") == 1


async def test_read_back_is_proven_on_the_text_or_parsed(client: DatabrainClient) -> None:
    """After an import with a schema pair, the read-back equals the expected text (raw bytes,
    no parse); expecting anything else gives the parsed export to compare."""
    export = await client.export_dashboard("Sales Dev", "kpi-core")
    pairs = (SchemaPair("analytics_dev", "analytics"),)
    await client.import_dashboard(
        "Sales Prod", "kpi-copy", export.data, schema_pairs=(("analytics_dev", "analytics"),)
    )
    expected = rewritten_text(dump_json(export.data), pairs)
    assert expected is not None and b"analytics_dev" in dump_json(export.data)
    assert b"analytics_dev" not in expected
    assert isinstance(await client.read_back("Sales Prod", "kpi-copy", expected), bytes)
    parsed = await client.read_back("Sales Prod", "kpi-copy", dump_json(export.data))
    assert isinstance(parsed, ExportFile) and parsed.data != export.data
