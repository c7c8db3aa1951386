"""The merged OpenAPI document: the gateway's own paths plus every service's, fetched over the internal
credential and cached briefly. A service that is down is listed under `x-laoke-unavailable`."""

from __future__ import annotations

import asyncio
import copy
import time
from typing import Any

import httpx2 as httpx
import structlog

from laoke.kit.internal_auth import sign

log = structlog.get_logger(__name__)

CACHE_SECONDS = 30.0


class OpenAPIMerger:
    def __init__(self, clients: dict[str, httpx.AsyncClient], internal_secret: str) -> None:
        self.clients = clients
        self.internal_secret = internal_secret
        self._cached: tuple[float, dict[str, Any]] | None = None

    async def _fetch(self, service: str) -> dict[str, Any] | None:
        headers = sign(self.internal_secret, method="GET", path="/openapi.json")
        try:
            response = await self.clients[service].get("/openapi.json", headers=headers, timeout=5)
            response.raise_for_status()
            return response.json()
        except (httpx.HTTPError, ValueError) as exc:
            log.warning("openapi_fetch_failed", service=service, error=type(exc).__name__)
            return None

    async def document(self, own: dict[str, Any]) -> dict[str, Any]:
        now = time.monotonic()
        if self._cached is not None and self._cached[0] > now:
            return self._cached[1]
        names = list(self.clients)
        fetched = await asyncio.gather(*(self._fetch(n) for n in names))
        merged = merge(own, dict(zip(names, fetched, strict=True)))
        # Only cache a complete document, so a service coming back shows up at once.
        if not merged.get("x-laoke-unavailable"):
            self._cached = (now + CACHE_SECONDS, merged)
        return merged


def merge(own: dict[str, Any], services: dict[str, dict[str, Any] | None]) -> dict[str, Any]:
    doc = copy.deepcopy(own)
    paths = doc.setdefault("paths", {})
    schemas = doc.setdefault("components", {}).setdefault("schemas", {})
    unavailable = []
    for name, spec in services.items():
        if spec is None:
            unavailable.append(name)
            continue
        for path, item in spec.get("paths", {}).items():
            paths.setdefault(path, {}).update(item)
        for schema_name, schema in spec.get("components", {}).get("schemas", {}).items():
            if schema_name in schemas and schemas[schema_name] != schema:
                log.warning("openapi_schema_name_clash", schema=schema_name, service=name)
            schemas.setdefault(schema_name, schema)
    doc["components"]["securitySchemes"] = {
        "apiKey": {"type": "http", "scheme": "bearer", "description": "A shop API key: lk_<id>_<secret>"}
    }
    doc["security"] = [{"apiKey": []}]
    doc["paths"] = dict(sorted(paths.items()))
    if unavailable:
        doc["x-laoke-unavailable"] = unavailable
    return doc
