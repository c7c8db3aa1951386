"""One batch of raw text rows → clean staging rows plus the rows that are wrong and why.

Everything is vectorised with Arrow compute (no Python loop per row): a million-row export is cleaned
in a couple of seconds. Each check contributes an error message per row; a row with any error is
reported with its line number and left out, the others go on to the database.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc

from laoke.contracts.orders import OrderStatus
from laoke.kit import clock
from services.ingest.imports.formats import (
    GENERIC_STATUS_TEXT,
    TAOBAO_STATUS_TEXT,
    FileFormat,
    squash_status,
)
from services.ingest.schemas import FUTURE_TOLERANCE

# name, Arrow type, PostgreSQL type of the staging table. JSON is built here, in the parsing thread,
# and parsed by COPY: building it in SQL cost the landing step a third of its time (measured).
STAGING_COLUMNS: tuple[tuple[str, pa.DataType, str], ...] = (
    ("line", pa.int64(), "bigint"),
    ("order_id", pa.string(), "text"),
    ("channel", pa.string(), "text"),
    ("buyer_key", pa.string(), "text"),
    ("buyer_nick", pa.string(), "text"),
    ("email", pa.string(), "text"),
    ("mobile", pa.string(), "text"),
    ("status", pa.string(), "text"),
    ("currency", pa.string(), "text"),
    ("total_fen", pa.int64(), "bigint"),
    ("paid_fen", pa.int64(), "bigint"),
    ("refunded_fen", pa.int64(), "bigint"),
    ("quantity", pa.int64(), "bigint"),
    ("items", pa.string(), "jsonb"),
    ("coupon", pa.string(), "text"),
    ("placed_at", pa.int64(), "bigint"),
    ("paid_at", pa.int64(), "bigint"),
    ("shipped_at", pa.int64(), "bigint"),
    ("completed_at", pa.int64(), "bigint"),
    ("receiver", pa.string(), "jsonb"),
    ("continuation", pa.bool_(), "boolean"),
)


def _text_bytes(values: pa.Array) -> np.ndarray:
    """Every byte of a text column's rows in one array, for a check that looks at the whole column in
    one vectorised scan instead of once per row. A sliced column brings its neighbours' bytes along:
    such a check may then say "maybe" needlessly, never "no" wrongly."""
    if not pa.types.is_string(values.type):
        raise TypeError(f"expected a text column, got {values.type}")
    data = values.buffers()[2]
    return np.frombuffer(data, dtype=np.uint8) if data is not None else np.empty(0, dtype=np.uint8)


def _json_escaped(values: pa.Array) -> pa.Array:
    """Text escaped for the inside of a JSON string literal; null stays null."""
    # Most columns of an export hold nothing to escape: one scan of the column's bytes instead of
    # three passes over its rows.
    raw = _text_bytes(values)
    if not ((raw < 0x20).any() or (raw == ord('"')).any() or (raw == ord("\\")).any()):
        return values
    values = pc.replace_substring(values, "\\", "\\\\")
    values = pc.replace_substring(values, '"', '\\"')
    return pc.replace_substring_regex(values, r"[\x00-\x1f]", " ")


def _json_object(fields: dict[str, pa.Array]) -> pa.Array:
    """A JSON object per row of the non-null text fields, as strings; null when every field is."""
    # Each present member with a comma before it, then the first comma cut off: no regular
    # expressions tidying up after absent members. (Arrow 26's `null_handling="skip"` join loses the
    # rows whose values are all null, so it is not used.)
    members = [
        pc.fill_null(pc.binary_join_element_wise(f',"{k}":"', _json_escaped(v), '"', ""), "")
        for k, v in fields.items()
    ]
    joined = pc.binary_join_element_wise(*members, "")
    braced = pc.binary_join_element_wise(pc.utf8_replace_slice(joined, 0, 1, "{"), "}", "")
    return pc.if_else(pc.equal(joined, ""), None, braced)


_TIME_FORMATS = ("%Y-%m-%d %H:%M:%S", "%Y/%m/%d %H:%M:%S", "%Y-%m-%d %H:%M", "%Y/%m/%d %H:%M", "%Y-%m-%d")
_OFFSET_FORMATS = ("%Y-%m-%dT%H:%M:%S%z", "%Y-%m-%d %H:%M:%S %z", "%Y-%m-%dT%H:%M:%S.%f%z")
_AMOUNT = r"^\d{1,12}(\.\d{1,2})?$"
_FEN = pa.scalar(100, pa.decimal128(3, 0))


@dataclass
class Cleaned:
    rows: pa.Table
    error_lines: list[int]
    error_messages: list[str]
    error_raw: list[str]


def _null_column(n: int, kind: pa.DataType = pa.string()) -> pa.Array:
    return pa.nulls(n, kind)


# Columns where exports wrap values so Excel keeps digits: `="3412..."` ids, `'138...` phones.
_QUIRKY = frozenset({"order_id", "mobile", "phone", "buyer_id", "quantity"})


def _text(batch: pa.RecordBatch, name: str) -> pa.Array:
    """Trimmed text with the export's quirks removed; empty → null."""
    if name not in batch.schema.names:
        return _null_column(batch.num_rows)
    values = batch.column(name)
    if name in _QUIRKY:
        values = pc.utf8_trim(values, characters=" \t\r\n'\"=")
    else:
        values = pc.utf8_trim_whitespace(values)
    return pc.if_else(pc.equal(values, ""), None, values)


class _Errors:
    """The first error of each row, in check order."""

    def __init__(self, n: int) -> None:
        self.message = pa.nulls(n, pa.string())

    def add(self, failed: pa.Array, message: str, value: pa.Array | None = None) -> None:
        """`message` for each row that `failed`, followed by the row's `value` if one is given."""
        failed = pc.fill_null(failed, False)
        if not pc.any(failed).as_py():
            return  # the usual case: a message built for every row only to be thrown away
        detail: pa.Array | str = message
        if value is not None:
            detail = pc.binary_join_element_wise(message, value, "")
        self.message = pc.if_else(pc.and_(failed, pc.is_null(self.message)), detail, self.message)

    @property
    def ok(self) -> pa.Array:
        return pc.is_null(self.message)


def _amount(values: pa.Array, label: str, errors: _Errors, *, required: bool) -> pa.Array:
    """Yuan text (`1,256.00元`, `¥12.5`) → integer fen. Negative or non-numeric → a row error."""
    cleaned = values
    raw = _text_bytes(values)
    if not (((raw >= ord("0")) & (raw <= ord("9"))) | (raw == ord(".")) | (raw == ord("-"))).all():
        # Currency marks and thousands separators (an export's amounts usually have none).
        for junk in ("元", ",", "¥", "￥", " "):
            cleaned = pc.replace_substring(cleaned, junk, "")
    valid = pc.match_substring_regex(cleaned, _AMOUNT)
    present = pc.is_valid(cleaned)
    negative = pc.starts_with(cleaned, "-")
    errors.add(pc.and_(present, negative), f"{label}: negative amount")
    errors.add(
        pc.and_(present, pc.invert(pc.fill_null(valid, False))),
        f"{label}: not an amount: ",
        cleaned,
    )
    if required:
        errors.add(pc.invert(present), f"{label}: missing")
    usable = pc.if_else(pc.fill_null(valid, False), cleaned, None)
    as_decimal = pc.cast(pc.cast(usable, pa.decimal128(16, 2)), pa.decimal128(18, 2))
    return pc.cast(pc.multiply(as_decimal, _FEN), pa.int64())


def _time(values: pa.Array, label: str, errors: _Errors, zone: str, *, required: bool) -> pa.Array:
    """Wall-clock text in the shop's zone, or ISO-8601 with an offset → epoch seconds (UTC)."""
    present = pc.is_valid(values)
    wanted = pc.sum(present).as_py() or 0
    result = pa.nulls(len(values), pa.int64())
    # Try formats until every present value parsed; an export uses one format, so usually one pass.
    for fmt in _TIME_FORMATS + _OFFSET_FORMATS:
        if fmt in _OFFSET_FORMATS:
            parsed = pc.strptime(
                pc.replace_substring_regex(values, r"Z$", "+0000"), format=fmt, unit="s", error_is_null=True
            )
            seconds = pc.cast(parsed, pa.int64())
        else:
            parsed = pc.strptime(values, format=fmt, unit="s", error_is_null=True)
            seconds = pc.cast(
                pc.assume_timezone(parsed, zone, ambiguous="earliest", nonexistent="earliest"), pa.int64()
            )
        result = pc.coalesce(result, seconds)
        if result.null_count == len(values) - wanted:
            break
    errors.add(
        pc.and_(present, pc.is_null(result)),
        f"{label}: not a date and time: ",
        values,
    )
    latest = int((clock.now() + FUTURE_TOLERANCE).timestamp())
    errors.add(pc.greater(result, latest), f"{label}: more than a day in the future: ", values)
    if required:
        errors.add(pc.invert(present), f"{label}: missing")
    return result


def _mobile(values: pa.Array) -> pa.Array:
    """Normalised mainland mobile or null (masked and landline numbers are simply not usable)."""
    digits = pc.replace_substring_regex(values, r"\D", "")
    digits = pc.replace_substring_regex(digits, r"^(0086|86)(1\d{10})$", r"\2")
    return pc.if_else(pc.fill_null(pc.match_substring_regex(digits, r"^1[3-9]\d{9}$"), False), digits, None)


def _lookup(values: pa.Array, table: dict[str, str]) -> pa.Array:
    keys = pa.array(list(table))
    index = pc.index_in(values, value_set=keys)
    return pc.take(pa.array(list(table.values())), index)


def clean(batch: pa.RecordBatch, lines: pa.Array, fmt: FileFormat, zone: str, channel: str) -> Cleaned:
    n = batch.num_rows
    errors = _Errors(n)
    col = {name: _text(batch, name) for name in fmt.columns}
    label = fmt.label
    continuation = pa.array([False] * n)
    mobile = _mobile(col["mobile"]) if "mobile" in col else _null_column(n)

    if fmt.name == "shopify":
        # Rows after an order's first one carry only another line item: no totals, no status.
        continuation = pc.is_null(col["financial_status"])
        # Only an order's first row may carry its Id; its line items follow directly below.
        col["order_id"] = pc.fill_null_forward(col["order_id"])

    errors.add(pc.and_(pc.is_null(col["order_id"]), pc.invert(continuation)), f"{label('order_id')}: missing")
    total = _amount(col["total"], label("total"), errors, required=fmt.name != "taobao")
    paid = (
        _amount(col["paid"], label("paid"), errors, required=fmt.name == "taobao") if "paid" in col else None
    )
    refund = _amount(col["refund"], label("refund"), errors, required=False) if "refund" in col else None
    placed_at = _time(col["placed_at"], label("placed_at"), errors, zone, required=True)
    paid_at = _time(col["paid_at"], label("paid_at"), errors, zone, required=False)
    shipped_at = _time(col["shipped_at"], label("shipped_at"), errors, zone, required=False)
    completed_at = (
        _time(col["completed_at"], label("completed_at"), errors, zone, required=False)
        if "completed_at" in col
        else _null_column(n, pa.int64())
    )
    refund_fen = pc.fill_null(refund, 0) if refund is not None else pa.array([0] * n, pa.int64())

    if fmt.name == "taobao":
        squashed = pc.replace_substring_regex(
            pc.replace_substring(pc.replace_substring(col["status"], " ", ""), "，", ","), "：", ":"
        )
        status = _lookup(squashed, {squash_status(k): v.value for k, v in TAOBAO_STATUS_TEXT.items()})
        assert paid is not None
        paid_fen = pc.fill_null(paid, 0)
        total_fen = pc.max_element_wise(pc.fill_null(total, 0), paid_fen)
        money_paid = pc.or_(pc.greater(paid_fen, 0), pc.is_valid(paid_at))
        closed = pc.equal(status, OrderStatus.CLOSED.value)
        # 交易关闭 after payment means the buyer got the money back.
        status = pc.if_else(pc.and_(closed, money_paid), OrderStatus.REFUNDED.value, status)
        refund_fen = pc.if_else(
            pc.and_(pc.equal(status, OrderStatus.REFUNDED.value), pc.equal(refund_fen, 0)),
            paid_fen,
            refund_fen,
        )
        buyer_key = pc.coalesce(col["buyer_open_uid"], col["buyer_nick"])
        errors.add(pc.is_null(buyer_key), f"{label('buyer_nick')}: missing buyer")
        channel_col = pa.array([channel] * n)
        currency = pa.array(["CNY"] * n)
    elif fmt.name == "shopify":
        financial = pc.utf8_lower(col["financial_status"])
        fulfilled = pc.equal(pc.utf8_lower(pc.fill_null(col["fulfillment_status"], "")), "fulfilled")
        cancelled = pc.is_valid(_time(col["cancelled_at"], "Cancelled at", errors, zone, required=False))
        status = _lookup(
            financial,
            {
                "pending": "created",
                "authorized": "created",
                "partially_paid": "paid",
                "paid": "paid",
                "partially_refunded": "partially_refunded",
                "refunded": "refunded",
                "voided": "closed",
            },
        )
        status = pc.if_else(pc.and_(pc.equal(status, "created"), cancelled), "closed", status)
        status = pc.if_else(pc.and_(pc.equal(status, "paid"), fulfilled), "completed", status)
        total_fen = pc.fill_null(total, 0)
        unpaid = pc.is_in(status, value_set=pa.array(["created", "closed"]))
        paid_fen = pc.if_else(unpaid, 0, total_fen)
        buyer_key = pc.utf8_lower(col["email"])
        errors.add(pc.and_(pc.is_null(buyer_key), pc.invert(continuation)), "Email: missing buyer")
        channel_col = pa.array([channel] * n)
        currency = pc.fill_null(col["currency"], "CNY")
        errors.add(
            pc.and_(pc.is_null(status), pc.invert(continuation)),
            "Financial Status: unknown value: ",
            pc.fill_null(financial, ""),
        )
    else:
        status = _lookup(pc.utf8_lower(col["status"]), {k: k for k in GENERIC_STATUS_TEXT})
        total_fen = pc.fill_null(total, 0)
        unpaid = pc.is_in(status, value_set=pa.array(["created", "closed"]))
        paid_fen = pc.if_else(unpaid, 0, pc.coalesce(paid, total_fen) if paid is not None else total_fen)
        buyer_key = pc.coalesce(col["buyer_id"], pc.utf8_lower(col["email"]))
        errors.add(
            pc.and_(pc.is_null(buyer_key), pc.is_null(mobile)),
            "buyer_id: missing buyer (give buyer_id, email or mobile)",
        )
        buyer_key = pc.coalesce(buyer_key, mobile)
        channel_col = pc.fill_null(col["channel"], channel)
        currency = pc.fill_null(col["currency"], "CNY")

    if fmt.name != "shopify":
        errors.add(
            pc.and_(pc.is_valid(col["status"]), pc.is_null(status)),
            f"{label('status')}: unknown status: ",
            pc.fill_null(col["status"], ""),
        )
        errors.add(pc.is_null(col["status"]), f"{label('status')}: missing")
    errors.add(
        pc.greater(refund_fen, paid_fen),
        f"{label('refund') if 'refund' in col else 'refund'}: more than was paid",
    )
    refund_fen = pc.min_element_wise(refund_fen, paid_fen)
    # A part refund of a finished order.
    status = pc.if_else(
        pc.and_(
            pc.greater(refund_fen, 0),
            pc.and_(
                pc.less(refund_fen, paid_fen),
                pc.is_in(status, value_set=pa.array(["completed", "shipped", "paid"])),
            ),
        ),
        "partially_refunded",
        status,
    )

    if fmt.name == "shopify":
        # Shopify's export has no completion time: a paid order fulfilled is complete when it was
        # fulfilled, part of it refunded or not (loyalty credits completed orders, the webhooks agree).
        done = pc.and_(fulfilled, pc.is_in(status, value_set=pa.array(["completed", "partially_refunded"])))
        completed_at = pc.if_else(done, shipped_at, completed_at)

    quantity = col.get("quantity")
    quantity_int = (
        pc.cast(
            pc.if_else(pc.fill_null(pc.match_substring_regex(quantity, r"^\d{1,6}$"), False), quantity, "0"),
            pa.int64(),
        )
        if quantity is not None
        else pa.array([0] * n, pa.int64())
    )

    province, city, district, address, zip_code = (
        col.get("province", _null_column(n)),
        col.get("city", _null_column(n)),
        col.get("district", _null_column(n)),
        col.get("address", _null_column(n)),
        col.get("zip", _null_column(n)),
    )
    if fmt.name == "taobao":
        # "浙江省 杭州市 西湖区 文三路100号(310012)": split on the first three spaces, zip at the end.
        whole = pc.fill_null(pc.greater_equal(pc.count_substring(address, " "), 3), False)
        # list_element is evaluated for every row, so short addresses are split as a dummy.
        parts = pc.split_pattern(pc.if_else(whole, address, "- - - -"), " ", max_splits=3)
        province = pc.if_else(whole, pc.list_element(parts, 0), None)
        city = pc.if_else(whole, pc.list_element(parts, 1), None)
        district = pc.if_else(whole, pc.list_element(parts, 2), None)
        detail = pc.if_else(whole, pc.list_element(parts, 3), address)
        tail = pc.utf8_slice_codeunits(detail, -8)
        has_zip = pc.fill_null(pc.match_substring_regex(tail, r"^[(（]\d{6}[)）]$"), False)
        zip_code = pc.if_else(has_zip, pc.utf8_slice_codeunits(tail, 1, 7), None)
        address = pc.if_else(has_zip, pc.utf8_slice_codeunits(detail, 0, -8), detail)

    receiver_phone = pc.coalesce(col.get("mobile", _null_column(n)), col.get("phone", _null_column(n)))
    ok = pc.or_(errors.ok, continuation)
    receiver = _json_object(
        {
            "name": col.get("receiver_name", _null_column(n)),
            "phone": receiver_phone,
            "province": province,
            "city": city,
            "district": district,
            "address": address,
            "zip": zip_code,
        }
    )
    units = pc.max_element_wise(quantity_int, 1)
    unit_fen = pc.divide(total_fen, units)  # integer division of int64 arrays
    price = pc.binary_join_element_wise(
        pc.cast(pc.divide(unit_fen, 100), pa.string()),
        pc.utf8_lpad(
            pc.cast(pc.subtract(unit_fen, pc.multiply(pc.divide(unit_fen, 100), 100)), pa.string()), 2, "0"
        ),
        ".",
    )
    title = col.get("title", _null_column(n))
    items = pc.if_else(
        pc.is_valid(title),
        pc.binary_join_element_wise(
            '[{"sku":"-","title":"',
            _json_escaped(pc.utf8_slice_codeunits(title, 0, 500)),
            '","quantity":',
            pc.cast(units, pa.string()),
            ',"price":"',
            price,
            '"}]',
            "",
        ),
        "[]",
    )
    table = pa.table(
        {
            "line": lines,
            "order_id": col["order_id"],
            "channel": channel_col,
            "buyer_key": buyer_key,
            "buyer_nick": col.get("buyer_nick", _null_column(n)),
            "email": pc.utf8_lower(col["email"]) if "email" in col else _null_column(n),
            "mobile": mobile,
            "status": status,
            "currency": currency,
            "total_fen": total_fen,
            "paid_fen": paid_fen,
            "refunded_fen": refund_fen,
            "quantity": quantity_int,
            "items": items,
            "coupon": col.get("coupon", _null_column(n)),
            "placed_at": placed_at,
            "paid_at": paid_at,
            "shipped_at": shipped_at,
            "completed_at": completed_at,
            "receiver": receiver,
            "continuation": continuation,
        },
        schema=pa.schema([(name, kind) for name, kind, _ in STAGING_COLUMNS]),
    )
    if pc.all(ok).as_py():
        return Cleaned(table, [], [], [])
    good = table.filter(ok)
    bad_mask = pc.invert(ok)
    bad_lines = pc.filter(lines, bad_mask).to_pylist()
    bad_messages = pc.filter(errors.message, bad_mask).to_pylist()
    bad_raw: list[str] = []
    if bad_lines:
        # What the owner needs to find the row in their spreadsheet: its id and amount as written.
        raw_parts = [
            pc.fill_null(pc.filter(col[c], bad_mask), "") for c in ("order_id", "paid", "total", "status")
        ]
        bad_raw = pc.binary_join_element_wise(*raw_parts, " | ").to_pylist()
    return Cleaned(good, bad_lines, bad_messages, bad_raw)
