"""Process entry of the gateway: its own API, then every other /api path proxied to its service."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator
from typing import Any

import httpx
from fastapi import FastAPI, Request
from fastapi.openapi.docs import get_swagger_ui_html
from starlette.responses import HTMLResponse, Response

from gateway import routes
from gateway.auth import KeyStore
from gateway.models import plumbing
from gateway.openapi import OpenAPIMerger
from gateway.proxy import Proxy, match_route, read_body
from gateway.ratelimit import TokenBuckets
from gateway.settings import GatewaySettings
from laoke.contracts.topics import Topic
from laoke.kit.errors import NotFound, TooManyRequests
from laoke.kit.jsonutil import JSONBody
from laoke.kit.service import create_service_app

PROXY_METHODS = ["GET", "POST", "PUT", "PATCH", "DELETE"]
READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})


def create_app(settings: GatewaySettings | None = None) -> FastAPI:
    settings = settings or GatewaySettings()

    @contextlib.asynccontextmanager
    async def gateway_lifespan(app: FastAPI) -> AsyncIterator[None]:
        timeout = httpx.Timeout(settings.upstream_read_timeout, connect=settings.upstream_connect_timeout)
        limits = httpx.Limits(max_connections=500, max_keepalive_connections=200)
        async with httpx.AsyncClient(timeout=timeout, limits=limits) as client:
            urls = settings.service_urls()
            app.state.proxy = Proxy(client, urls, settings.internal_secret)
            app.state.openapi = OpenAPIMerger(client, urls, settings.internal_secret)
            app.state.keys = KeyStore(app.state.db, settings.key_cache_seconds)
            app.state.buckets = TokenBuckets(settings.rate_limit_per_second, settings.rate_limit_burst)
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
    )

    @app.get("/openapi.json", include_in_schema=False)
    async def openapi(request: Request) -> JSONBody:
        return JSONBody(await request.app.state.openapi.document(_own_openapi(app)))

    @app.get("/docs", include_in_schema=False)
    async def docs() -> HTMLResponse:
        return get_swagger_ui_html(openapi_url="/openapi.json", title="Laoke API")

    @app.api_route("/api/{path:path}", methods=PROXY_METHODS, include_in_schema=False)
    async def proxy(request: Request) -> Response:
        route = match_route(request.url.path)
        if route is None:
            raise NotFound(f"no route for {request.method} {request.url.path}")
        state = request.app.state
        request_id = request.scope["state"]["request_id"]
        if route.public:
            body = await read_body(request, settings.max_body_bytes)
            return await state.proxy.forward(request, route.service, body, request_id=request_id)
        principal = await state.keys.authenticate(request.headers.get("authorization"))
        principal.require("read" if request.method in READ_METHODS else "write")
        wait = state.buckets.take(principal.key_id)
        if wait:
            raise TooManyRequests(
                "rate limit exceeded for this API key",
                headers={"Retry-After": TokenBuckets.retry_after_header(wait)},
            )
        body = await read_body(request, settings.max_body_bytes)
        return await state.proxy.forward(
            request,
            route.service,
            body,
            shop_id=principal.shop_id,
            scopes=",".join(sorted(principal.scopes)),
            key_id=principal.key_id,
            request_id=request_id,
        )

    return app


def _own_openapi(app: FastAPI) -> dict[str, Any]:
    if app.openapi_schema is None:
        app.openapi()
    assert app.openapi_schema is not None
    return app.openapi_schema
