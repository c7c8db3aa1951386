"""Province and city from a mainland Chinese address written as one string.

Sources that give only a full address ("浙江省杭州市西湖区文三路100号", "上海市 浦东新区 ...") still
deserve a region on the profile: segments by province and city and the portrait depend on it.
"""

from __future__ import annotations

import re

_MUNICIPALITY = re.compile(r"^\s*(?P<name>北京|天津|上海|重庆)市?")
_PROVINCE = re.compile(r"^\s*(?P<province>[^\s\d]{2,8}?(?:省|自治区|特别行政区))")
_CITY = re.compile(r"^\s*(?P<city>[^\s\d]{2,12}?(?:市|自治州|地区|盟))")


def split_region(address: str | None) -> tuple[str | None, str | None]:
    """(province, city) at the start of `address`, or None for what is not there."""
    if not address:
        return None, None
    if found := _MUNICIPALITY.match(address):
        name = f"{found['name']}市"
        return name, name
    if not (found := _PROVINCE.match(address)):
        return None, None
    city = _CITY.match(address[found.end() :])
    return found["province"], city["city"] if city else None
