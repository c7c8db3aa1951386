"""Settings of the messaging service: env prefix `MESSAGING_`, plus the stack-wide variables."""

from __future__ import annotations

from pydantic import Field, model_validator
from pydantic_settings import SettingsConfigDict

from laoke.kit.settings import ServiceSettings


class MessagingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MESSAGING_", extra="ignore", frozen=True)

    service_name: str = "messaging"
    # Outgoing mail server (the local one `make run` starts by default).
    smtp_host: str = "127.0.0.1"
    smtp_port: int = 8025
    smtp_username: str | None = None
    smtp_password: str | None = None
    smtp_starttls: bool = False
    smtp_timeout_seconds: float = 10
    # Aliyun Dysmsapi endpoint (the local stand-in by default; https://dysmsapi.aliyuncs.com in production).
    aliyun_sms_endpoint: str = "http://127.0.0.1:8026"
    # Tencent Cloud SMS endpoint (https://sms.tencentcloudapi.com/ in production).
    tencent_sms_endpoint: str = "http://127.0.0.1:8026/tencent"
    sms_timeout_seconds: float = 5
    # Where buyers reach Laoke (unsubscribe links in e-mail): the gateway's public address.
    public_url: str = "http://127.0.0.1:8000"
    # The dispatcher: how often it looks for due messages and how many it takes at once.
    dispatch_seconds: float = Field(default=0.1, gt=0)
    dispatch_batch: int = Field(default=1000, ge=1, le=10_000)
    dispatch_loops: int = Field(default=2, ge=1, le=16)
    send_max_attempts: int = Field(default=4, ge=1)
    # How long an SMS or e-mail stays `sending` before a dispatcher presumes the one sending it died and
    # asks the vendor whether it went out. Longer than any vendor call can take (a live send must never
    # be presumed dead), short enough that a crash delays its messages only this long.
    send_lease_seconds: float = Field(default=300, ge=1)
    # How often scheduled campaigns are looked for.
    campaign_seconds: float = Field(default=0.5, gt=0)
    # Outbound webhooks: how often due deliveries are looked for; failures in a row that disable one.
    webhook_seconds: float = Field(default=0.5, gt=0)
    webhook_disable_after: int = Field(default=20, ge=1)
    # May subscriptions point at loopback, private, link-local or reserved addresses
    # (MESSAGING_WEBHOOK_ALLOW_PRIVATE)? Unset: only outside production, where local receivers are the norm.
    webhook_allow_private: bool | None = None

    @model_validator(mode="after")
    def _lease_outlasts_a_send(self) -> MessagingSettings:
        if self.send_lease_seconds < 2 * self.sms_timeout_seconds:
            raise ValueError(
                f"MESSAGING_SEND_LEASE_SECONDS ({self.send_lease_seconds:g}) must be at least twice "
                f"MESSAGING_SMS_TIMEOUT_SECONDS ({self.sms_timeout_seconds:g}), or a live send could be "
                "taken for a dead one and sent again"
            )
        return self

    @property
    def private_webhooks_allowed(self) -> bool:
        if self.webhook_allow_private is not None:
            return self.webhook_allow_private
        return self.environment != "production"

    # How often automations that wait on time (problem shipments, birthdays) are checked.
    jobs_seconds: float = Field(default=60, gt=0)
