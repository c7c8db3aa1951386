"""Settings of the segmentation service: env prefix `SEGMENTATION_`, plus the stack-wide variables."""

from __future__ import annotations

from pydantic_settings import SettingsConfigDict

from laoke.kit.settings import ServiceSettings


class SegmentationSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SEGMENTATION_", extra="ignore", frozen=True)

    service_name: str = "segmentation"
