"""Province and city parsed from addresses written as one string."""

from __future__ import annotations

import pytest

from services.ingest.addresses import split_region


@pytest.mark.parametrize(
    ("address", "region"),
    [
        ("浙江省杭州市西湖区文三路100号", ("浙江省", "杭州市")),
        ("浙江省 杭州市 西湖区 文三路100号", ("浙江省", "杭州市")),
        ("上海市浦东新区世纪大道1号", ("上海市", "上海市")),
        ("北京 朝阳区 建国路", ("北京市", "北京市")),
        ("广西壮族自治区南宁市青秀区", ("广西壮族自治区", "南宁市")),
        ("新疆维吾尔自治区伊犁哈萨克自治州伊宁市", ("新疆维吾尔自治区", "伊犁哈萨克自治州")),
        ("内蒙古自治区锡林郭勒盟", ("内蒙古自治区", "锡林郭勒盟")),
        ("香港特别行政区九龙", ("香港特别行政区", None)),
        ("文三路100号", (None, None)),
        ("", (None, None)),
        (None, (None, None)),
    ],
)
def test_split_region(address: str | None, region: tuple[str | None, str | None]) -> None:
    assert split_region(address) == region
