"""Every component as a real uvicorn server on a loopback port, inside the test's event loop."""

from __future__ import annotations

import asyncio
import contextlib
import importlib
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from aiosmtpd.controller import Controller
from fastapi import FastAPI
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from laoke.devstack.providers import LocalProviders, sms_app, start_smtp
from laoke.devstack.supervisor import EMBEDDED_FETCH_IDLE_WAIT_MS, EMBEDDED_FETCH_MAX_WAIT_MS
from laoke.kit.http_protocol import LaokeHttpProtocol
from laoke.stack import GATEWAY, SERVICES, Component
from laoke.testing.infra import free_port

TEST_INTERNAL_SECRET = "test-internal-secret"  # noqa: S105 - test-only credentials
TEST_ADMIN_TOKEN = "test-admin-token-0123456789abcdef0123456789"  # noqa: S105


def _settings_class(component: Component) -> type[Any]:
    module = importlib.import_module(f"{component.package}.settings")
    return next(getattr(module, n) for n in dir(module) if n.endswith("Settings") and n != "ServiceSettings")


def build_app(component: Component, **overrides: Any) -> tuple[FastAPI, Any]:
    settings = _settings_class(component)(**overrides)
    factory = importlib.import_module(f"{component.package}.app").create_app
    return factory(settings), settings


@dataclass
class RunningServer:
    name: str
    url: str
    app: FastAPI
    settings: Any
    server: uvicorn.Server
    task: asyncio.Task[None]

    async def stop(self) -> None:
        self.server.should_exit = True
        await self.task


async def serve(app: FastAPI, name: str, settings: Any, port: int | None = None) -> RunningServer:
    port = port or free_port()
    config = uvicorn.Config(
        app,
        host="127.0.0.1",
        port=port,
        log_config=None,
        access_log=False,
        lifespan="on",
        http=LaokeHttpProtocol,
    )
    server = uvicorn.Server(config)
    server.capture_signals = contextlib.nullcontext  # type: ignore[method-assign]  # pytest owns signals
    task = asyncio.create_task(server.serve(), name=f"server-{name}")
    while not server.started:
        if task.done():
            task.result()
            raise RuntimeError(f"{name} did not start")
        await asyncio.sleep(0.01)
    return RunningServer(name, f"http://127.0.0.1:{port}", app, settings, server, task)


@dataclass
class ServerSet:
    servers: dict[str, RunningServer] = field(default_factory=dict)
    # The local SMTP server and Aliyun SMS endpoint messaging sends through (laoke/devstack/providers.py).
    providers: LocalProviders = field(default_factory=LocalProviders)
    smtp: Controller | None = None

    def __getitem__(self, name: str) -> RunningServer:
        return self.servers[name]

    @property
    def gateway_url(self) -> str:
        return self.servers[GATEWAY.name].url

    @property
    def providers_url(self) -> str:
        return self.servers["providers"].url

    async def scalar(self, service: str, sql: str, **params: Any) -> Any:
        """One value read straight from a service's own database (what its API does not show)."""
        engine = create_async_engine(self.servers[service].settings.database_url)
        try:
            async with engine.connect() as conn:
                return await conn.scalar(text(sql), params)
        finally:
            await engine.dispose()

    async def stop(self) -> None:
        for server in reversed(list(self.servers.values())):
            await server.stop()
        if self.smtp is not None:
            self.smtp.stop()
            self.smtp = None


async def wait_ready(servers: ServerSet, within: float = 60) -> None:
    """Until every component answers /readyz (database, broker, consumers joined their groups)."""
    deadline = asyncio.get_running_loop().time() + within
    async with httpx.AsyncClient(timeout=5) as client:
        for server in servers.servers.values():
            if server.name == "providers":  # a vendor stand-in, no probes
                continue
            while (await client.get(f"{server.url}/readyz")).status_code != 200:
                if asyncio.get_running_loop().time() > deadline:
                    raise TimeoutError(
                        f"{server.name} not ready: {(await client.get(server.url + '/readyz')).text}"
                    )
                await asyncio.sleep(0.05)


# Shops of more customers than this are rescored in the background after a configuration change; low
# enough for a test to build such a shop in a second.
INLINE_RESCORE_LIMIT = 20
# Likewise for CLV fits: shops of more customers than this are fitted in the background.
CLV_INLINE_FIT_LIMIT = 30


def common_settings(database_url: str, bootstrap_servers: str) -> dict[str, Any]:
    return {
        "database_url": database_url,
        "kafka_bootstrap_servers": bootstrap_servers,
        "internal_secret": TEST_INTERNAL_SECRET,
        "environment": "test",
        "db_pool_size": 5,
        "consumer_fetch_max_wait_ms": EMBEDDED_FETCH_MAX_WAIT_MS,
        "consumer_fetch_idle_wait_ms": EMBEDDED_FETCH_IDLE_WAIT_MS,
    }


async def start_servers(
    database_url: str, bootstrap_servers: str, gateway_overrides: dict[str, Any] | None = None
) -> ServerSet:
    common = common_settings(database_url, bootstrap_servers)
    servers = ServerSet()
    loyalty_port, gateway_port, smtp_port = free_port(), free_port(), free_port()
    loyalty_url = f"http://127.0.0.1:{loyalty_port}"
    try:
        servers.smtp = start_smtp(servers.providers, "127.0.0.1", smtp_port)
        providers = await serve(sms_app(servers.providers), "providers", None)
        servers.servers["providers"] = providers
        messaging = {
            "smtp_port": smtp_port,
            "aliyun_sms_endpoint": providers.url + "/",
            "tencent_sms_endpoint": providers.url + "/tencent",
            "public_url": f"http://127.0.0.1:{gateway_port}",
            "dispatch_seconds": 0.05,
            "dispatch_batch": 100,
            "jobs_seconds": 0.5,
            "campaign_seconds": 0.2,
            "webhook_seconds": 0.1,
            "webhook_disable_after": 5,
            # Long enough that the in-process vendor, sharing two busy cores with the whole suite,
            # answers in time (at 1 s, a send once timed out mid-campaign and waited out its retry).
            "sms_timeout_seconds": 3,
        }
        for component in SERVICES:  # ingest first: the others read its bulk feeds
            # The services others call must already run: ingest (bulk feeds), segmentation (segments).
            extra = {
                f"{name}_url": servers[name].url
                for name in ("ingest", "segmentation")
                if name in servers.servers
            }
            # Segmentation reads loyalty's expiry feeds but starts first: loyalty's address is fixed upfront.
            extra["loyalty_url"] = loyalty_url
            if component.name == "messaging":
                extra |= messaging
            if component.name == "loyalty":
                extra["activities_seconds"] = 0.5  # price guesses revealed soon after their window
            if component.name == "segmentation":
                extra["rfm_inline_rescore_limit"] = INLINE_RESCORE_LIMIT
                extra["clv_inline_fit_limit"] = CLV_INLINE_FIT_LIMIT
            app, settings = build_app(component, **common, **extra)
            port = loyalty_port if component.name == "loyalty" else None
            servers.servers[component.name] = await serve(app, component.name, settings, port)
        gateway_settings = {
            **common,
            "admin_token": TEST_ADMIN_TOKEN,
            "providers_url": providers.url,
            **{f"{s.name}_url": servers[s.name].url for s in SERVICES},
            **(gateway_overrides or {}),
        }
        app, settings = build_app(GATEWAY, **gateway_settings)
        servers.servers[GATEWAY.name] = await serve(app, GATEWAY.name, settings, gateway_port)
        await wait_ready(servers)
    except BaseException:
        await servers.stop()
        raise
    return servers


@contextlib.asynccontextmanager
async def extra_gateway(base: ServerSet, **overrides: Any) -> AsyncIterator[RunningServer]:
    """A second gateway over the same services, with different settings (rate limit, a dead upstream)."""
    gateway = base[GATEWAY.name]
    settings = gateway.settings.model_copy(update=overrides)
    app, _ = build_app(GATEWAY, **settings.model_dump())
    server = await serve(app, "gateway-extra", settings)
    try:
        yield server
    finally:
        await server.stop()
