"""What vendors tell us after sending: delivery reports that settle a message as delivered or failed,
and which buyers a replying mobile number belongs to."""

from __future__ import annotations

from datetime import UTC, datetime
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


async def record_reports(session: AsyncSession, shop_id: str, reports: list[dict[str, Any]]) -> int:
    """Settle sent SMS by (vendor batch id, number). A report for an unknown message changes nothing."""
    if not reports:
        return 0
    result = await session.execute(
        text(
            "UPDATE messaging.messages m SET "
            "status = CASE WHEN v.success THEN 'delivered' ELSE 'failed' END, "
            "delivered_at = CASE WHEN v.success THEN v.at END, "
            "reason = CASE WHEN v.success THEN NULL ELSE v.reason END "
            "FROM unnest(CAST(:biz AS text[]), CAST(:phones AS text[]), CAST(:ok AS boolean[]), "
            "            CAST(:ats AS timestamptz[]), CAST(:reasons AS text[])) "
            "     AS v(biz, phone, success, at, reason) "
            "WHERE m.shop_id = :shop AND m.channel = 'sms' AND m.provider_message_id = v.biz "
            "AND m.recipient = v.phone AND m.status = 'sent'"
        ),
        {
            "shop": shop_id,
            "biz": [str(r["biz_id"]) for r in reports],
            "phones": [normalise_mobile(str(r["phone_number"])) or "" for r in reports],
            "ok": [str(r.get("success")).lower() == "true" for r in reports],
            "ats": [_reported_at(r.get("report_time")) for r in reports],
            "reasons": [f"{r.get('err_code', '')}: {r.get('err_msg', '')}"[:300] for r in reports],
        },
    )
    return result.rowcount or 0  # type: ignore[attr-defined]


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
