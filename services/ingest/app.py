"""Process entry of the ingest service."""

from __future__ import annotations

from fastapi import FastAPI

from laoke.contracts.topics import Topic
from laoke.kit.service import create_service_app
from services.ingest import api, behaviour, webhooks
from services.ingest.imports import api as imports
from services.ingest.models import plumbing
from services.ingest.settings import IngestSettings


def create_app(settings: IngestSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or IngestSettings(),
        title="Laoke ingest",
        description="Orders from marketplaces, the API and imports; buyer identity; order lifecycle events.",
        routers=[
            api.router,
            api.customers,
            api.settings_router,
            webhooks.router,
            webhooks.failures,
            behaviour.router,
            imports.router,
            imports.internal,
        ],
        plumbing=plumbing,
        produces=(Topic.ORDERS, Topic.CUSTOMERS, Topic.BEHAVIOUR),
        extra_lifespan=imports.imports_lifespan,
    )
