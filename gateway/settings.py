"""Settings of the gateway (env prefix `GATEWAY_`; `LAOKE_ADMIN_TOKEN` and the shared variables too)."""

from __future__ import annotations

import os
from typing import Any

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from laoke.kit.settings import ServiceSettings


class GatewaySettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore", frozen=True)

    service_name: str = "gateway"
    admin_token: str | None = Field(default=None, description="Guards /api/v1/admin; LAOKE_ADMIN_TOKEN")
    ingest_url: str = "http://127.0.0.1:8001"
    segmentation_url: str = "http://127.0.0.1:8002"
    loyalty_url: str = "http://127.0.0.1:8003"
    messaging_url: str = "http://127.0.0.1:8004"
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    # History files (POST /api/v1/imports) are streamed through, never buffered, up to this size.
    import_max_body_bytes: int = Field(default=1024 * 1024 * 1024, ge=1024)
    rate_limit_per_second: float = Field(default=100.0, gt=0)
    rate_limit_burst: int = Field(default=200, ge=1)
    # Webhooks carry no API key: they are limited per shop, so a flood of forged calls cannot make
    # ingest verify (and keep) unbounded failures. Marketplaces retry a 429.
    webhook_rate_limit_per_second: float = Field(default=2000.0, gt=0)
    webhook_rate_limit_burst: int = Field(default=4000, ge=1)
    upstream_connect_timeout: float = 2.0
    upstream_read_timeout: float = 30.0
    # The local SMTP / SMS stand-ins of a development stack, shown in the console's dev inbox
    # (`make run` sets it; unset in production).
    providers_url: str | None = None
    upstream_pool_size: int = Field(default=10, ge=1, description="Keep-alive connections per service")
    key_cache_seconds: float = Field(default=5.0, ge=0, description="How long a replica trusts a cached key")

    @model_validator(mode="before")
    @classmethod
    def _admin_token_from_env(cls, data: Any) -> Any:
        if isinstance(data, dict) and "admin_token" not in data and "LAOKE_ADMIN_TOKEN" in os.environ:
            data["admin_token"] = os.environ["LAOKE_ADMIN_TOKEN"]
        return data

    @model_validator(mode="after")
    def _strong_admin_token(self) -> GatewaySettings:
        if self.environment == "production" and (not self.admin_token or len(self.admin_token) < 32):
            raise ValueError(
                "LAOKE_ADMIN_TOKEN must be set to at least 32 random characters outside development"
            )
        return self

    def service_urls(self) -> dict[str, str]:
        return {
            "ingest": self.ingest_url,
            "segmentation": self.segmentation_url,
            "loyalty": self.loyalty_url,
            "messaging": self.messaging_url,
        }
