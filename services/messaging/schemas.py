"""Request and response models of the messaging API."""

from __future__ import annotations

from datetime import datetime
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, model_validator

from laoke.kit.money import Yuan
from laoke.kit.patches import refuse_nulls

ChannelName = Literal["sms", "email", "inapp"]


class ChannelOut(BaseModel):
    channel: ChannelName
    configured: bool
    enabled: bool
    settings: dict[str, Any] = Field(description="As stored; secrets are never shown")
    callback_url: str | None = Field(
        default=None,
        description="SMS: give this to the vendor for delivery reports and replies (退订/TD opt-outs)",
    )


class ChannelList(BaseModel):
    items: list[ChannelOut]


class TemplateIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "沉睡唤醒",
                    "channel": "sms",
                    "body": "{{name}}您好，好久不见！送您一张券 {{coupon_code}}，回复TD退订",
                }
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200)
    channel: ChannelName
    subject: str | None = Field(default=None, max_length=300, description="E-mail only")
    body: str = Field(min_length=1, max_length=20_000)
    provider_template_code: str | None = Field(
        default=None, max_length=64, description="SMS: the code the vendor approved this text under"
    )
    # What a template read answers besides these, accepted so that it can be sent back corrected:
    # read-only, ignored.
    id: str | None = Field(
        default=None, exclude=True, description="Read-only; ignored (the path names the template)"
    )
    variables: list[str] | None = Field(default=None, exclude=True, description="Read-only; ignored")
    created_at: datetime | None = Field(default=None, exclude=True, description="Read-only; ignored")
    updated_at: datetime | None = Field(default=None, exclude=True, description="Read-only; ignored")

    @model_validator(mode="after")
    def _subject_for_email(self) -> TemplateIn:
        if self.channel == "email" and not self.subject:
            raise ValueError("an e-mail template needs a subject")
        if self.channel != "email" and self.subject:
            raise ValueError("only e-mail templates have a subject")
        return self


class TemplateOut(BaseModel):
    id: str = Field(examples=["tpl_5d1f0c2b9a7e4c31"])
    name: str
    channel: ChannelName
    subject: str | None
    body: str
    provider_template_code: str | None
    variables: list[str] = Field(description="The variables the template uses")
    created_at: datetime
    updated_at: datetime


class TemplateList(BaseModel):
    items: list[TemplateOut]


class PreviewIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"channel": "sms", "body": "{{name}}您好，您的{{points}}积分即将到期", "variables": {}}
            ]
        },
    )

    channel: ChannelName
    subject: str | None = Field(default=None, max_length=300)
    body: str = Field(min_length=1, max_length=20_000)
    variables: dict[str, str | int] = Field(
        default_factory=dict, description="Values to try; sample values fill the rest"
    )


class PreviewOut(BaseModel):
    subject: str | None
    body: str
    characters: int = Field(description="SMS: characters as the carrier counts them, signature included")
    sms_parts: int | None = Field(description="SMS: how many messages the text is billed as")


class ConsentIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid", json_schema_extra={"examples": [{"channel": "sms", "subscribed": False}]}
    )

    channel: ChannelName
    subscribed: bool


class ConsentOut(BaseModel):
    customer_id: str
    channels: dict[str, bool] = Field(examples=[{"sms": False, "email": True, "inapp": True}])


class InboxMessage(BaseModel):
    id: int
    subject: str | None
    body: str
    sent_at: datetime
    read_at: datetime | None


class InboxPage(BaseModel):
    unread: int
    items: list[InboxMessage]


class MessageOut(BaseModel):
    id: int
    source: str = Field(examples=["campaign:cmp_5d1f0c2b9a7e4c31"])
    customer_id: str
    channel: ChannelName
    status: str = Field(
        examples=["sent"], description="queued, paused, sent, delivered, failed, suppressed, cancelled"
    )
    reason: str | None
    recipient: str | None = Field(description="Masked without the pii scope")
    body: str | None
    coupon_code: str | None
    attempts: int
    deferred: bool
    not_before: datetime
    created_at: datetime
    sent_at: datetime | None
    delivered_at: datetime | None


class MessagePage(BaseModel):
    items: list[MessageOut]
    next_cursor: str | None


class CampaignIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "name": "双11 老客回购",
                    "segment_id": "seg_5d1f0c2b9a7e4c31",
                    "channel": "sms",
                    "template_id": "tpl_5d1f0c2b9a7e4c31",
                    "holdout_percent": 10,
                }
            ]
        },
    )

    name: str = Field(min_length=1, max_length=200)
    segment_id: str = Field(min_length=1, max_length=32)
    channel: ChannelName
    template_id: str | None = Field(default=None, max_length=32)
    variants_by_tier: dict[str, str] | None = Field(
        default=None,
        description='Template per tier name; "*" for everyone else',
        examples=[{"金卡": "tpl_gold", "*": "tpl_default"}],
    )
    coupon_template_id: str | None = Field(
        default=None, max_length=32, description="One coupon per recipient"
    )
    schedule_at: AwareDatetime | None = None
    holdout_percent: int = Field(0, ge=0, le=90, description="Random share of the segment that gets nothing")
    attribution_days: int = Field(7, ge=1, le=90)

    @model_validator(mode="after")
    def _one_template(self) -> CampaignIn:
        if (self.template_id is None) == (self.variants_by_tier is None):
            raise ValueError("give either template_id or variants_by_tier")
        if self.variants_by_tier is not None and not self.variants_by_tier:
            raise ValueError("variants_by_tier needs at least one tier")
        return self


class Lift(BaseModel):
    conversion_rate: float | None = Field(description="Converted / targeted")
    holdout_conversion_rate: float | None
    lift: float | None = Field(description="Difference of the two rates")
    ci95_low: float | None
    ci95_high: float | None


class CampaignPatch(BaseModel):
    """What changes in a campaign whose audience is not taken yet (a draft, or scheduled); a field left
    out keeps its value. Giving `template_id` clears `variants_by_tier` and the other way round;
    `schedule_at: null` sends at launch (a scheduled campaign: now)."""

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"name": "双12 老客回购", "schedule_at": "2026-12-12T10:00:00+08:00", "holdout_percent": 5}
            ]
        },
    )

    name: str | None = Field(default=None, min_length=1, max_length=200)
    segment_id: str | None = Field(default=None, min_length=1, max_length=32)
    channel: ChannelName | None = None
    template_id: str | None = Field(default=None, max_length=32)
    variants_by_tier: dict[str, str] | None = None
    coupon_template_id: str | None = Field(default=None, max_length=32)
    schedule_at: AwareDatetime | None = None
    holdout_percent: int | None = Field(default=None, ge=0, le=90)
    attribution_days: int | None = Field(default=None, ge=1, le=90)

    @model_validator(mode="after")
    def _no_null_for_required(self) -> CampaignPatch:
        refuse_nulls(self, "name", "segment_id", "channel", "holdout_percent", "attribution_days")
        return self


class CampaignOut(BaseModel):
    id: str = Field(examples=["cmp_5d1f0c2b9a7e4c31"])
    name: str
    segment_id: str
    channel: ChannelName
    template_id: str | None
    variants_by_tier: dict[str, str] | None
    coupon_template_id: str | None
    holdout_percent: int
    attribution_days: int
    status: str = Field(
        examples=["sending"], description="draft, scheduled, sending, paused, completed, cancelled, failed"
    )
    failure_reason: str | None = Field(
        default=None,
        examples=[None],
        description="Why a `failed` campaign failed (its segment was deleted before the audience was taken)",
    )
    schedule_at: datetime | None
    launched_at: datetime | None
    snapshot_at: datetime | None
    completed_at: datetime | None
    targeted: int
    holdout: int
    queued: int
    suppressed: int
    suppressed_by: dict[str, int] = Field(examples=[{"opt_out": 3, "frequency_cap": 1, "invalid_contact": 2}])
    deferred: int = Field(description="Held back by quiet hours (sent later, not dropped)")
    sent: int
    delivered: int
    failed: int
    cancelled: int
    converted: int = Field(description="Targeted buyers who paid an order within the attribution window")
    revenue: Yuan
    holdout_converted: int
    attribution: Lift
    created_at: datetime


class CampaignList(BaseModel):
    items: list[CampaignOut]
    next_cursor: str | None = Field(default=None, description="Pass as `cursor` for the next page")


class AutomationIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "enabled": True,
                    "channel": "sms",
                    "template_id": "tpl_5d1f0c2b9a7e4c31",
                    "delay_minutes": 30,
                }
            ]
        },
    )

    enabled: bool = True
    channel: ChannelName
    template_id: str = Field(min_length=1, max_length=32)
    delay_minutes: int | None = Field(
        default=None, ge=0, le=60 * 24 * 60, description="催付: after placing; 疑难件: after shipping"
    )
    coupon_template_id: str | None = Field(default=None, max_length=32)
    # What `GET /api/v1/automations` answers besides the settings, accepted so that an item read can be
    # sent back changed (read, switch off, write): read-only, ignored.
    kind: str | None = Field(
        default=None, exclude=True, description="Read-only; ignored (the path names the kind)"
    )
    description: str | None = Field(default=None, exclude=True, description="Read-only; ignored")
    sent: int | None = Field(default=None, exclude=True, description="Read-only; ignored")


class AutomationOut(BaseModel):
    kind: str = Field(examples=["unpaid_reminder"])
    description: str
    enabled: bool
    channel: ChannelName | None
    template_id: str | None
    delay_minutes: int
    coupon_template_id: str | None
    sent: int = Field(description="Messages sent by this automation so far")


class AutomationList(BaseModel):
    items: list[AutomationOut]


FeedbackKind = Literal["complaint", "suggestion", "return", "problem_shipment", "other"]
FeedbackStatus = Literal["open", "in_progress", "resolved"]


class FeedbackIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {
                    "kind": "complaint",
                    "subject": "收到的商品有破损",
                    "customer_id": "cus_3f9a0c1e5b7d2a48",
                    "order_id": "ord_5d1f0c2b9a7e4c31",
                }
            ]
        },
    )

    kind: FeedbackKind
    subject: str = Field(min_length=1, max_length=200)
    customer_id: str | None = Field(default=None, max_length=32)
    order_id: str | None = Field(default=None, max_length=32)
    assignee: str | None = Field(default=None, max_length=100)
    note: str | None = Field(default=None, max_length=2000)


class FeedbackPatch(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"status": "resolved", "note": "已补发，顾客满意"}]},
    )

    status: FeedbackStatus | None = None
    assignee: str | None = Field(default=None, max_length=100)
    note: str | None = Field(default=None, max_length=2000)


class FeedbackNote(BaseModel):
    at: datetime
    text: str


class FeedbackOut(BaseModel):
    id: str = Field(examples=["fbk_5d1f0c2b9a7e4c31"])
    kind: str
    subject: str
    customer_id: str | None
    order_id: str | None
    status: FeedbackStatus
    assignee: str | None
    notes: list[FeedbackNote]
    created_at: datetime
    resolved_at: datetime | None
    hours_to_resolve: float | None


class FeedbackPage(BaseModel):
    items: list[FeedbackOut]
    counts: dict[str, int] = Field(description="Tickets per status")
    median_hours_to_resolve: float | None


class SubscriptionIn(BaseModel):
    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={
            "examples": [
                {"url": "https://app.example.com/laoke/webhooks", "events": ["order.paid", "coupon.issued"]}
            ]
        },
    )

    url: str = Field(min_length=8, max_length=2000, pattern=r"^https?://[^\s]+$")
    events: list[str] = Field(min_length=1, max_length=50, description='Event types, or ["*"] for all')


class SubscriptionOut(BaseModel):
    id: str = Field(examples=["sub_5d1f0c2b9a7e4c31"])
    url: str
    events: list[str]
    active: bool
    consecutive_failures: int
    disabled_reason: str | None
    created_at: datetime
    disabled_at: datetime | None


class SubscriptionCreated(SubscriptionOut):
    secret: str = Field(description="Verifies X-Laoke-Signature; shown once")


class SubscriptionList(BaseModel):
    items: list[SubscriptionOut]


class DeliveryOut(BaseModel):
    id: int
    event_id: str
    event_type: str
    status: str = Field(examples=["delivered"], description="pending, delivered, failed")
    attempts: int
    last_status_code: int | None
    last_error: str | None
    next_attempt_at: datetime
    created_at: datetime
    delivered_at: datetime | None


class DeliveryPage(BaseModel):
    items: list[DeliveryOut]
