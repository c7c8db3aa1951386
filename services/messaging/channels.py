"""The three channels and how each one sends: in-app (the buyer's inbox, nothing leaves Laoke), e-mail
over SMTP with RFC 8058 one-click unsubscribe, and SMS through a vendor's HTTP API (Aliyun Dysmsapi,
batches of up to 100 numbers per call).

A shop configures each channel (`PUT /api/v1/messaging/channels/{channel}`); access key secrets are
stored and never shown again.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from email.message import EmailMessage
from email.utils import formataddr, make_msgid
from enum import StrEnum
from typing import Any, Literal
from zoneinfo import ZoneInfo

import aiosmtplib
import httpx
from email_validator import EmailNotValidError, validate_email
from pydantic import BaseModel, ConfigDict, Field, model_validator
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit.vendors import aliyun_signature, tencent_tc3_authorization
from services.messaging.models import ChannelConfig
from services.messaging.settings import MessagingSettings

CHINA = ZoneInfo("Asia/Shanghai")  # Aliyun keeps send dates in China time


class Channel(StrEnum):
    SMS = "sms"
    EMAIL = "email"
    INAPP = "inapp"


_MOBILE = re.compile(r"^(?:\+?86)?(1[3-9]\d{9})$")


def normalise_mobile(value: str | None) -> str | None:
    """A mainland mobile number as the SMS vendors take it (11 digits), or None when it is not one."""
    if not value:
        return None
    match = _MOBILE.match(re.sub(r"[\s-]", "", value))
    return match.group(1) if match else None


def normalise_email(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return validate_email(value, check_deliverability=False).normalized
    except EmailNotValidError:
        return None


def recipient_for(channel: str, mobile: str | None, email: str | None, customer_id: str) -> str | None:
    if channel == Channel.SMS:
        return normalise_mobile(mobile)
    if channel == Channel.EMAIL:
        return normalise_email(email)
    return customer_id


class SmsConfig(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "enabled": True,
                    "provider": "aliyun",
                    "access_key_id": "LTAI-local-laoke",
                    "access_key_secret": "local-laoke-sms-secret",
                    "sign_name": "老客小店",
                    "rate_per_second": 50,
                }
            ]
        },
    )

    enabled: bool = True
    provider: Literal["aliyun", "tencent"] = "aliyun"
    access_key_id: str = Field(
        min_length=1, max_length=128, description="Aliyun AccessKey ID, or Tencent Cloud SecretId"
    )
    access_key_secret: str | None = Field(
        default=None,
        max_length=128,
        description="Aliyun AccessKey secret or Tencent SecretKey; write-only, omit to keep the stored one",
    )
    sign_name: str = Field(min_length=2, max_length=12, description="The approved 【signature】")
    sdk_app_id: str | None = Field(default=None, max_length=32, description="Tencent: the SmsSdkAppId")
    region: str | None = Field(default=None, description="cn-hangzhou (Aliyun) / ap-guangzhou (Tencent)")

    @model_validator(mode="after")
    def _tencent_needs_app(self) -> SmsConfig:
        if self.provider == "tencent" and not self.sdk_app_id:
            raise ValueError("a Tencent Cloud SMS channel needs its sdk_app_id (SmsSdkAppId)")
        return self

    rate_per_second: int = Field(50, ge=1, le=10_000, description="Vendor calls per second, this shop")


class EmailConfig(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [{"enabled": True, "from_address": "hello@shop.example", "from_name": "老客小店"}]
        },
    )

    enabled: bool = True
    from_address: str = Field(max_length=254)
    from_name: str | None = Field(default=None, max_length=100)
    reply_to: str | None = Field(default=None, max_length=254)


class InappConfig(BaseModel):
    model_config = ConfigDict(extra="forbid", json_schema_extra={"examples": [{"enabled": True}]})

    enabled: bool = True


CONFIG_MODELS: dict[str, type[BaseModel]] = {
    Channel.SMS: SmsConfig,
    Channel.EMAIL: EmailConfig,
    Channel.INAPP: InappConfig,
}


async def load_config(session: AsyncSession, shop_id: str, channel: str) -> BaseModel | None:
    """The shop's configuration of `channel`; in-app works unconfigured, the others need one."""
    row = await session.get(ChannelConfig, (shop_id, channel))
    if row is None:
        return InappConfig() if channel == Channel.INAPP else None
    return CONFIG_MODELS[channel].model_validate({"enabled": row.enabled, **row.settings})


@dataclass
class Outgoing:
    """One message ready to leave: who, what, and the key of its row."""

    id: int
    customer_id: str
    recipient: str
    subject: str | None
    body: str
    template_code: str
    variables: dict[str, Any]
    unsubscribe_url: str | None = None


@dataclass
class Outcome:
    id: int
    ok: bool
    retry: bool = False  # a transient failure: try again later
    reason: str | None = None
    provider_message_id: str | None = None


class RateLimiter:
    """Calls per second to one vendor account, per process (a token bucket)."""

    def __init__(self) -> None:
        self._next: dict[str, float] = {}

    async def wait(self, key: str, per_second: int) -> None:
        now = time.monotonic()
        at = max(self._next.get(key, now), now)
        self._next[key] = at + 1 / per_second
        if at > now:
            await asyncio.sleep(at - now)


# Aliyun codes worth another try later; anything else fails the message for good.
_ALIYUN_TRANSIENT = {
    "isp.SYSTEM_ERROR",
    "isv.BUSINESS_LIMIT_CONTROL",
    "Throttling.User",
    "ServiceUnavailable",
}


class AliyunSms:
    """Dysmsapi `SendBatchSms` (version 2017-05-25) signed with signature version 1.0 (HMAC-SHA1)."""

    def __init__(self, client: httpx.AsyncClient, endpoint: str, config: SmsConfig, secret: str) -> None:
        self.client, self.endpoint, self.config, self.secret = client, endpoint, config, secret

    def _signed(self, action: str, params: dict[str, str]) -> dict[str, str]:
        signed = {
            "AccessKeyId": self.config.access_key_id,
            "Action": action,
            "Format": "JSON",
            "RegionId": self.config.region or "cn-hangzhou",
            "SignatureMethod": "HMAC-SHA1",
            "SignatureNonce": uuid.uuid4().hex,
            "SignatureVersion": "1.0",
            "Timestamp": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "Version": "2017-05-25",
            **params,
        }
        signed["Signature"] = aliyun_signature("POST", signed, self.secret)
        return signed

    async def sent_out_ids(self, phone: str, day: datetime) -> set[str] | None:
        """The OutIds the vendor has for `phone` on `day` (China time), by `QuerySendDetails`; None when
        it cannot be asked now."""
        found: set[str] = set()
        page = 1
        while True:
            params = {
                "PhoneNumber": phone,
                "SendDate": day.astimezone(CHINA).strftime("%Y%m%d"),
                "PageSize": "50",
                "CurrentPage": str(page),
            }
            try:
                response = await self.client.post(
                    self.endpoint, data=self._signed("QuerySendDetails", params)
                )
                answer = response.json()
            except (httpx.HTTPError, ValueError):
                return None
            if answer.get("Code") != "OK":
                return None
            details = (answer.get("SmsSendDetailDTOs") or {}).get("SmsSendDetailDTO") or []
            found.update(str(d.get("OutId")) for d in details if d.get("OutId"))
            if page * 50 >= int(answer.get("TotalCount", 0)) or not details:
                return found
            page += 1

    async def send_batch(self, batch: Sequence[Outgoing], out_id: str) -> list[Outcome]:
        """One call for up to 100 messages of one template: all accepted or all refused. `out_id` is
        ours; the vendor keeps it with every number so a send can be looked up after a crash."""
        params = {
            "PhoneNumberJson": json.dumps([m.recipient for m in batch]),
            "SignNameJson": json.dumps([self.config.sign_name] * len(batch), ensure_ascii=False),
            "TemplateCode": batch[0].template_code,
            "TemplateParamJson": json.dumps([m.variables for m in batch], ensure_ascii=False),
            "OutId": out_id,
        }
        try:
            response = await self.client.post(self.endpoint, data=self._signed("SendBatchSms", params))
            answer = response.json()
        except (httpx.HTTPError, ValueError) as exc:
            reason = f"sms vendor unreachable: {type(exc).__name__}"
            return [Outcome(m.id, ok=False, retry=True, reason=reason) for m in batch]
        code = str(answer.get("Code", "")) or f"HTTP {response.status_code}"
        if code == "OK":
            return [Outcome(m.id, ok=True, provider_message_id=answer.get("BizId")) for m in batch]
        reason = f"{code}: {answer.get('Message', '')}"[:300]
        return [Outcome(m.id, ok=False, retry=code in _ALIYUN_TRANSIENT, reason=reason) for m in batch]


_TENCENT_TRANSIENT_PREFIXES = (
    "InternalError",
    "RequestLimitExceeded",
    "LimitExceeded.DeliveryFrequencyLimit",
)


class TencentSms:
    """Tencent Cloud SMS `SendSms` (API 3.0, version 2021-01-11), TC3-HMAC-SHA256 signed. Tencent
    templates take positional parameters ({1}, {2} …) shared by every number of a call: {1} is the first
    variable the Laoke template uses, {2} the second, and so on; messages are grouped by their values."""

    def __init__(self, client: httpx.AsyncClient, endpoint: str, config: SmsConfig, secret: str) -> None:
        self.client, self.endpoint, self.config, self.secret = client, endpoint, config, secret

    async def _call(self, action: str, payload: dict[str, Any]) -> dict[str, Any]:
        """One TC3-HMAC-SHA256 signed API 3.0 call; returns its `Response` (which may hold an `Error`).
        Raises httpx.HTTPError, ValueError or KeyError when there is no answer to read."""
        body = json.dumps(payload, ensure_ascii=False)
        host = httpx.URL(self.endpoint).netloc.decode()
        stamp = int(time.time())
        headers = {
            "Content-Type": "application/json; charset=utf-8",
            "Host": host,
            "X-TC-Action": action,
            "X-TC-Version": "2021-01-11",
            "X-TC-Timestamp": str(stamp),
            "X-TC-Region": self.config.region or "ap-guangzhou",
            "Authorization": tencent_tc3_authorization(
                secret_id=self.config.access_key_id,
                secret_key=self.secret,
                service="sms",
                host=host,
                body=body,
                timestamp=stamp,
            ),
        }
        response = await self.client.post(self.endpoint, content=body.encode(), headers=headers)
        return dict(response.json()["Response"])

    async def sent_out_ids(self, phone: str, day: datetime) -> set[str] | None:
        """The SessionContexts (our OutIds) Tencent has for `phone` since `day` (the send's time), by
        `PullSmsSendStatusByPhoneNumber`; None when it cannot be asked now. Tencent lists a message
        once the carrier reported on it, which the send lease (minutes) leaves time for."""
        found: set[str] = set()
        offset = 0
        while True:
            payload = {
                "SmsSdkAppId": self.config.sdk_app_id,
                "PhoneNumber": f"+86{phone}",
                "BeginTime": int(day.timestamp()) - 60,
                # Whole seconds: rounded up (and a minute's leeway for clock skew), or a send earlier in
                # this very second would fall outside the window and be taken for unsent.
                "EndTime": int(time.time()) + 60,
                "Offset": offset,
                "Limit": 100,
            }
            try:
                answer = await self._call("PullSmsSendStatusByPhoneNumber", payload)
            except (httpx.HTTPError, ValueError, KeyError):
                return None
            if "Error" in answer:
                return None
            statuses = answer.get("PullSmsSendStatusSet") or []
            found.update(str(s["SessionContext"]) for s in statuses if s.get("SessionContext"))
            if len(statuses) < 100:
                return found
            offset += 100

    async def send_batch(self, batch: Sequence[Outgoing], out_id: str) -> list[Outcome]:
        """Up to 200 numbers sharing one template and one parameter list."""
        payload = {
            "PhoneNumberSet": [f"+86{m.recipient}" for m in batch],
            "SmsSdkAppId": self.config.sdk_app_id,
            "SignName": self.config.sign_name,
            "TemplateId": batch[0].template_code,
            "TemplateParamSet": list(batch[0].variables.values()),
            "SessionContext": out_id,
        }
        try:
            answer = await self._call("SendSms", payload)
        except (httpx.HTTPError, ValueError, KeyError) as exc:
            reason = f"sms vendor unreachable: {type(exc).__name__}"
            return [Outcome(m.id, ok=False, retry=True, reason=reason) for m in batch]
        if "Error" in answer:
            code = str(answer["Error"].get("Code", ""))
            reason = f"{code}: {answer['Error'].get('Message', '')}"[:300]
            retry = code.startswith(_TENCENT_TRANSIENT_PREFIXES)
            return [Outcome(m.id, ok=False, retry=retry, reason=reason) for m in batch]
        statuses = {
            str(s.get("PhoneNumber", "")).removeprefix("+86"): s for s in answer.get("SendStatusSet", [])
        }
        outcomes = []
        for message in batch:
            status = statuses.get(message.recipient, {})
            if status.get("Code") == "Ok":
                outcomes.append(Outcome(message.id, ok=True, provider_message_id=status.get("SerialNo")))
            else:
                code = str(status.get("Code", "no status for this number"))
                reason = f"{code}: {status.get('Message', '')}"[:300]
                outcomes.append(
                    Outcome(
                        message.id,
                        ok=False,
                        retry=code.startswith(_TENCENT_TRANSIENT_PREFIXES),
                        reason=reason,
                    )
                )
        return outcomes


async def send_email(settings: MessagingSettings, config: EmailConfig, message: Outgoing) -> Outcome:
    mail = EmailMessage()
    mail["From"] = formataddr((config.from_name or "", config.from_address))
    mail["To"] = message.recipient
    mail["Subject"] = message.subject or ""
    mail["Message-ID"] = make_msgid(idstring=f"laoke{message.id}")
    if config.reply_to:
        mail["Reply-To"] = config.reply_to
    if message.unsubscribe_url:
        # RFC 8058: mail clients POST "List-Unsubscribe=One-Click" to this URL; no page to visit.
        mail["List-Unsubscribe"] = f"<{message.unsubscribe_url}>"
        mail["List-Unsubscribe-Post"] = "List-Unsubscribe=One-Click"
    mail.set_content(message.body)
    try:
        await aiosmtplib.send(
            mail,
            hostname=settings.smtp_host,
            port=settings.smtp_port,
            username=settings.smtp_username,
            password=settings.smtp_password,
            start_tls=settings.smtp_starttls,
            timeout=settings.smtp_timeout_seconds,
        )
    except aiosmtplib.SMTPRecipientsRefused as exc:
        return Outcome(message.id, ok=False, reason=f"recipient refused: {exc}"[:300])
    except (aiosmtplib.SMTPException, OSError, TimeoutError) as exc:
        return Outcome(message.id, ok=False, retry=True, reason=f"smtp: {type(exc).__name__}: {exc}"[:300])
    return Outcome(message.id, ok=True, provider_message_id=mail["Message-ID"])
