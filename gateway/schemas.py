"""Request and response models of the gateway's own API."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from laoke.kit.clock import TimeZoneName

Scope = Literal["read", "write", "pii", "keys"]
ALL_SCOPES: tuple[Scope, ...] = ("read", "write", "pii", "keys")


class ShopCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"name": "西湖茶庄", "timezone": "Asia/Shanghai", "currency": "CNY"}]
        },
    )

    name: str = Field(min_length=1, max_length=200)
    timezone: TimeZoneName = Field(
        default="Asia/Shanghai", description="IANA time zone of the shop's business day"
    )
    currency: str = Field(default="CNY", pattern=r"^[A-Z]{3}$")

    @field_validator("name")
    @classmethod
    def _not_blank(cls, value: str) -> str:
        if not value.strip():
            raise ValueError("name must not be blank")
        return value.strip()


class ShopCreated(BaseModel):
    shop_id: str = Field(examples=["shp_7c0d8e2f4a6b1935"])
    name: str
    timezone: str
    currency: str
    api_key: str = Field(description="Shown once; has every scope", examples=["lk_1a2b3c4d5e6f_..."])
    webhook_secret: str = Field(description="Verifies marketplace webhooks; shown once here")


class ShopOut(BaseModel):
    shop_id: str
    name: str
    timezone: str
    currency: str
    created_at: datetime


class KeyCreate(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"name": "ERP sync", "scopes": ["read", "write"]}]}
    )

    name: str = Field(min_length=1, max_length=200)
    scopes: list[Scope] = Field(default_factory=lambda: ["read"], min_length=1)


class KeyOut(BaseModel):
    id: str = Field(examples=["1a2b3c4d5e6f"])
    name: str
    scopes: list[Scope]
    created_at: datetime
    revoked_at: datetime | None = None


class KeyCreated(KeyOut):
    api_key: str = Field(description="The full key. Shown once: store it now.")


class KeyList(BaseModel):
    items: list[KeyOut]


class Me(BaseModel):
    shop_id: str
    shop_name: str
    timezone: str
    currency: str
    key: KeyOut


class WebhookSecretRotated(BaseModel):
    webhook_secret: str = Field(description="The new secret. Shown once: configure your senders now.")
    previous_valid_until: datetime = Field(description="The old secret verifies webhooks until then")
