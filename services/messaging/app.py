"""Process entry of the messaging service. It runs, migrates, relays and answers probes; its API and
automations are built on this skeleton by the messaging issue."""

from __future__ import annotations

from fastapi import FastAPI

from laoke.contracts.topics import Topic
from laoke.kit.service import create_service_app
from services.messaging.models import plumbing
from services.messaging.settings import MessagingSettings


def create_app(settings: MessagingSettings | None = None) -> FastAPI:
    return create_service_app(
        settings or MessagingSettings(),
        title="Laoke messaging",
        description="SMS, e-mail and in-app messages; consent, frequency caps, campaigns and automations.",
        routers=[],
        plumbing=plumbing,
        produces=(Topic.MESSAGING,),
    )
