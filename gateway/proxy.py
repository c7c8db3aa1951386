"""Routing to the services: path → service, one pooled HTTP client, streamed responses.

Upstream failures map to gateway answers with the usual error shape: a service that refuses the
connection is down (503, for its routes only), one that does not answer in time is 504, and one that
breaks the connection mid-way is 502.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import httpx
from starlette.background import BackgroundTask
from starlette.requests import Request
from starlette.responses import StreamingResponse

from laoke.kit.errors import LaokeError, PayloadTooLarge, ServiceUnavailable
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


def _route(pattern: str, service: str, public: bool = False) -> Route:
    return Route(re.compile(pattern), service, public)


# First match wins, so specific paths come before the prefixes they sit under.
ROUTES: tuple[Route, ...] = (
    _route(r"^/api/v1/webhooks(/|$)", "ingest", public=True),
    _route(r"^/api/v1/customers/lookup$", "ingest"),
    _route(r"^/api/v1/customers/[^/]+/consent$", "messaging"),
    _route(r"^/api/v1/(orders|imports|behaviour)(/|$)", "ingest"),
    _route(r"^/api/v1/(customers|rfm|segments|tags|groups|analytics)(/|$)", "segmentation"),
    _route(r"^/api/v1/(loyalty|activities)(/|$)", "loyalty"),
    _route(r"^/api/v1/(messaging|templates|campaigns|automations|inbox)(/|$)", "messaging"),
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
    }
)
_DROP_RESPONSE = frozenset(
    {"connection", "keep-alive", "transfer-encoding", "content-length", "x-request-id", "date", "server"}
)


def match_route(path: str) -> Route | None:
    for route in ROUTES:
        if route.pattern.search(path):
            return route
    return None


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
    def __init__(self, client: httpx.AsyncClient, service_urls: dict[str, str], internal_secret: str) -> None:
        self.client = client
        self.service_urls = service_urls
        self.internal_secret = internal_secret

    async def forward(
        self,
        request: Request,
        service: str,
        body: bytes,
        *,
        shop_id: str = "",
        scopes: str = "",
        key_id: str = "",
        request_id: str = "",
    ) -> StreamingResponse:
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
            )
        )
        upstream_request = self.client.build_request(
            request.method,
            self.service_urls[service] + path,
            params=request.url.query,
            headers=headers,
            content=body,
        )
        try:
            upstream = await self.client.send(upstream_request, stream=True)
        except httpx.ConnectError as exc:
            raise ServiceUnavailable(f"the {service} service is unavailable") from exc
        except httpx.TimeoutException as exc:
            raise GatewayTimeout(f"the {service} service did not answer in time") from exc
        except httpx.HTTPError as exc:
            raise BadGateway(f"the {service} service failed: {type(exc).__name__}") from exc
        response_headers = {k: v for k, v in upstream.headers.items() if k not in _DROP_RESPONSE}
        return StreamingResponse(
            upstream.aiter_raw(),
            status_code=upstream.status_code,
            headers=response_headers,
            background=BackgroundTask(upstream.aclose),
        )
