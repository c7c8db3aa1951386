"""Process entry of the gateway: its own API, then every other /api path proxied to its service."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx2 as httpx
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse

from gateway import console, routes
from gateway.auth import KeyStore, WebhookSecrets
from gateway.models import plumbing
from gateway.openapi import OpenAPIMerger
from gateway.proxy import Proxy, ProxyMiddleware
from gateway.ratelimit import TokenBuckets
from gateway.settings import GatewaySettings
from gateway.upstream import service_client
from laoke.contracts.topics import Topic
from laoke.kit.jsonutil import JSONBody
from laoke.kit.service import create_service_app


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()

    @contextlib.asynccontextmanager
    async def gateway_lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeout = httpx.Timeout(settings.upstream_read_timeout, connect=settings.upstream_connect_timeout)
        # One small pool per service: per-request pool bookkeeping grows with the pool, so a large
        # shared pool costs more CPU than the queueing it would save (measured, bench/results/).
        limits = httpx.Limits(
            max_connections=settings.upstream_pool_size, max_keepalive_connections=settings.upstream_pool_size
        )
        async with contextlib.AsyncExitStack() as stack:
            clients = {
                name: await stack.enter_async_context(service_client(url, timeout, limits))
                for name, url in settings.service_urls().items()
            }
            app.state.proxy = Proxy(clients, settings.internal_secret)
            app.state.openapi = OpenAPIMerger(clients, settings.internal_secret)
            app.state.keys = KeyStore(app.state.db, settings.key_cache_seconds)
            app.state.webhook_secrets = WebhookSecrets(app.state.db, settings.key_cache_seconds)
            app.state.buckets = TokenBuckets(settings.rate_limit_per_second, settings.rate_limit_burst)
            app.state.webhook_buckets = TokenBuckets(
                settings.webhook_rate_limit_per_second, settings.webhook_rate_limit_burst
            )
            yield

    app = create_service_app(
        settings,
        title="Laoke API",
        description="Member operations for marketplace shops: orders, customers and RFM, loyalty, messaging. "
        'Authenticate with `Authorization: Bearer <api key>`. Errors are `{"error", "detail"}`.',
        routers=[routes.admin, routes.keys],
        plumbing=plumbing,
        produces=(Topic.SHOPS,),
        extra_lifespan=gateway_lifespan,
        require_internal_credential=False,
        openapi_url=None,
        docs_url=None,
        inner_middleware=[ProxyMiddleware],
    )

    console.install(app)

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONBody:
        return JSONBody(await request.app.state.openapi.document(_own_openapi(app)))

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Laoke API")

    return app


def _own_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        app.openapi()
    assert app.openapi_schema is not None
    return app.openapi_schema
