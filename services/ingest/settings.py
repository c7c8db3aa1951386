"""Settings of the ingest service: env prefix `INGEST_`, plus the stack-wide variables."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from laoke.kit.settings import ServiceSettings


class IngestSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="INGEST_", extra="ignore", frozen=True)

    service_name: str = "ingest"
