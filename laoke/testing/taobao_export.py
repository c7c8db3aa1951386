"""Writes a Taobao seller-backend order export ("已卖出的宝贝" → 订单报表) of any size.

The layout is the real one: the full header row (with the export's stray spaces after some names and a
trailing empty column), order ids as `="..."` so Excel keeps all digits, a leading `'` on phone numbers,
Chinese status text, addresses as "省 市 区 详细(邮编)". Used by the import tests and benchmarks.
"""

from __future__ import annotations

import argparse
import random
from collections.abc import Iterator
from datetime import datetime, timedelta
from pathlib import Path

HEADER_CLASSIC = [
    "订单编号", "买家会员名", "买家支付宝账号", "买家应付货款", "买家应付邮费", "买家支付积分", "总金额",
    "返点积分", "买家实际支付金额", "买家实际支付积分", "订单状态", "买家留言", "收货人姓名", "收货地址 ",
    "运送方式", "联系电话 ", "联系手机", "订单创建时间", "订单付款时间 ", "宝贝标题 ", "宝贝种类 ",
    "物流单号 ", "物流公司", "订单备注", "宝贝总数量", "店铺Id", "店铺名称", "订单关闭原因", "卖家服务费",
    "买家服务费", "发票抬头", "是否手机订单", "分阶段订单信息", "特权订金订单id", "是否上传合同照片",
    "是否上传小票", "是否代付", "定金排名", "修改后的sku", "修改后的收货地址", "异常信息", "天猫卡券抵扣",
    "集分宝抵扣", "是否是O2O交易", "退款金额", "预约门店", "确认收货时间", "打款商家金额",
    "含应开票给个人的个人红包", "",
]  # fmt: skip

# The newer report renames a few columns; the importer accepts both.
RENAMED_IN_NEW = {
    "订单编号": "主订单编号",
    "买家会员名": "买家昵称",
    "买家实际支付金额": "买家实付金额",
    "订单付款时间 ": "付款时间",
    "宝贝标题 ": "商品标题",
    "宝贝总数量": "商品数量",
}

STATUSES = [
    ("交易成功", 70),
    ("交易关闭", 8),
    ("等待买家付款", 4),
    ("买家已付款，等待卖家发货", 8),
    ("卖家已发货，等待买家确认", 10),
]
PLACES = [
    ("浙江省", "杭州市", "西湖区"),
    ("上海", "上海市", "浦东新区"),
    ("广东省", "深圳市", "南山区"),
    ("北京", "北京市", "朝阳区"),
    ("四川省", "成都市", "武侯区"),
]
TITLES = ["明前龙井 250g 礼盒装", "安吉白茶 100g", "正山小种 罐装", "茶具清洁布", "紫砂壶 小号"]


def rows(count: int, buyers: int, seed: int = 7, start: datetime | None = None) -> Iterator[list[str]]:
    rnd = random.Random(seed)
    start = start or datetime(2024, 1, 1, 8, 0, 0)
    population = [s for s, w in STATUSES for _ in range(w)]
    for n in range(count):
        buyer = rnd.randrange(buyers)
        status = population[rnd.randrange(len(population))]
        created = start + timedelta(seconds=n * 60 + rnd.randrange(60))
        paid = created + timedelta(seconds=rnd.randrange(30, 600))
        unpaid = status == "等待买家付款" or (status == "交易关闭" and n % 2 == 0)
        price = rnd.randrange(990, 99900) / 100
        qty = rnd.randrange(1, 4)
        total = price * qty
        refund = f"{total:.2f}" if status == "交易关闭" and not unpaid else "0.00"
        province, city, district = PLACES[buyer % len(PLACES)]
        mobile = f"1{3 + buyer % 7}{buyer:09d}"[-11:]
        row = {
            "订单编号": f'="{3_400_000_000_000_000_000 + n}"',
            "买家会员名": f"tb_buyer_{buyer}",
            "买家支付宝账号": "",
            "买家应付货款": f"{total:.2f}",
            "买家应付邮费": "0.00",
            "买家支付积分": "0",
            "总金额": f"{total:.2f}",
            "返点积分": "0",
            "买家实际支付金额": "0.00" if unpaid else f"{total:.2f}",
            "买家实际支付积分": "0",
            "订单状态": status,
            "买家留言": "",
            "收货人姓名": f"顾客{buyer}",
            "收货地址 ": f"{province} {city} {district} 文三路{buyer % 500}号({310000 + buyer % 1000:06d})",
            "运送方式": "快递",
            "联系电话 ": "",
            "联系手机": f"'{mobile}",
            "订单创建时间": created.strftime("%Y-%m-%d %H:%M:%S"),
            "订单付款时间 ": "" if unpaid else paid.strftime("%Y-%m-%d %H:%M:%S"),
            "宝贝标题 ": TITLES[n % len(TITLES)],
            "宝贝种类 ": "1",
            "物流单号 ": "",
            "物流公司": "",
            "订单备注": "",
            "宝贝总数量": str(qty),
            "店铺Id": "12345678",
            "店铺名称": "老客茶叶旗舰店",
            "退款金额": refund,
            "确认收货时间": (paid + timedelta(days=5)).strftime("%Y-%m-%d %H:%M:%S")
            if status == "交易成功"
            else "",
        }
        yield [row.get(name, "") for name in HEADER_CLASSIC]


def write(
    path: Path,
    count: int,
    *,
    buyers: int | None = None,
    encoding: str = "gbk",
    new_headers: bool = False,
    seed: int = 7,
) -> Path:
    header = [RENAMED_IN_NEW.get(h, h) for h in HEADER_CLASSIC] if new_headers else HEADER_CLASSIC
    # Written by hand, not with csv.writer: the export puts `="..."` unquoted, which csv would escape.
    with path.open("w", encoding=encoding, newline="") as f:
        f.write(",".join(header) + "\r\n")
        f.writelines(",".join(row) + "\r\n" for row in rows(count, buyers or max(1, count // 3), seed))
    return path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("path", type=Path)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--buyers", type=int)
    parser.add_argument("--encoding", default="gbk", help="gbk, gb18030, utf-8 or utf-8-sig")
    parser.add_argument("--new-headers", action="store_true")
    args = parser.parse_args()
    write(args.path, args.rows, buyers=args.buyers, encoding=args.encoding, new_headers=args.new_headers)


if __name__ == "__main__":
    main()
