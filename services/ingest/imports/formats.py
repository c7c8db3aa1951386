"""The file formats a history import reads: which header names mean which field, and status texts.

Headers are matched after trimming spaces (the Taobao export has stray spaces after some names) and
both the older and the newer Taobao report names are accepted.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from laoke.contracts.orders import OrderStatus


@dataclass(frozen=True)
class FileFormat:
    name: str
    channel: str
    # canonical field → header names that carry it, preferred first
    columns: dict[str, tuple[str, ...]]
    required: tuple[str, ...]
    # human name of a canonical field in this format, for error messages
    labels: dict[str, str] = field(default_factory=dict)

    def label(self, canonical: str) -> str:
        return self.columns[canonical][0] if canonical in self.columns else canonical


TAOBAO = FileFormat(
    name="taobao",
    channel="taobao",
    columns={
        "order_id": ("订单编号", "主订单编号", "订单号"),
        "buyer_nick": ("买家会员名", "买家昵称", "买家账号"),
        "buyer_open_uid": ("买家openuid", "买家OpenUid", "买家ID"),
        "paid": ("买家实际支付金额", "买家实付金额", "实付金额"),
        "total": ("总金额", "订单金额", "买家应付货款"),
        "status": ("订单状态",),
        "placed_at": ("订单创建时间", "创建时间", "下单时间"),
        "paid_at": ("订单付款时间", "付款时间"),
        "completed_at": ("确认收货时间", "交易成功时间"),
        "shipped_at": ("发货时间",),
        "receiver_name": ("收货人姓名", "收货人"),
        "address": ("收货地址", "详细收货地址"),
        "mobile": ("联系手机", "收货人手机号", "手机"),
        "phone": ("联系电话",),
        "title": ("宝贝标题", "商品标题"),
        "quantity": ("宝贝总数量", "商品数量", "购买数量"),
        "refund": ("退款金额",),
    },
    required=("order_id", "buyer_nick", "paid", "status", "placed_at"),
)

SHOPIFY = FileFormat(
    name="shopify",
    channel="shopify",
    columns={
        "order_id": ("Id", "Name"),
        "email": ("Email",),
        "financial_status": ("Financial Status",),
        "fulfillment_status": ("Fulfillment Status",),
        "paid_at": ("Paid at",),
        "shipped_at": ("Fulfilled at",),
        "cancelled_at": ("Cancelled at",),
        "currency": ("Currency",),
        "total": ("Total",),
        "refund": ("Refunded Amount",),
        "placed_at": ("Created at",),
        "quantity": ("Lineitem quantity",),
        "title": ("Lineitem name",),
        "coupon": ("Discount Code",),
        "receiver_name": ("Shipping Name",),
        "mobile": ("Phone", "Shipping Phone", "Billing Phone"),
        "province": ("Shipping Province Name", "Shipping Province"),
        "city": ("Shipping City",),
        "address": ("Shipping Address1", "Shipping Street"),
        "zip": ("Shipping Zip",),
    },
    required=("order_id", "email", "financial_status", "total", "placed_at"),
)

GENERIC = FileFormat(
    name="generic",
    channel="api",
    columns={
        "order_id": ("order_id",),
        "channel": ("channel",),
        "buyer_id": ("buyer_id", "buyer_external_id"),
        "buyer_nick": ("buyer_nick",),
        "email": ("email",),
        "mobile": ("mobile",),
        "status": ("status",),
        "currency": ("currency",),
        "total": ("total_amount",),
        "paid": ("paid_amount",),
        "refund": ("refunded_amount",),
        "placed_at": ("placed_at",),
        "paid_at": ("paid_at",),
        "shipped_at": ("shipped_at",),
        "completed_at": ("completed_at",),
        "quantity": ("item_count",),
        "title": ("title",),
        "coupon": ("coupon_codes",),
        "receiver_name": ("receiver_name",),
        "phone": ("receiver_phone",),
        "province": ("province",),
        "city": ("city",),
        "district": ("district",),
        "address": ("address",),
        "zip": ("zip",),
    },
    required=("order_id", "status", "total", "placed_at"),
)

FORMATS = {f.name: f for f in (TAOBAO, SHOPIFY, GENERIC)}


def detect(headers: list[str]) -> FileFormat | None:
    names = {h.strip() for h in headers}
    if names & {"订单编号", "主订单编号", "订单号"}:
        return TAOBAO
    if "Financial Status" in names:
        return SHOPIFY
    if {"order_id", "status"} <= names:
        return GENERIC
    return None


def map_columns(fmt: FileFormat, headers: list[str]) -> tuple[dict[str, str], list[str]]:
    """canonical field → the header as written in the file, and the required fields that are missing."""
    by_trimmed: dict[str, str] = {}
    for header in headers:
        by_trimmed.setdefault(header.strip().lstrip("\ufeff"), header)
    found: dict[str, str] = {}
    for canonical, names in fmt.columns.items():
        for name in names:
            if name in by_trimmed:
                found[canonical] = by_trimmed[name]
                break
    missing = [c for c in fmt.required if c not in found]
    return found, missing


def _squash(text: str) -> str:
    return text.replace(" ", "").replace("，", ",").replace("：", ":")


# Taobao's Chinese status text → (status when paid, status when never paid).
TAOBAO_STATUS_TEXT: dict[str, OrderStatus] = {
    _squash(text): status
    for text, status in {
        "等待买家付款": OrderStatus.CREATED,
        "买家已付款，等待卖家发货": OrderStatus.PAID,
        "等待卖家发货": OrderStatus.PAID,
        "买家已付款": OrderStatus.PAID,
        "卖家已发货，等待买家确认": OrderStatus.SHIPPED,
        "卖家部分发货": OrderStatus.SHIPPED,
        "买家已签收": OrderStatus.SHIPPED,
        "交易成功": OrderStatus.COMPLETED,
        "交易关闭": OrderStatus.CLOSED,  # refunded instead when money was paid
        "交易自动关闭": OrderStatus.CLOSED,
        "付款以前，卖家或买家主动关闭交易": OrderStatus.CLOSED,
    }.items()
}

GENERIC_STATUS_TEXT: dict[str, OrderStatus] = {s.value: s for s in OrderStatus}


def squash_status(text: str) -> str:
    return _squash(text)
