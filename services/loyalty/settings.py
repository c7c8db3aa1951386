"""Settings of the loyalty service: env prefix `LOYALTY_`, plus the stack-wide variables."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from laoke.kit.settings import ServiceSettings


class LoyaltySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="LOYALTY_", extra="ignore", frozen=True)

    service_name: str = "loyalty"
    # How often the scheduled jobs run: points expiry, expiring-points notices, birthday bonuses,
    # tier re-evaluation (LOYALTY_JOBS_SECONDS).
    jobs_seconds: float = 3600.0
    # How often live activities past their window are ended and price guesses revealed
    # (LOYALTY_ACTIVITIES_SECONDS).
    activities_seconds: float = 30.0
    # How often to look for shops whose tiers changed, to place their existing members
    # (LOYALTY_PLACEMENT_SECONDS).
    placement_seconds: float = 2.0
