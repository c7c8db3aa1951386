"""Process entry of the segmentation service."""

from __future__ import annotations

from fastapi import FastAPI

from laoke.contracts.topics import Topic
from laoke.kit.service import create_service_app
from services.segmentation import (
    analytics_api,
    clv_api,
    customers_api,
    groups_api,
    handlers,
    internal_api,
    rfm_api,
    segments_api,
)
from services.segmentation.models import plumbing
from services.segmentation.schedule import refresh_lifespan
from services.segmentation.settings import SegmentationSettings


def create_app(settings: SegmentationSettings | None = None) -> FastAPI:
    settings = settings or SegmentationSettings()
    return create_service_app(
        settings,
        title="Laoke segmentation",
        description="Customer profiles, RFM scores, lifecycle labels, tags, groups and segments.",
        routers=[
            customers_api.router,
            groups_api.router,
            rfm_api.router,
            segments_api.segments,
            analytics_api.router,
            clv_api.router,
            internal_api.internal,
        ],
        plumbing=plumbing,
        produces=(Topic.SEGMENTATION,),
        consumers=handlers.consumers(settings),
        extra_lifespan=refresh_lifespan(settings.rfm_refresh_seconds, enabled=settings.run_consumers),
    )
