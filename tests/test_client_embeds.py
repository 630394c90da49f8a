"""The client's embed, workspace-creation, datasource and filter-rebinding calls against the
in-process sandbox: typed records, ids read from answers, errors mapped, keys never shown."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest
from starlette.applications import Starlette

from migrate.client import DataAppClient, DatabrainClient
from migrate.credentials import read_data_app_key, redact
from migrate.errors import (
    AuthError,
    DashboardNotFoundError,
    EmbedNotFoundError,
    RequestRejectedError,
    ServerError,
    TransportError,
    WorkspaceExistsError,
    WorkspaceNotFoundError,
)
from migrate.models import ColumnRef, ConnectionType, FilterRebinding, WorkspaceBinding
from migrate.sandbox import DEFAULT_TOKEN, Sandbox, SandboxConfig, create_app
from migrate.transport import asgi_transport

pytestmark = pytest.mark.anyio
KEY = "demo-dev-app-key"


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


def make_app(**config: Any) -> Starlette:
    return create_app(SandboxConfig(":memory:", seed="demo", random_seed=5, **config))


def data_app_client(app: Starlette, key: str = KEY, **kw: Any) -> DataAppClient:
    async def no_sleep(_: float) -> None:
        return None

    return DataAppClient(
        "http://sandbox",
        key,
        data_app="Sales Dev App",
        key_source="env var DEV_APP_KEY",
        transport=asgi_transport(app),  # a dropped answer reads as a lost connection
        sleep=no_sleep,
        **kw,
    )


@pytest.fixture
async def service(app: Starlette) -> AsyncIterator[DatabrainClient]:
    async with DatabrainClient(
        "http://sandbox", DEFAULT_TOKEN, transport=httpx.ASGITransport(app=app)
    ) as client:
        yield client


@pytest.fixture
def app() -> Starlette:
    return make_app()


@pytest.mark.parametrize("scheme", ["suffix", "uuid"])
async def test_create_returns_the_minted_id_under_both_schemes(scheme: str) -> None:
    """create_embed returns the id the server minted (whatever its shape), and that id lists,
    exports and deletes."""
    app = make_app(embed_ids=scheme)
    async with data_app_client(app) as client:
        embed_id = await client.create_embed(
            "Sales Dev", "region-emea", "EMEA", access_settings={"isAllowUnderlyingData": True}
        )
        sandbox: Sandbox = app.state.sandbox
        assert embed_id == sandbox.embed_ids("Sales Dev App")[-1]
        assert embed_id != "region-emea"
        listed = {e.id: e for e in await client.list_embeds()}
        assert listed[embed_id].dashboard_id == "region-emea"
        assert listed[embed_id].access_settings is None  # the listing does not carry them
        exported = await client.export_embed(embed_id)
        assert exported.embed.access_settings == {"isAllowUnderlyingData": True}
        assert exported.data == sandbox.get_dashboard("Sales Dev", "region-emea")
        await client.delete_embed(embed_id, delete_dashboard=True)
        assert sandbox.get_dashboard("Sales Dev", "region-emea") is None


async def test_list_embeds_in_one_request_and_types_records(app: Starlette) -> None:
    """All 13 embeds from one unpaginated request, as Embed records (metric embeds carry their
    metric id)."""
    async with data_app_client(app) as client:
        for i in range(9):
            await client.create_embed("Sales Dev", "kpi-core", f"K{i}")
        embeds = await client.list_embeds()
        dashboards = await client.list_dashboards()
    assert len(embeds) == 13
    assert [e.id for e in embeds] == app.state.sandbox.embed_ids("Sales Dev App")
    metric = next(e for e in embeds if e.type == "metric")
    assert metric.dashboard_id == "exec-summary" and metric.metric_id
    assert len(dashboards) == 12 and all(d.embed_id for d in dashboards)
    assert len(app.state.sandbox.requests("list_embeds")) == 1


async def test_update_and_rename(app: Starlette) -> None:
    """update_access_settings and rename_embed change what export_embed reads back."""
    async with data_app_client(app) as client:
        embed_id = (await client.list_embeds())[0].id
        await client.update_access_settings(embed_id, {"datamartName": "sales-mart"})
        await client.rename_embed(embed_id, "Overview", rename_dashboard=True)
        exported = await client.export_embed(embed_id)
    assert exported.embed.access_settings == {"datamartName": "sales-mart"}
    assert exported.embed.name == "Overview"
    assert ("sales-overview", "Overview") in app.state.sandbox.list_dashboards("Sales Dev")


async def test_bad_key_is_an_auth_error_naming_the_data_app_not_the_key(app: Starlette) -> None:
    """A refused key: AuthError (exit 5) 'bad credentials for data app X', naming the env var,
    never the key; the service token is refused on embed calls too."""
    secret = "wrong-key-0123456789"
    for key in (secret, DEFAULT_TOKEN):
        async with data_app_client(app, key) as client:
            with pytest.raises(AuthError) as info:
                await client.list_embeds()
        text = str(info.value)
        assert info.value.exit_code == 5
        assert "bad credentials for data app 'Sales Dev App'" in text
        assert "DEV_APP_KEY" in text and key not in text
        assert (
            key not in repr(info.value.__cause__) and info.value.code == "INVALID_DATA_APP_API_KEY"
        )


async def test_missing_embed_and_missing_dashboard_have_their_own_errors(app: Starlette) -> None:
    """'Embed not found' is EmbedNotFoundError for every embed-id call; an unknown dashboard or
    workspace on creation is DashboardNotFoundError / WorkspaceNotFoundError."""
    async with data_app_client(app) as client:
        for call in (
            client.delete_embed("nope", delete_dashboard=True),
            client.export_embed("nope"),
            client.update_access_settings("nope", {}),
            client.rename_embed("nope", "x"),
        ):
            with pytest.raises(EmbedNotFoundError) as info:
                await call
            assert info.value.embed_id == "nope" and info.value.data_app == "Sales Dev App"
        with pytest.raises(DashboardNotFoundError) as missing:
            await client.create_embed("Sales Dev", "nope", "x")
        assert missing.value.dashboard_id == "nope"
        with pytest.raises(WorkspaceNotFoundError):
            await client.create_embed("Sales Nowhere", "kpi-core", "x")
        with pytest.raises(RequestRejectedError, match="must be one of"):
            await client.create_embed("Sales Dev", "kpi-core", "x", embed_type="chart")


async def test_create_and_delete_are_not_blindly_retried() -> None:
    """A 5xx on create or delete is raised as uncertain after one attempt; a read is retried."""
    app = make_app(fail_rate=1.0)
    sandbox: Sandbox = app.state.sandbox
    async with data_app_client(app) as client:
        with pytest.raises(ServerError) as info:
            await client.create_embed("Sales Dev", "kpi-core", "x")
        assert info.value.uncertain and info.value.attempts == 1
        with pytest.raises(ServerError):
            await client.delete_embed("whatever")
        with pytest.raises(ServerError) as read:
            await client.list_embeds()
    assert read.value.attempts > 1 and not read.value.uncertain
    assert len(sandbox.requests("create_embed")) == 1
    assert len(sandbox.requests("delete_embed")) == 1


async def test_lost_delete_answer_then_confirmed_by_listing() -> None:
    """A delete whose answer is lost is uncertain; retrying says EmbedNotFoundError, and the
    listing confirms the embed is gone."""
    app = make_app()
    sandbox: Sandbox = app.state.sandbox
    embed_id = sandbox.embed_ids("Sales Dev App")[2]
    sandbox.faults.drop_rate = 1.0
    async with data_app_client(app) as client:
        with pytest.raises(TransportError) as lost:
            await client.delete_embed(embed_id, delete_dashboard=True)
        assert lost.value.uncertain and lost.value.attempts == 1
        sandbox.faults.drop_rate = 0
        with pytest.raises(EmbedNotFoundError):
            await client.delete_embed(embed_id, delete_dashboard=True)
        assert embed_id not in {e.id for e in await client.list_embeds()}


async def test_create_workspace_datasources_and_taken_name(
    app: Starlette, service: DatabrainClient
) -> None:
    """create_workspace binds a new workspace; a taken name is WorkspaceExistsError (confirmed
    by listing); list_datasources gives the seeded names."""
    assert await service.list_datasources() == ["pg-dev", "pg-staging", "pg-prod"]
    binding = WorkspaceBinding(ConnectionType.DATASOURCE, "pg-prod")
    assert await service.create_workspace("Sales EU", binding) == "Sales EU"
    assert app.state.sandbox.workspace_binding("Sales EU") == ("DATASOURCE", "pg-prod")
    with pytest.raises(WorkspaceExistsError) as taken:
        await service.create_workspace("Sales EU", binding)
    assert taken.value.workspace == "Sales EU" and taken.value.exit_code == 5
    mart = WorkspaceBinding(ConnectionType.DATAMART, "sales-mart")
    await service.create_workspace("Mart", mart)
    assert app.state.sandbox.workspace_binding("Mart") == ("DATAMART", "sales-mart")
    with pytest.raises(RequestRejectedError) as unknown:
        await service.create_workspace("Other", WorkspaceBinding(ConnectionType.DATASOURCE, "x"))
    assert not isinstance(unknown.value, WorkspaceExistsError)


async def test_rebind_filters_then_read_back(app: Starlette, service: DatabrainClient) -> None:
    """rebind_filters sends the documented body; the export reads the new binding back."""
    column = ColumnRef("analytics", "orders", "region_code", "string")
    await service.rebind_filters(
        "Sales Dev",
        [
            FilterRebinding("kpi-core", "Region", (column,)),
            FilterRebinding("missing-dashboard", "Region", (column,)),
        ],
    )
    export = await service.export_dashboard("Sales Dev", "kpi-core")
    region = next(c for c in export.data["filters"][0]["columns"] if c["label"] == "Region")
    assert region["applyOnTables"] == [
        {"dataType": "string", "schemaName": "analytics", "tableName": "orders",
         "columnName": "region_code"}
    ]  # fmt: skip


def test_data_app_key_is_read_from_env_and_redacted() -> None:
    """read_data_app_key takes the env var, registers the key for redaction, and names only the
    variable when it is missing."""
    token = read_data_app_key(
        "Sales App", key_env="APP_KEY", key_file=None, url="u", environ={"APP_KEY": "k-12345678"}
    )
    assert token.value == "k-12345678" and "k-12345678" not in str(token)
    assert redact("key k-12345678 here") == "key *** here"
    with pytest.raises(AuthError, match="APP_KEY is not set") as info:
        read_data_app_key("Sales App", key_env="APP_KEY", key_file=None, url="u", environ={})
    assert info.value.exit_code == 5
