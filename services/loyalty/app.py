"""Process entry of the loyalty service."""

from __future__ import annotations

from fastapi import FastAPI

from laoke.contracts.topics import Topic
from laoke.kit.service import create_service_app
from services.loyalty import activities_api, api, coupons_api, handlers, internal_api, rewards_api, schedule
from services.loyalty.models import plumbing
from services.loyalty.settings import LoyaltySettings


def create_app(settings: LoyaltySettings | None = None) -> FastAPI:
    settings = settings or LoyaltySettings()
    return create_service_app(
        settings,
        title="Laoke loyalty",
        description="VIP tiers, the points ledger, sign-in, rewards, coupons, lotteries and activities.",
        routers=[
            api.router,
            rewards_api.router,
            coupons_api.router,
            activities_api.router,
            internal_api.internal,
        ],
        plumbing=plumbing,
        produces=(Topic.LOYALTY,),
        consumers=handlers.consumers(settings),
        extra_lifespan=schedule.jobs_lifespan(
            settings.jobs_seconds,
            settings.activities_seconds,
            settings.placement_seconds,
            enabled=settings.run_consumers,
        ),
    )
