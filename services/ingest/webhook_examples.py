"""Example bodies of each webhook, as the marketplaces send them, for the OpenAPI docs."""

from __future__ import annotations

from typing import Any

SHOPIFY_EXAMPLE: dict[str, Any] = {
    "id": 820982911946154508,
    "email": "jon@example.com",
    "created_at": "2026-11-20T09:30:00+08:00",
    "updated_at": "2026-11-20T09:31:00+08:00",
    "currency": "CNY",
    "total_price": "378.00",
    "financial_status": "paid",
    "fulfillment_status": None,
    "customer": {"id": 115310627314723954, "email": "john@example.com", "phone": "+86 139 0013 9000"},
    "line_items": [
        {
            "id": 866550311766439020,
            "sku": "IPOD2008PINK",
            "title": "IPod Nano",
            "quantity": 2,
            "price": "199.00",
        }
    ],
    "discount_codes": [{"code": "WINTER20", "amount": "20.00", "type": "fixed_amount"}],
    "refunds": [],
}
WOO_EXAMPLE: dict[str, Any] = {
    "id": 727,
    "status": "processing",
    "currency": "CNY",
    "total": "29.35",
    "customer_id": 0,
    "date_created_gmt": "2026-11-20T01:30:00",
    "date_paid_gmt": "2026-11-20T01:31:00",
    "date_modified_gmt": "2026-11-20T01:31:00",
    "billing": {
        "first_name": "John",
        "last_name": "Doe",
        "email": "john.doe@example.com",
        "phone": "13800138000",
    },
    "line_items": [{"product_id": 93, "sku": "TEA-1", "name": "龙井", "quantity": 2, "price": 3}],
    "coupon_lines": [],
    "refunds": [],
}
TAOBAO_EXAMPLE: dict[str, Any] = {
    "id": "2026112200001",
    "topic": "taobao_trade_TradeBuyerPay",
    "content": {
        "tid": 3412567890123456789,
        "status": "WAIT_SELLER_SEND_GOODS",
        "buyer_nick": "t**小李",
        "buyer_open_uid": "AAHk5d-EAAeGwJedwSHpsrOV",
        "payment": "256.00",
        "total_fee": "266.00",
        "created": "2026-11-20 09:30:00",
        "pay_time": "2026-11-20 09:31:12",
        "modified": "2026-11-20 09:31:12",
        "receiver_name": "李*",
        "receiver_mobile": "13800138000",
        "receiver_state": "浙江省",
        "receiver_city": "杭州市",
        "receiver_district": "西湖区",
        "receiver_address": "文三路100号",
        "orders": {
            "order": [
                {
                    "oid": 3412567890123456790,
                    "title": "明前龙井 250g",
                    "num": 2,
                    "price": "128.00",
                    "refund_status": "NO_REFUND",
                }
            ]
        },
    },
}
GENERIC_EXAMPLE: dict[str, Any] = {
    "channel": "api",
    "order_id": "T20261122-0001",
    "status": "paid",
    "buyer": {"external_id": "buyer-42", "mobile": "13800138000"},
    "total_amount": "128.50",
    "placed_at": "2026-11-20T09:30:00+08:00",
    "paid_at": "2026-11-20T09:31:00+08:00",
}
