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
    # A changed RFM configuration (or a rescore on demand) rescores a shop of up to this many customers
    # within the request; a larger one in the background (a million takes ~40 s with its label events,
    # beyond the gateway's 30 s), its progress in `GET /api/v1/rfm/config` → `rescore`.
    rfm_inline_rescore_limit: int = Field(default=100_000, ge=0)
    # A CLV fit of a shop of up to this many customers runs within the request; a larger one in the
    # background (a million took ~35 s on the benchmark box, 78 s on a slower one), its progress in
    # `GET /api/v1/clv/fit`.
    clv_inline_fit_limit: int = Field(default=100_000, ge=0)
    # Whole-shop dashboard answers (the RFM summary, customer analytics over time) are computed afresh
    # while that takes under `summary_live_below_seconds`, which it does for all but the largest shops.
    # Slower ones (a shop of a million customers: 0.3 s to 3 s a scan) are served from the last answer
    # at once and recounted in the background once it is `summary_refresh_seconds` old; an answer is
    # never served past `summary_max_age_seconds`.
    summary_live_below_seconds: float = Field(default=0.1, ge=0)
    summary_refresh_seconds: float = Field(default=15.0, gt=0)
    summary_max_age_seconds: float = Field(default=300.0, gt=0)
