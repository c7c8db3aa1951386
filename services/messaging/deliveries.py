"""What vendors tell us after sending: delivery reports that settle a message as delivered or failed,
and which buyers a replying mobile number belongs to."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit import clock
from services.messaging.channels import normalise_mobile

_CHINA = ZoneInfo("Asia/Shanghai")


def _reported_at(value: Any) -> datetime:
    try:  # Aliyun reports "yyyy-MM-dd HH:mm:ss" in UTC+8; we store UTC
        local = datetime.strptime(str(value), "%Y-%m-%d %H:%M:%S")
    except ValueError:
        return clock.now()
    return local.replace(tzinfo=_CHINA).astimezone(UTC)


# Reports for a message sent under this vendor id settle it; reports naming no message we know are kept
# (early_sms_reports): the vendor can report before its answer to the send has reached us and named the
# id, while the message is still `sending` under our own OutId.
_RECORD_REPORTS = text(
    """
    WITH v AS (
        SELECT * FROM unnest(CAST(:biz AS text[]), CAST(:phones AS text[]), CAST(:ok AS boolean[]),
                             CAST(:ats AS timestamptz[]), CAST(:reasons AS text[]))
            AS v(biz, phone, success, at, reason)
    ), settled AS (
        UPDATE messaging.messages m SET
            status = CASE WHEN v.success THEN 'delivered' ELSE 'failed' END,
            delivered_at = CASE WHEN v.success THEN v.at END,
            reason = CASE WHEN v.success THEN NULL ELSE v.reason END
        FROM v
        WHERE m.shop_id = :shop AND m.channel = 'sms' AND m.provider_message_id = v.biz
          AND m.recipient = v.phone AND m.status = 'sent'
        RETURNING 1
    ), kept AS (
        INSERT INTO messaging.early_sms_reports
            (shop_id, provider_message_id, recipient, success, reported_at, reason)
        SELECT :shop, v.biz, v.phone, v.success, v.at, v.reason FROM v
        -- An id longer than any we store names none of our messages: not kept (and no data error
        -- failing the vendor's whole push).
        WHERE length(v.biz) <= 100 AND length(v.phone) <= 254
          AND NOT EXISTS (
            SELECT 1 FROM messaging.messages m
            WHERE m.shop_id = :shop AND m.channel = 'sms' AND m.provider_message_id = v.biz
              AND m.recipient = v.phone)
        ON CONFLICT DO NOTHING
        RETURNING 1
    )
    SELECT (SELECT count(*) FROM settled) AS settled, (SELECT count(*) FROM kept) AS kept
    """
)
# Kept reports whose message is now `sent` under the vendor's id: applied and removed. `:ids` NULL: every
# message (the periodic sweep, which also forgets reports that never found their message).
_APPLY_EARLY = text(
    """
    WITH applied AS (
        DELETE FROM messaging.early_sms_reports e USING messaging.messages m
        WHERE (CAST(:ids AS bigint[]) IS NULL OR m.id = ANY(:ids))
          AND m.shop_id = e.shop_id AND m.channel = 'sms' AND m.provider_message_id = e.provider_message_id
          AND m.recipient = e.recipient AND m.status = 'sent'
        RETURNING m.id, e.success, e.reported_at, e.reason
    ), settled AS (
        UPDATE messaging.messages m SET
            status = CASE WHEN a.success THEN 'delivered' ELSE 'failed' END,
            delivered_at = CASE WHEN a.success THEN a.reported_at END,
            reason = CASE WHEN a.success THEN NULL ELSE a.reason END
        FROM applied a WHERE m.id = a.id
        RETURNING 1
    )
    SELECT count(*) FROM settled
    """
)
_FORGET_EARLY = text(
    "DELETE FROM messaging.early_sms_reports WHERE received_at < CAST(:before AS timestamptz)"
)
# A report still unmatched after this long belongs to no message of ours (or to one lost to a crash).
EARLY_REPORT_DAYS = 2


async def record_reports(session: AsyncSession, shop_id: str, reports: list[dict[str, Any]]) -> int:
    """Settle sent SMS by (vendor message id, number); keep reports that arrived before their message
    was recorded as sent. Returns how many messages were settled now."""
    if not reports:
        return 0
    row = (
        await session.execute(
            _RECORD_REPORTS,
            {
                "shop": shop_id,
                "biz": [str(r["biz_id"]) for r in reports],
                "phones": [normalise_mobile(str(r["phone_number"])) or "" for r in reports],
                "ok": [str(r.get("success")).lower() == "true" for r in reports],
                "ats": [_reported_at(r.get("report_time")) for r in reports],
                "reasons": [f"{r.get('err_code', '')}: {r.get('err_msg', '')}"[:300] for r in reports],
            },
        )
    ).one()
    return int(row.settled)


async def apply_early_reports(session: AsyncSession, message_ids: list[int] | None = None) -> int:
    """Reports kept for these messages (just recorded as sent), or for any (`None`: the sweep, which
    also forgets reports older than EARLY_REPORT_DAYS)."""
    settled = int(await session.scalar(_APPLY_EARLY, {"ids": message_ids}) or 0)
    if message_ids is None:
        before = clock.now() - timedelta(days=EARLY_REPORT_DAYS)
        await session.execute(_FORGET_EARLY, {"before": before})
    return settled


async def customers_with_mobile(session: AsyncSession, shop_id: str, phone: str) -> list[str]:
    mobile = normalise_mobile(phone)
    if mobile is None:
        return []
    rows = await session.scalars(
        text(
            "SELECT customer_id FROM messaging.messages WHERE shop_id = :shop AND channel = 'sms' "
            "AND recipient = :mobile UNION SELECT customer_id FROM messaging.contacts "
            "WHERE shop_id = :shop AND mobile IN (:mobile, '+86' || :mobile, '86' || :mobile)"
        ),
        {"shop": shop_id, "mobile": mobile},
    )
    return list(rows)
