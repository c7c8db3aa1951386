"""Settings of the segmentation service: env prefix `SEGMENTATION_`, plus the stack-wide variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from laoke.kit.settings import ServiceSettings


class SegmentationSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="SEGMENTATION_", extra="ignore", frozen=True)

    service_name: str = "segmentation"
    # How often the worker rescores every shop so labels follow the calendar (one replica per round).
    rfm_refresh_seconds: float = Field(default=3600.0, gt=0)
