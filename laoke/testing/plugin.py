"""pytest fixtures shared by every test suite.

Session-wide: one real PostgreSQL server and one real broker (embedded unless DATABASE_URL /
KAFKA_BOOTSTRAP_SERVERS are set), one migrated database, and every component serving real HTTP.
Tests isolate themselves by creating their own shops, exactly as tenants are isolated in production.
Tests that must break things (stop the broker, crash a consumer) ask for `isolated` instead: their
own database and broker.
"""

from __future__ import annotations

import secrets
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from laoke.contracts.topics import ALL_TOPICS
from laoke.devstack.broker import EmbeddedBroker
from laoke.kit.kafka import ensure_topics
from laoke.testing.infra import Infra, create_database, drop_database, migrate_all, start_broker
from laoke.testing.servers import TEST_ADMIN_TOKEN, ServerSet, start_servers


@pytest.fixture(scope="session")
def work_dir() -> Path:
    folder = Path(".laoke/test").resolve()
    folder.mkdir(parents=True, exist_ok=True)
    return folder


@pytest.fixture(scope="session")
def infra(work_dir: Path) -> Iterator[Infra]:
    servers = Infra.start(work_dir)
    try:
        yield servers
    finally:
        servers.stop()


@pytest.fixture(scope="session")
async def database_url(infra: Infra) -> str:
    url = await create_database(infra.server_url, "laoke_test")
    await migrate_all(url)
    await ensure_topics(infra.bootstrap_servers, ALL_TOPICS, 6)
    return url


@pytest.fixture(scope="session")
async def stack(infra: Infra, database_url: str) -> AsyncIterator[ServerSet]:
    servers = await start_servers(database_url, infra.bootstrap_servers)
    try:
        yield servers
    finally:
        await servers.stop()


@dataclass
class ShopClient:
    """A shop created through the admin API, and an HTTP client to the gateway with its key."""

    shop_id: str
    api_key: str
    webhook_secret: str
    client: httpx.AsyncClient

    def headers(self, key: str | None = None) -> dict[str, str]:
        return {"Authorization": f"Bearer {key or self.api_key}"}


@pytest.fixture
async def gateway(stack: ServerSet) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(base_url=stack.gateway_url, timeout=10) as client:
        yield client


async def new_shop(gateway: httpx.AsyncClient, name: str = "测试小店") -> ShopClient:
    response = await gateway.post(
        "/api/v1/admin/shops", json={"name": name}, headers={"Authorization": f"Bearer {TEST_ADMIN_TOKEN}"}
    )
    assert response.status_code == 201, response.text
    body = response.json()
    return ShopClient(body["shop_id"], body["api_key"], body["webhook_secret"], gateway)


@pytest.fixture
async def shop(gateway: httpx.AsyncClient) -> ShopClient:
    return await new_shop(gateway)


@pytest.fixture
async def other_shop(gateway: httpx.AsyncClient) -> ShopClient:
    return await new_shop(gateway, "另一家店")


@dataclass
class Isolated:
    database_url: str
    broker: EmbeddedBroker


@pytest.fixture
async def isolated(infra: Infra, work_dir: Path) -> AsyncIterator[Isolated]:
    """A database and a broker of the test's own, for tests that stop or crash things."""
    name = f"laoke_iso_{secrets.token_hex(4)}"
    url = await create_database(infra.server_url, name)
    await migrate_all(url)
    broker = await start_broker(work_dir)
    try:
        yield Isolated(url, broker)
    finally:
        broker.stop()
        await drop_database(infra.server_url, name)
