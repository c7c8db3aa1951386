"""Process entry of the messaging service."""

from __future__ import annotations

from fastapi import FastAPI

from laoke.contracts.topics import Topic
from laoke.kit.service import create_service_app
from services.messaging import (
    api,
    automations_api,
    campaigns_api,
    feedback_api,
    handlers,
    public_api,
    subscriptions_api,
)
from services.messaging.models import plumbing
from services.messaging.settings import MessagingSettings
from services.messaging.workers import dispatcher_lifespan


def create_app(settings: MessagingSettings | None = None) -> FastAPI:
    settings = settings or MessagingSettings()
    return create_service_app(
        settings,
        title="Laoke messaging",
        description="SMS, e-mail and in-app messages; consent, frequency caps, campaigns and automations.",
        routers=[
            api.router,
            public_api.public,
            campaigns_api.router,
            automations_api.router,
            feedback_api.router,
            subscriptions_api.router,
        ],
        plumbing=plumbing,
        produces=(Topic.MESSAGING,),
        consumers=handlers.consumers(settings),
        extra_lifespan=dispatcher_lifespan(settings, enabled=settings.run_consumers),
    )
