"""Settings of the messaging service: env prefix `MESSAGING_`, plus the stack-wide variables."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from laoke.kit.settings import ServiceSettings


class MessagingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MESSAGING_", extra="ignore", frozen=True)

    service_name: str = "messaging"
