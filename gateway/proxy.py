"""Routing to the services: path → service, one pooled HTTP client, streamed responses.

Upstream failures map to gateway answers with the usual error shape: a service that refuses the
connection is down (503, for its routes only), one that does not answer in time is 504, and one that
breaks the connection mid-way is 502.
"""

from __future__ import annotations

import re
import time
from collections.abc import AsyncIterator
from dataclasses import dataclass

import httpx2 as httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from laoke.kit.context import (
    KEY_HEADER,
    SCOPES_HEADER,
    SHOP_HEADER,
    SIGNATURE_HEADER,
    WEBHOOK_SECRETS_HEADER,
)
from laoke.kit.errors import LaokeError, PayloadTooLarge, ServiceUnavailable, Unauthorized, error_response
from laoke.kit.internal_auth import sign


class BadGateway(LaokeError):
    status_code = 502
    code = "bad_gateway"


class GatewayTimeout(LaokeError):
    status_code = 504
    code = "gateway_timeout"


@dataclass(frozen=True)
class Route:
    pattern: re.Pattern[str]
    service: str
    public: bool = False  # authenticated by the service itself (marketplace webhook signatures)
    streamed: bool = False  # large uploads: forwarded as they arrive, under their own size limit

    @property
    def path(self) -> str:
        """The label request metrics use for proxied calls."""
        return f"proxy:{self.service}"


def _route(pattern: str, service: str, public: bool = False, streamed: bool = False) -> Route:
    return Route(re.compile(pattern), service, public, streamed)


# First match wins, so specific paths come before the prefixes they sit under.
ROUTES: tuple[Route, ...] = (
    # What buyers and SMS vendors reach without a key: one-click unsubscribe, SMS replies and reports.
    _route(r"^/api/v1/webhooks/(unsubscribe|aliyunsms|tencentsms)/[^/]+/?$", "messaging", public=True),
    _route(r"^/api/v1/webhooks/[a-z]+/[^/]+/?$", "ingest", public=True),
    _route(r"^/api/v1/imports/?$", "ingest", streamed=True),
    _route(r"^/api/v1/customers/lookup$", "ingest"),
    _route(r"^/api/v1/customers/[^/]+/consent$", "messaging"),
    _route(r"^/api/v1/(orders|imports|events|ingest)(/|$)", "ingest"),
    _route(r"^/api/v1/(customers|rfm|segments|tags|groups|analytics|clv)(/|$)", "segmentation"),
    _route(r"^/api/v1/(loyalty|activities|coupons)(/|$)", "loyalty"),
    _route(
        r"^/api/v1/(messaging|templates|campaigns|automations|inbox|feedback|subscriptions)(/|$)", "messaging"
    ),
)

# Hop-by-hop headers (RFC 9110 §7.6.1) and the ones the gateway itself sets.
_DROP_REQUEST = frozenset(
    {
        "host",
        "connection",
        "keep-alive",
        "proxy-authorization",
        "te",
        "trailer",
        "transfer-encoding",
        "upgrade",
        "authorization",
        "content-length",
        # Only the gateway may say who is calling; a client sending these is ignored.
        SHOP_HEADER,
        SCOPES_HEADER,
        KEY_HEADER,
        SIGNATURE_HEADER,
        WEBHOOK_SECRETS_HEADER,
    }
)
_DROP_RESPONSE = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "x-request-id", "date", "server"}
)


BUFFER_LIMIT = 256 * 1024  # responses up to this size are read whole; larger ones are streamed


def match_route(path: str) -> Route | None:
    for route in ROUTES:
        if route.pattern.search(path):
            return route
    return None


def check_declared_length(request: Request, limit: int) -> None:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body exceeds {limit} bytes")


async def stream_body(request: Request, limit: int) -> AsyncIterator[bytes]:
    """The body as it arrives; past the limit the upload is cut off (the service sees a broken body)."""
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        yield chunk


async def read_body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared is not None and declared.isdigit() and int(declared) > limit:
        raise PayloadTooLarge(f"request body exceeds {limit} bytes")
    chunks: list[bytes] = []
    size = 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise PayloadTooLarge(f"request body exceeds {limit} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


class Proxy:
    def __init__(self, clients: dict[str, httpx.AsyncClient], internal_secret: str) -> None:
        self.clients = clients
        self.internal_secret = internal_secret
        # Requests go out with absolute URLs: httpx parses one once, where a path relative to the
        # client's base URL is parsed and then parsed again joined to it (~35 µs a request).
        self.origins = {name: str(client.base_url).rstrip("/") for name, client in clients.items()}

    async def forward(
        self,
        request: Request,
        service: str,
        body: bytes | AsyncIterator[bytes],
        *,
        shop_id: str = "",
        scopes: str = "",
        key_id: str = "",
        request_id: str = "",
        webhook_secrets: str = "",
    ) -> Response:
        path = request.url.path
        headers = {k: v for k, v in request.headers.items() if k not in _DROP_REQUEST}
        headers.update(
            sign(
                self.internal_secret,
                method=request.method,
                path=path,
                shop_id=shop_id,
                scopes=scopes,
                key_id=key_id,
                request_id=request_id,
                webhook_secrets=webhook_secrets,
            )
        )
        client = self.clients[service]
        # Forwarded as it arrived, still percent-encoded: a decoded path may hold characters no URL may
        # carry (a control character in an id is the service's 404 to give, not a gateway crash).
        raw_path = request.scope.get("raw_path")
        wire_path = raw_path.decode("latin-1") if raw_path else path
        target = f"{wire_path}?{request.url.query}" if request.url.query else wire_path
        upstream_request = client.build_request(
            request.method, self.origins[service] + target, headers=headers, content=body
        )
        started = time.perf_counter()
        try:
            upstream = await client.send(upstream_request, stream=True)
        except httpx.ConnectError as exc:
            raise ServiceUnavailable(f"the {service} service is unavailable") from exc
        except httpx.TimeoutException as exc:
            raise GatewayTimeout(f"the {service} service did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise BadGateway(f"the {service} service failed: {type(exc).__name__}") from exc
        response_headers = {k: v for k, v in upstream.headers.items() if k not in _DROP_RESPONSE}
        length = upstream.headers.get("content-length")
        if length is not None and length.isdigit() and int(length) <= BUFFER_LIMIT:
            # Most API answers are small JSON: one read and one send beat a chunked stream.
            try:
                content = await upstream.aread()
            except httpx.HTTPError as exc:
                raise BadGateway(f"the {service} service failed mid-response") from exc
            finally:
                await upstream.aclose()
            _time_upstream(response_headers, started)
            return Response(content, status_code=upstream.status_code, headers=response_headers)
        _time_upstream(response_headers, started)
        return StreamingResponse(
            upstream.aiter_raw(),
            status_code=upstream.status_code,
            headers=response_headers,
            background=BackgroundTask(upstream.aclose),
        )


def _time_upstream(headers: dict[str, str], started: float) -> None:
    """`Server-Timing: upstream;dur=<ms>`: the time from sending to the service until its answer was
    read (its head, for a streamed answer). What a client waits beyond it is the gateway's own cost,
    measured per request (bench/gateway_overhead.py) and visible in a browser's network panel."""
    timing = f"upstream;dur={(time.perf_counter() - started) * 1000:.2f}"
    own = headers.get("server-timing")
    headers["server-timing"] = f"{own}, {timing}" if own else timing


READ_METHODS = frozenset({"GET", "HEAD", "OPTIONS"})
PROXY_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE"})


class ProxyMiddleware:
    """Plain ASGI in front of the gateway's FastAPI routes: a path owned by a service is authenticated,
    authorised, rate-limited and forwarded here, without FastAPI's routing and dependency machinery,
    which a pass-through does not need and which cost more CPU than the forwarding itself. Anything
    else (the gateway's own API, docs, unknown paths) goes on to FastAPI."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        route = match_route(scope["path"]) if scope["type"] == "http" else None
        if route is None or scope["method"] not in PROXY_METHODS:
            await self.app(scope, receive, send)
            return
        scope["route"] = route
        request = Request(scope, receive)
        try:
            response = await self._forward(request, route)
        except LaokeError as exc:
            response = error_response(exc)
        await response(scope, receive, send)

    async def _forward(self, request: Request, route: Route) -> Response:
        state = request.app.state
        settings = state.settings
        request_id = request.scope["state"]["request_id"]
        if route.public:
            # /api/v1/webhooks/<source>/<shop_id>: the shop's secrets go along, the signature is the
            # marketplace's and ingest checks it. An unknown shop gets the same 401 as a bad signature.
            shop_id = request.url.path.rstrip("/").rsplit("/", 1)[-1]
            state.webhook_buckets.enforce(shop_id, "this shop's webhooks")
            webhook_secrets = await state.webhook_secrets.for_shop(shop_id)
            if webhook_secrets is None:
                raise Unauthorized("webhook signature cannot be verified")
            body = await read_body(request, settings.max_body_bytes)
            return await state.proxy.forward(
                request,
                route.service,
                body,
                shop_id=shop_id,
                request_id=request_id,
                webhook_secrets=webhook_secrets,
            )
        principal = await state.keys.authenticate(request.headers.get("authorization"))
        principal.require("read" if request.method in READ_METHODS else "write")
        state.buckets.enforce(principal.key_id)
        body: bytes | AsyncIterator[bytes]
        if route.streamed and request.method == "POST":
            check_declared_length(request, settings.import_max_body_bytes)
            body = stream_body(request, settings.import_max_body_bytes)
        else:
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
