"""History imports through the gateway: real-shaped Taobao exports, both encodings, CSV and XLSX."""

from __future__ import annotations

import csv
import io
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import asyncpg
import httpx
import xlsxwriter
from sqlalchemy import text

from laoke.contracts.imports import IMPORT_FEED_COLUMNS
from laoke.kit import failpoints
from laoke.kit.bulk import copy_feed_into
from laoke.kit.db import Database
from laoke.kit.internal_auth import sign
from laoke.kit.settings import normalise_database_url
from laoke.testing.infra import eventually
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet, extra_gateway
from laoke.testing.taobao_export import HEADER_CLASSIC, RENAMED_IN_NEW, write
from services.loyalty import history


def taobao_row(**fields: str) -> str:
    base = {
        "订单编号": '="3400000000000000001"',
        "买家会员名": "tb_xiaoli",
        "总金额": "256.00",
        "买家实际支付金额": "256.00",
        "订单状态": "交易成功",
        "收货人姓名": "李雷",
        "收货地址 ": "浙江省 杭州市 西湖区 文三路100号(310012)",
        "联系手机": "'13800138000",
        "订单创建时间": "2025-03-01 09:30:00",
        "订单付款时间 ": "2025-03-01 09:31:00",
        "宝贝标题 ": "明前龙井 250g",
        "宝贝总数量": "2",
        "退款金额": "0.00",
        "确认收货时间": "2025-03-06 10:00:00",
    }
    base.update(fields)
    return ",".join(base.get(h, "") for h in HEADER_CLASSIC)


QUIRKY_ROWS = [
    taobao_row(),  # line 2
    taobao_row(
        **{
            "订单编号": '="3400000000000000002"',
            "买家实际支付金额": '"1,299.50元"',
            "总金额": "1299.50",
            "订单状态": "卖家已发货，等待买家确认",
            "确认收货时间": "",
        }
    ),
    "this line is garbage, not an order",  # line 4: wrong number of columns
    taobao_row(**{"订单编号": '="3400000000000000003"', "买家实际支付金额": "abc"}),  # line 5
    taobao_row(**{"订单编号": '="3400000000000000004"', "订单状态": "去火星了"}),  # line 6
    taobao_row(**{"订单编号": '="3400000000000000005"', "买家会员名": ""}),  # line 7
    taobao_row(**{"订单编号": '="3400000000000000006"', "买家实际支付金额": "-5.00"}),  # line 8
    taobao_row(
        **{
            "订单编号": '="3400000000000000007"',
            "买家会员名": "tb_wang",
            "订单状态": "交易关闭",
            "退款金额": "88.00",
            "买家实际支付金额": "88.00",
            "总金额": "88.00",
            "联系手机": "'13900139000",
        }
    ),
    taobao_row(
        **{
            "订单编号": '="3400000000000000008"',
            "买家会员名": "tb_zhang",
            "订单状态": "等待买家付款",
            "买家实际支付金额": "0.00",
            "订单付款时间 ": "",
            "确认收货时间": "",
            "联系手机": "138****0000",
        }
    ),
]


def quirky_file(encoding: str) -> bytes:
    text = "\r\n".join([",".join(HEADER_CLASSIC), *QUIRKY_ROWS]) + "\r\n"
    return text.encode(encoding)


async def upload(shop: ShopClient, name: str, content: bytes, **form: str) -> Any:
    return await shop.client.post(
        "/api/v1/imports", files={"file": (name, content)}, data=form, headers=shop.headers(), timeout=60
    )


async def finished(shop: ShopClient, import_id: str) -> dict[str, Any]:
    async def done() -> dict[str, Any]:
        response = await shop.client.get(f"/api/v1/imports/{import_id}", headers=shop.headers())
        assert response.status_code == 200, response.text
        body = response.json()
        assert body["status"] in ("completed", "failed"), body["status"]
        return body

    return await eventually(done, within=60, interval=0.2)


async def orders(shop: ShopClient, **params: str) -> list[dict[str, Any]]:
    response = await shop.client.get(
        "/api/v1/orders", params={"limit": "200", **params}, headers=shop.headers()
    )
    assert response.status_code == 200, response.text
    return response.json()["items"]


async def test_a_quirky_gbk_taobao_export_lands_its_good_rows_and_reports_the_bad(shop: ShopClient) -> None:
    accepted = await upload(shop, "ExportOrderList202503.csv", quirky_file("gbk"))
    assert accepted.status_code == 202, accepted.text
    report = await finished(shop, accepted.json()["import_id"])
    assert report["status"] == "completed" and report["format"] == "taobao" and report["encoding"] == "gbk"
    assert (report["rows_total"], report["rows_imported"], report["rows_failed"]) == (9, 4, 5)
    errors = {e["line"]: e["error"] for e in report["first_errors"]}
    assert errors == {
        4: errors[4],
        5: "买家实际支付金额: not an amount: abc",
        6: "订单状态: unknown status: 去火星了",
        7: "买家会员名: missing buyer",
        8: "买家实际支付金额: negative amount",
    }
    assert "number of columns" in errors[4]

    landed = {o["order_id"]: o for o in await orders(shop)}
    assert set(landed) == {
        "3400000000000000001",
        "3400000000000000002",
        "3400000000000000007",
        "3400000000000000008",
    }
    first = landed["3400000000000000001"]
    assert first["status"] == "completed" and first["paid_amount"] == "256.00" and first["item_count"] == 2
    # Shop-local time of the export, kept as the order's own time (not the import's).
    assert first["placed_at"].startswith("2025-03-01T01:30:00")
    assert first["completed_at"].startswith("2025-03-06T02:00:00")
    assert first["receiver"] == {
        "name": "李雷",
        "phone": "13800138000",
        "province": "浙江省",
        "city": "杭州市",
        "district": "西湖区",
        "address": "文三路100号",
        "zip": "310012",
    }
    assert landed["3400000000000000002"]["paid_amount"] == "1299.50"
    assert landed["3400000000000000002"]["status"] == "shipped"
    assert landed["3400000000000000007"]["status"] == "refunded"
    assert landed["3400000000000000007"]["refunded_amount"] == "88.00"
    assert landed["3400000000000000008"]["status"] == "created"

    csv_errors = await shop.client.get(f"/api/v1/imports/{report['id']}/errors.csv", headers=shop.headers())
    assert csv_errors.status_code == 200 and csv_errors.headers["content-type"].startswith("text/csv")
    text = csv_errors.content.decode("utf-8-sig")
    assert text.splitlines()[0] == "line,error,raw" and "去火星了" in text and len(text.splitlines()) == 6


async def test_a_row_dated_in_the_future_is_reported_not_landed(shop: ShopClient) -> None:
    rows = [
        taobao_row(),
        taobao_row(**{"订单编号": '="3400000000000000009"', "订单创建时间": "2062-03-01 09:30:00"}),
        taobao_row(**{"订单编号": '="3400000000000000010"', "确认收货时间": "2062-03-06 10:00:00"}),
    ]
    content = ("\r\n".join([",".join(HEADER_CLASSIC), *rows]) + "\r\n").encode("gbk")
    report = await finished(shop, (await upload(shop, "future.csv", content)).json()["import_id"])
    assert (report["rows_total"], report["rows_imported"], report["rows_failed"]) == (3, 1, 2)
    assert {e["line"]: e["error"] for e in report["first_errors"]} == {
        3: "订单创建时间: more than a day in the future: 2062-03-01 09:30:00",
        4: "确认收货时间: more than a day in the future: 2062-03-06 10:00:00",
    }
    assert [o["order_id"] for o in await orders(shop)] == ["3400000000000000001"]


async def test_buyers_resolve_like_live_orders(shop: ShopClient) -> None:
    live = await shop.client.post(
        "/api/v1/orders",
        json={
            "channel": "shopify",
            "order_id": "SH-1",
            "status": "paid",
            "buyer": {"external_id": "7001", "mobile": "13800138000"},
            "total_amount": "10.00",
            "placed_at": "2026-01-01T10:00:00+08:00",
        },
        headers=shop.headers(),
    )
    known = live.json()["order"]["customer_id"]
    report = await finished(shop, (await upload(shop, "a.csv", quirky_file("gbk"))).json()["import_id"])
    assert report["customers_created"] == 2  # tb_wang and tb_zhang; tb_xiaoli is the Shopify buyer's mobile
    lookup = await shop.client.get(
        "/api/v1/customers/lookup",
        params={"channel": "taobao", "external_id": "tb_xiaoli"},
        headers=shop.headers(),
    )
    assert lookup.json()["customer_id"] == known


async def test_reimporting_the_same_file_changes_nothing(shop: ShopClient) -> None:
    content = quirky_file("gb18030")
    first = await finished(shop, (await upload(shop, "a.csv", content)).json()["import_id"])
    before = await orders(shop)
    second = await finished(shop, (await upload(shop, "a.csv", content)).json()["import_id"])
    assert first["rows_imported"] == 4
    assert (second["rows_imported"], second["rows_skipped"], second["rows_failed"]) == (0, 4, 5)
    assert await orders(shop) == before


def ingest_dsn(stack: ServerSet) -> str:
    return normalise_database_url(stack["ingest"].settings.database_url).replace("+asyncpg", "")


async def test_an_order_listed_twice_in_a_first_import_lands_once_in_its_newest_state(
    shop: ShopClient,
) -> None:
    """A first import inserts its rows as filed, the unique key standing in for the dedupe; a file
    that lists an order twice breaks it, and the orders land deduplicated, newest state first or last."""
    unpaid = {"订单状态": "等待买家付款", "买家实际支付金额": "0.00", "订单付款时间 ": "", "确认收货时间": ""}
    rows = [
        taobao_row(**{"订单编号": '="3400000000000000011"', **unpaid}),
        taobao_row(**{"订单编号": '="3400000000000000012"'}),
        taobao_row(**{"订单编号": '="3400000000000000011"'}),  # paid and completed since
        taobao_row(**{"订单编号": '="3400000000000000013"'}),
        taobao_row(**{"订单编号": '="3400000000000000013"', **unpaid}),  # the older state, listed last
    ]
    content = ("\r\n".join([",".join(HEADER_CLASSIC), *rows]) + "\r\n").encode("gbk")
    report = await finished(shop, (await upload(shop, "twice.csv", content)).json()["import_id"])
    assert report["status"] == "completed", report["error"]
    assert (report["rows_total"], report["rows_imported"], report["rows_skipped"]) == (5, 3, 2)
    landed = {o["order_id"]: o for o in await orders(shop)}
    assert {k: o["status"] for k, o in landed.items()} == {
        "3400000000000000011": "completed",
        "3400000000000000012": "completed",
        "3400000000000000013": "completed",
    }
    assert landed["3400000000000000011"]["paid_amount"] == "256.00"


async def import_racing_a_live_order(
    shop: ShopClient, stack: ServerSet, live_rows: Sequence[str], blocked_insert: str
) -> str:
    """Uploads the quirky file while a live order's transaction holds `live_rows` (statements taking
    the shop id) uncommitted, commits it once the import's `blocked_insert` waits on it; the import id."""
    live, probe = await asyncpg.connect(ingest_dsn(stack)), await asyncpg.connect(ingest_dsn(stack))
    try:
        webhook = live.transaction()
        await webhook.start()
        for statement in live_rows:
            await live.execute(statement, shop.shop_id)
        import_id: str = (await upload(shop, "a.csv", quirky_file("gbk"))).json()["import_id"]

        async def blocked_on_the_live_order() -> None:
            waiting = await probe.fetchval(
                "SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock' AND query LIKE $1",
                f"%{blocked_insert}%",
            )
            assert waiting == 1

        await eventually(blocked_on_the_live_order, within=30)
        await webhook.commit()
    finally:
        await live.close()
        await probe.close()
    return import_id


async def test_an_order_that_arrives_live_during_a_first_import_lands_once(
    shop: ShopClient, stack: ServerSet
) -> None:
    """A shop's first import inserts its orders without `ON CONFLICT`; an order of the file that a
    webhook stores meanwhile breaks that insert, which is undone and done again as the usual upsert."""
    live_order = """INSERT INTO ingest.orders (id, shop_id, channel, external_order_id, customer_id, status,
            currency, total_fen, paid_fen, refunded_fen, item_count, items, placed_at, source_modified_at)
        VALUES ('ord_live', $1, 'taobao', '3400000000000000001', 'cus_live', 'paid', 'CNY',
            25600, 25600, 0, 2, '[]', '2025-03-01 01:30:00+00', '2025-03-01 01:31:00+00')"""
    import_id = await import_racing_a_live_order(shop, stack, [live_order], "INSERT INTO ingest.orders AS o")

    result = await finished(shop, import_id)
    assert result["status"] == "completed", result["error"]
    assert (result["rows_imported"], result["rows_skipped"]) == (4, 0)
    landed = {o["order_id"]: o for o in await orders(shop)}
    assert len(landed) == 4
    # The file's state is newer than the live one (it was completed later), so it wins.
    first = landed["3400000000000000001"]
    assert (first["id"], first["status"], first["import_id"]) == ("ord_live", "completed", import_id)


async def test_a_buyer_who_arrives_live_during_a_first_import_keeps_one_customer(
    shop: ShopClient, stack: ServerSet
) -> None:
    """A shop's first import inserts its buyers' identities without `ON CONFLICT`; a buyer of the file
    whose identity a live order stores meanwhile breaks that insert, which is done again the usual way,
    and the buyer's imported orders go to the customer the live order made."""
    live_buyer = [
        "INSERT INTO ingest.customers (shop_id, id) VALUES ($1, 'cus_live_wang')",
        """INSERT INTO ingest.customer_identities (shop_id, channel, external_id, customer_id)
           VALUES ($1, 'taobao', 'tb_wang', 'cus_live_wang')""",
    ]
    import_id = await import_racing_a_live_order(
        shop, stack, live_buyer, "INSERT INTO ingest.customer_identities"
    )

    result = await finished(shop, import_id)
    assert result["status"] == "completed", result["error"]
    assert (result["rows_imported"], result["rows_skipped"]) == (4, 0)
    landed = {o["order_id"]: o for o in await orders(shop)}
    assert landed["3400000000000000007"]["customer_id"] == "cus_live_wang"
    connection = await asyncpg.connect(ingest_dsn(stack))
    try:
        identities = await connection.fetch(
            "SELECT channel, external_id, customer_id FROM ingest.customer_identities WHERE shop_id = $1",
            shop.shop_id,
        )
    finally:
        await connection.close()
    buyers = [(i["channel"], i["external_id"]) for i in identities]
    assert len(buyers) == len(set(buyers))
    assert ("taobao", "tb_wang", "cus_live_wang") in [tuple(i) for i in identities]
    # Every other buyer of the file got an identity, the same as without the race.
    assert {"tb_xiaoli", "tb_zhang"} <= {external for _, external in buyers}


async def test_utf8_with_bom_and_the_newer_headers(shop: ShopClient, tmp_path: Path) -> None:
    path = write(tmp_path / "new.csv", 50, encoding="utf-8-sig", new_headers=True)
    assert path.read_bytes().startswith(b"\xef\xbb\xbf")
    assert "主订单编号" in path.read_text(encoding="utf-8-sig").splitlines()[0]
    report = await finished(shop, (await upload(shop, "new.csv", path.read_bytes())).json()["import_id"])
    assert report["status"] == "completed" and report["encoding"] == "utf-8-sig"
    assert (report["rows_total"], report["rows_imported"], report["rows_failed"]) == (50, 50, 0)


async def test_an_xlsx_export(shop: ShopClient) -> None:
    buffer = io.BytesIO()
    book = xlsxwriter.Workbook(buffer, {"in_memory": True})
    sheet = book.add_worksheet("订单报表")
    date_format = book.add_format({"num_format": "yyyy-mm-dd hh:mm:ss"})
    header = [RENAMED_IN_NEW.get(h, h) for h in HEADER_CLASSIC]
    placed_column = header.index("订单创建时间")
    sheet.write_row(0, 0, header)
    for line, row in enumerate(csv.reader(QUIRKY_ROWS[:2]), start=1):
        # Spreadsheets hold order ids as text and times as real date cells.
        sheet.write_row(line, 0, [c.strip('="') if c.startswith('="') else c for c in row])
        sheet.write_datetime(line, placed_column, datetime(2025, 3, 1, 9, 30), date_format)
    book.close()
    report = await finished(shop, (await upload(shop, "orders.xlsx", buffer.getvalue())).json()["import_id"])
    assert report["status"] == "completed" and report["encoding"] == "xlsx", report
    assert report["rows_imported"] == 2
    assert {o["placed_at"] for o in await orders(shop)} == {"2025-03-01T01:30:00Z"}


async def test_dry_run_counts_exactly_and_stores_nothing(shop: ShopClient) -> None:
    report = await finished(
        shop, (await upload(shop, "a.csv", quirky_file("gbk"), dry_run="true")).json()["import_id"]
    )
    assert report["status"] == "completed" and report["dry_run"] is True
    assert (report["rows_imported"], report["rows_failed"]) == (4, 5)
    assert len(report["first_errors"]) == 5
    assert await orders(shop) == []


async def test_files_that_cannot_be_imported_are_refused_with_the_reason(shop: ShopClient) -> None:
    cases = [
        (b"", "the file is empty"),
        (b"PK\x03\x04 this is not really a zip", "not a readable .xlsx spreadsheet"),
        ("订单编号,订单状态\n1,交易成功\n".encode("gbk"), "missing required column: 买家会员名"),
        ("名字,年龄\n小李,3\n".encode(), "cannot tell the file's format"),
        (b"\xff\xfe" + "订单编号".encode("utf-16-le"), "UTF-16"),
        (b"\x81\x30\xff\xff\xfe\xfe" * 100, "neither UTF-8 nor GBK"),
    ]
    for content, expected in cases:
        response = await upload(shop, "f.csv", content)
        assert response.status_code == 422, (expected, response.text)
        assert expected in response.json()["detail"], response.json()
    assert (await shop.client.get("/api/v1/imports", headers=shop.headers())).json()["items"] == []


async def test_a_file_over_the_limit_is_413(shop: ShopClient, stack: ServerSet) -> None:
    async with extra_gateway(stack, import_max_body_bytes=10_000) as small:
        response = await shop.client.post(
            f"{small.url}/api/v1/imports",
            files={"file": ("big.csv", quirky_file("gbk") * 20)},
            headers=shop.headers(),
        )
    assert response.status_code == 413


async def test_imports_belong_to_their_shop(shop: ShopClient, other_shop: ShopClient) -> None:
    import_id = (await upload(shop, "a.csv", quirky_file("gbk"))).json()["import_id"]
    await finished(shop, import_id)
    for path in (f"/api/v1/imports/{import_id}", f"/api/v1/imports/{import_id}/errors.csv"):
        assert (await other_shop.client.get(path, headers=other_shop.headers())).status_code == 404


async def test_downstream_services_answer_import_completed_set_based(shop: ShopClient) -> None:
    """One import.completed event; loyalty and segmentation pull the import's orders from ingest."""
    report = await finished(
        shop, (await upload(shop, "a.csv", quirky_file("gbk"), award_points="true")).json()["import_id"]
    )
    assert report["rows_imported"] == 4
    lookup = await shop.client.get(
        "/api/v1/customers/lookup",
        params={"channel": "taobao", "external_id": "tb_xiaoli"},
        headers=shop.headers(),
    )
    xiaoli = lookup.json()["customer_id"]

    async def profile_and_points() -> None:
        profile = await shop.client.get(f"/api/v1/customers/{xiaoli}", headers=shop.headers())
        assert profile.status_code == 200, profile.text
        body = profile.json()
        # 256.00 completed + 1299.50 shipped (tb_xiaoli's two paid orders), placed in March 2025.
        assert body["orders_count"] == 2 and body["total_spent"] == "1555.50", body
        assert body["first_order_at"].startswith("2025-03-01")
        # Who the buyer is, from the export's columns (the address split into province and city).
        assert (body["nick"], body["name"], body["mobile"]) == ("tb_xiaoli", "李雷", "13800138000")
        assert (body["province"], body["city"], body["channels"]) == ("浙江省", "杭州市", ["taobao"])
        member = await shop.client.get(f"/api/v1/loyalty/members/{xiaoli}", headers=shop.headers())
        assert member.status_code == 200, member.text
        assert member.json()["points_available"] == 256  # only the completed order earns

    await eventually(profile_and_points, within=30, interval=0.2)


async def read_feed(
    db: Database, stack: ServerSet, shop: ShopClient, path: str, columns: Sequence[tuple[str, str]]
) -> tuple[int, list[Any]]:
    """(rows copied, the rows in id order) of the feed at `path`, read as a consumer reads it."""
    async with db.transaction() as session:
        copied = await copy_feed_into(
            session,
            db.settings,
            base_url=stack["ingest"].url,
            path=path,
            shop_id=shop.shop_id,
            table="fed",
            columns=columns,
        )
        # Named, not `*`: a statement prepared for another shape of `fed` would be refused.
        names = ", ".join(name for name, _ in columns)
        return copied, list((await session.execute(text(f"SELECT {names} FROM fed ORDER BY id"))).all())  # noqa: S608


async def test_the_import_feed_reads_the_same_in_binary_as_in_csv(shop: ShopClient, stack: ServerSet) -> None:
    """`import.completed` names the binary feed; the CSV one carries the same orders. Binary COPY has no
    types of its own, so a column whose type differed from IMPORT_FEED_COLUMNS would fail here."""
    import_id = (await upload(shop, "a.csv", quirky_file("gbk"))).json()["import_id"]
    assert (await finished(shop, import_id))["rows_imported"] == 4
    reader = stack["segmentation"].settings
    db = Database(reader)
    fed: dict[str, tuple[int, list[Any]]] = {}
    try:
        async with db.transaction() as session:
            named = await session.scalar(
                text(
                    "SELECT envelope->'payload'->>'orders_path' FROM ingest.outbox "
                    "WHERE event_type = 'import.completed' AND envelope->'payload'->>'import_id' = :id"
                ),
                {"id": import_id},
            )
        assert named == f"/internal/v1/imports/{import_id}/orders.bin"
        for path in (named, named.replace(".bin", ".csv")):
            fed[path[-3:]] = await read_feed(db, stack, shop, path, IMPORT_FEED_COLUMNS)
    finally:
        await db.dispose()
    assert fed["bin"][0] == 4
    assert fed["bin"] == fed["csv"]
    xiaoli = [row for row in fed["bin"][1] if row.buyer_nick == "tb_xiaoli"]
    assert {(row.mobile, row.province, row.city) for row in xiaoli} == {("13800138000", "浙江省", "杭州市")}
    assert all(row.placed_at.tzinfo is not None for row in fed["bin"][1])


async def test_a_reader_gets_the_feed_columns_it_asks_for_in_its_order(
    shop: ShopClient, stack: ServerSet
) -> None:
    """Loyalty reads the orders without the buyer's contact columns; what it gets is exactly those
    columns of the full feed. A column the feed does not have, or one named twice, is refused."""
    import_id = (await upload(shop, "a.csv", quirky_file("gbk"))).json()["import_id"]
    assert (await finished(shop, import_id))["rows_imported"] == 4
    path = f"/internal/v1/imports/{import_id}/orders.bin"
    reader = stack["loyalty"].settings
    narrow = tuple(reversed(history.FEED_COLUMNS))  # any order the reader likes
    db = Database(reader)
    wanted = [column for column, _ in narrow]
    try:
        _, everything = await read_feed(db, stack, shop, path, IMPORT_FEED_COLUMNS)
        copied, narrowed = await read_feed(db, stack, shop, path, narrow)
    finally:
        await db.dispose()
    assert copied == 4
    assert [tuple(row) for row in narrowed] == [tuple(getattr(row, c) for c in wanted) for row in everything]

    async with httpx.AsyncClient(base_url=stack["ingest"].url) as client:
        for columns in ("id,nickname", "id,id", ""):
            headers = sign(reader.internal_secret, method="GET", path=path, shop_id=shop.shop_id)
            response = await client.get(path, params={"columns": columns}, headers=headers)
            if columns:
                assert response.status_code == 422, response.text
                assert response.json()["error"] == "validation_error", response.text
            else:  # empty: every column, as when not given
                assert response.status_code == 200, response.text


async def test_points_are_not_awarded_for_history_unless_asked(shop: ShopClient, stack: ServerSet) -> None:
    report = await finished(shop, (await upload(shop, "a.csv", quirky_file("gbk"))).json()["import_id"])
    lookup = await shop.client.get(
        "/api/v1/customers/lookup",
        params={"channel": "taobao", "external_id": "tb_xiaoli"},
        headers=shop.headers(),
    )
    xiaoli = lookup.json()["customer_id"]

    async def profiled() -> None:
        profile = await shop.client.get(f"/api/v1/customers/{xiaoli}", headers=shop.headers())
        assert profile.status_code == 200 and profile.json()["orders_count"] == 2

    await eventually(profiled, within=30, interval=0.2)
    member = await shop.client.get(f"/api/v1/loyalty/members/{xiaoli}", headers=shop.headers())
    assert member.status_code == 404 or member.json()["points_available"] == 0, member.text
    assert report["rows_imported"] == 4


async def test_an_import_that_fails_says_so_and_nothing_of_it_lands(shop: ShopClient) -> None:
    failpoints.arm("import.before_commit", "error")  # e.g. the database connection drops at the end
    try:
        report = await finished(shop, (await upload(shop, "a.csv", quirky_file("gbk"))).json()["import_id"])
    finally:
        failpoints.disarm("import.before_commit")
    assert report["status"] == "failed" and report["rows_imported"] == 0
    assert "nothing was imported" in report["error"]
    assert await orders(shop) == []
    # The same file imports fine afterwards.
    again = await finished(shop, (await upload(shop, "a.csv", quirky_file("gbk"))).json()["import_id"])
    assert again["status"] == "completed" and again["rows_imported"] == 4


SHOPIFY_HEADER = (
    "Name,Email,Financial Status,Paid at,Fulfillment Status,Fulfilled at,Accepts Marketing,Currency,Subtotal,"
    "Shipping,Taxes,Total,Discount Code,Discount Amount,Shipping Method,Created at,Lineitem quantity,"
    "Lineitem name,Lineitem price,Lineitem sku,Billing Name,Shipping Name,Shipping Address1,Shipping City,"
    "Shipping Zip,Shipping Province,Shipping Country,Shipping Phone,Cancelled at,Refunded Amount,Id,Phone"
)
SHOPIFY_ROWS = [
    "#1001,anna@example.com,paid,2026-01-15 10:25:00 +0800,fulfilled,2026-01-16 09:00:00 +0800,no,CNY,"
    "300.00,0.00,0.00,300.00,NEW10,10.00,顺丰,2026-01-15 10:23:45 +0800,2,龙井 100g,100.00,LJ-100,Anna,Anna,"
    "文三路 1 号,杭州,310000,ZJ,CN,+86 138 0013 8000,,0.00,5001001,+8613800138000",
    "#1001,anna@example.com,,,,,,,,,,,,,,2026-01-15 10:23:45 +0800,1,茶杯,100.00,CUP-1,,,,,,,,,,,,",
    "#1002,bob@example.com,refunded,2026-02-01 12:00:00 +0800,unfulfilled,,no,CNY,50.00,0.00,0.00,50.00,,,,"
    "2026-02-01 11:59:00 +0800,1,白茶,50.00,BC-1,Bob,Bob,某路 2 号,上海,200000,SH,CN,,,50.00,5001002,",
    "#1003,carl@example.com,pending,,unfulfilled,,no,CNY,20.00,0.00,0.00,20.00,,,,2026-03-01 08:00:00 +0800,"
    "1,红茶,20.00,HC-1,Carl,Carl,,,,,,,2026-03-02 08:00:00 +0800,0.00,5001003,",
    "#1004,dora@example.com,partially_refunded,2026-04-01 12:00:00 +0800,fulfilled,"
    "2026-04-02 09:00:00 +0800,no,CNY,80.00,0.00,0.00,80.00,,,,2026-04-01 11:59:00 +0800,1,普洱,80.00,PE-1,"
    "Dora,Dora,某路 3 号,广州,510000,GD,CN,,,30.00,5001004,",
]


async def test_a_shopify_orders_export(shop: ShopClient) -> None:
    content = ("\n".join([SHOPIFY_HEADER, *SHOPIFY_ROWS]) + "\n").encode()
    report = await finished(shop, (await upload(shop, "orders_export.csv", content)).json()["import_id"])
    assert report["status"] == "completed" and report["format"] == "shopify", report
    assert (report["rows_imported"], report["rows_failed"]) == (4, 0), report
    landed = {o["order_id"]: o for o in await orders(shop)}
    assert landed["5001001"]["status"] == "completed" and landed["5001001"]["item_count"] == 3
    # Completed when fulfilled (the export has no completion time), part of it refunded or not.
    assert landed["5001001"]["completed_at"].startswith("2026-01-16T01:00:00")
    dora = landed["5001004"]
    assert (dora["status"], dora["refunded_amount"]) == ("partially_refunded", "30.00")
    assert dora["completed_at"].startswith("2026-04-02T01:00:00"), dora
    assert landed["5001002"]["completed_at"] is None
    assert landed["5001001"]["placed_at"].startswith("2026-01-15T02:23:45")
    assert landed["5001001"]["coupon_codes"] == ["NEW10"]
    assert landed["5001002"]["status"] == "refunded" and landed["5001002"]["refunded_amount"] == "50.00"
    assert landed["5001003"]["status"] == "closed" and landed["5001003"]["paid_amount"] == "0.00"
    # The buyer of a Shopify row is known by e-mail; the phone links other channels.
    lookup = await shop.client.get(
        "/api/v1/customers/lookup", params={"channel": "shopify", "external_id": "anna@example.com"},
        headers=shop.headers(),
    )  # fmt: skip
    assert lookup.json()["customer_id"] == landed["5001001"]["customer_id"]


async def test_bad_import_form_fields_are_422(shop: ShopClient) -> None:
    response = await upload(shop, "a.csv", quirky_file("gbk"), format="amazon")
    assert response.status_code == 422 and response.json()["error"] == "validation_error"
    assert "format" in response.json()["detail"]
    missing = await shop.client.post("/api/v1/imports", data={"format": "taobao"}, headers=shop.headers())
    assert missing.status_code == 422 and "file" in missing.json()["detail"]
