"""Request context, access logs, Prometheus metrics and the internal-credential gate, as one plain ASGI
middleware (no BaseHTTPMiddleware: it would buffer streamed responses and break contextvars)."""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterable

import structlog
from prometheus_client import CONTENT_TYPE_LATEST, Counter, Histogram, generate_latest
from starlette.requests import Request
from starlette.responses import Response
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from laoke.kit.context import CORRELATION_ID_HEADER, REQUEST_ID_HEADER, correlation_id_var
from laoke.kit.errors import error_body
from laoke.kit.internal_auth import verify
from laoke.kit.jsonutil import dumps

log = structlog.get_logger("laoke.http")

HTTP_REQUESTS = Counter("laoke_http_requests_total", "HTTP requests", ["method", "route", "status"])
HTTP_LATENCY = Histogram(
    "laoke_http_request_duration_seconds",
    "HTTP request latency",
    ["method", "route"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
)

PROBE_PATHS = frozenset({"/healthz", "/readyz", "/metrics"})


def new_request_id() -> str:
    return uuid.uuid4().hex


class RequestContextMiddleware:
    """Gives every request an id (kept from the caller if given), binds it to logs, times it, and — in a
    service, when `internal_secret` is set — refuses requests that do not carry the gateway's signature."""

    def __init__(
        self,
        app: ASGIApp,
        *,
        internal_secret: str | None = None,
        open_paths: Iterable[str] = PROBE_PATHS,
    ) -> None:
        self.app = app
        self.internal_secret = internal_secret
        self.open_paths = frozenset(open_paths)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = {k.decode("latin-1"): v.decode("latin-1") for k, v in scope["headers"]}
        request_id = headers.get(REQUEST_ID_HEADER) or new_request_id()
        correlation_id = headers.get(CORRELATION_ID_HEADER) or request_id
        scope.setdefault("state", {})["request_id"] = request_id
        structlog.contextvars.bind_contextvars(request_id=request_id, correlation_id=correlation_id)
        token = correlation_id_var.set(correlation_id)
        started = time.perf_counter()
        status_holder = [500]

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                status_holder[0] = message["status"]
                message.setdefault("headers", [])
                message["headers"].append((b"x-request-id", request_id.encode()))
            await send(message)

        try:
            path = scope["path"]
            if (
                self.internal_secret is not None
                and path not in self.open_paths
                and not verify(self.internal_secret, scope["method"], path, headers)
            ):
                body = dumps(error_body("internal_auth_required", "requests must come through the gateway"))
                await Response(body, 401, media_type="application/json")(scope, receive, send_with_id)
                return
            await self.app(scope, receive, send_with_id)
        finally:
            elapsed = time.perf_counter() - started
            route = getattr(scope.get("route"), "path", None) or "unmatched"
            if route not in self.open_paths:
                HTTP_REQUESTS.labels(scope["method"], route, str(status_holder[0])).inc()
                HTTP_LATENCY.labels(scope["method"], route).observe(elapsed)
                log.info(
                    "request",
                    method=scope["method"],
                    path=scope["path"],
                    status=status_holder[0],
                    ms=round(elapsed * 1000, 2),
                )
            correlation_id_var.reset(token)
            structlog.contextvars.unbind_contextvars("request_id", "correlation_id")


async def metrics_endpoint(_: Request) -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
