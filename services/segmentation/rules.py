"""Segment rules: a JSON tree compiled to a parameterised SQL condition over profiles.

    {"all": [rule, ...]} | {"any": [rule, ...]} | {"not": rule} | {"field": f, "op": o, "value": v}

Fields and operators come from a whitelist; every value is type-checked and becomes a bound parameter,
never SQL text. Any mistake is reported with where it is (`rule.all[1].value: ...`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from decimal import Decimal, InvalidOperation
from typing import Any
from zoneinfo import ZoneInfo

from sqlalchemy import ColumnElement, and_, cast, exists, extract, false, func, not_, or_, select, true
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.kit.errors import Unprocessable
from services.segmentation.models import CustomerTag, Group, GroupMember, Profile, ProfileBehaviour
from services.segmentation.rfm_config import Lifecycle, RfmClass

# Business days are the shop's; Laoke's default shop time zone (DESIGN.md §5).
SHOP_TIME_ZONE = ZoneInfo("Asia/Shanghai")
GENDERS = ("male", "female")

MAX_DEPTH = 8
MAX_CONDITIONS = 100


class RuleError(Unprocessable):
    pass


@dataclass(frozen=True)
class Field:
    kind: str  # int, number, money, enum, text, time, tags, group, channel, behaviour
    column: Callable[[datetime], ColumnElement[Any]]
    choices: frozenset[str] = frozenset()


def _recency(now: datetime) -> ColumnElement[Any]:
    return func.floor(extract("epoch", now - Profile.last_order_at) / 86400)


def _avg(_: datetime) -> ColumnElement[Any]:
    return Profile.total_spent_fen / func.nullif(Profile.orders_count, 0)


def _age(now: datetime) -> ColumnElement[Any]:
    today = now.astimezone(SHOP_TIME_ZONE).date()
    return extract("year", func.age(today, Profile.birthday))


def _birthday_month(_: datetime) -> ColumnElement[Any]:
    return extract("month", Profile.birthday)


BEHAVIOUR_KINDS = {
    "favorited": ("favorite_item", "favorite_shop"),
    "carted": ("add_to_cart",),
    "browsed": ("browse",),
}


FIELDS: dict[str, Field] = {
    "lifecycle": Field("enum", lambda _: Profile.lifecycle, frozenset(v.value for v in Lifecycle)),
    "rfm_segment": Field("enum", lambda _: Profile.rfm_segment, frozenset(v.value for v in RfmClass)),
    "r_score": Field("int", lambda _: Profile.r_score),
    "f_score": Field("int", lambda _: Profile.f_score),
    "m_score": Field("int", lambda _: Profile.m_score),
    "recency_days": Field("int", _recency),
    "orders_count": Field("int", lambda _: Profile.orders_count),
    "total_spent": Field("money", lambda _: Profile.total_spent_fen),
    "avg_order_value": Field("money", _avg),
    "first_order_at": Field("time", lambda _: Profile.first_order_at),
    "last_order_at": Field("time", lambda _: Profile.last_order_at),
    "tags": Field("tags", lambda _: Profile.customer_id),
    "group": Field("group", lambda _: Profile.customer_id),
    "refunds_count": Field("int", lambda _: Profile.refunds_count),
    "refunded": Field("money", lambda _: Profile.refunded_fen),
    "tier": Field("text", lambda _: Profile.tier),
    "tier_level": Field("int", lambda _: Profile.tier_level),
    "points_balance": Field("int", lambda _: Profile.points_balance),
    "province": Field("text", lambda _: Profile.province),
    "city": Field("text", lambda _: Profile.city),
    "gender": Field("enum", lambda _: Profile.gender, frozenset(GENDERS)),
    "age": Field("int", _age),
    "birthday_month": Field("int", _birthday_month),
    "channel": Field("channel", lambda _: Profile.channels),
    "favorites_count": Field("int", lambda _: Profile.favorites_count),
    "carts_count": Field("int", lambda _: Profile.carts_count),
    **{name: Field("behaviour", lambda _: Profile.customer_id) for name in BEHAVIOUR_KINDS},
    "p_alive": Field("number", lambda _: Profile.p_alive),
    "expected_purchases_90d": Field("number", lambda _: Profile.expected_purchases_90d),
    "clv_365d": Field("money", lambda _: Profile.clv_365d_fen),
}

# Custom attributes (survey answers from loyalty): `attributes.<key>`.
ATTRIBUTE_PREFIX = "attributes."
ATTRIBUTE_KEY = re.compile(r"[a-z][a-z0-9_]{0,39}")
ATTRIBUTE_OPS = frozenset({"eq", "ne", "in", "not_in", "exists"})

OPS = {
    "int": {"eq", "ne", "gt", "gte", "lt", "lte", "between", "in", "not_in"},
    "number": {"gt", "gte", "lt", "lte", "between"},
    "money": {"eq", "ne", "gt", "gte", "lt", "lte", "between"},
    "enum": {"eq", "ne", "in", "not_in"},
    "time": {"before", "after", "between", "within_days", "not_within_days"},
    "tags": {"has", "has_any", "has_all", "has_none"},
    "text": {"eq", "ne", "in", "not_in"},
    "group": {"in", "not_in"},
    "channel": {"has", "has_any", "has_none"},
    "behaviour": {"within_days", "not_within_days"},
}


def _int(value: Any, where: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        raise RuleError(f"{where}: expected a whole number, got {value!r}")
    return value


def _money(value: Any, where: str) -> int:
    try:
        amount = Decimal(str(value))
    except InvalidOperation as exc:
        raise RuleError(f"{where}: expected an amount in yuan, got {value!r}") from exc
    if isinstance(value, bool) or not amount.is_finite():
        raise RuleError(f"{where}: expected an amount in yuan, got {value!r}")
    return int(amount * 100)


def _number(value: Any, where: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RuleError(f"{where}: expected a number, got {value!r}")
    return float(value)


def _time(value: Any, where: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(str(value))
    except ValueError as exc:
        raise RuleError(f"{where}: expected an ISO-8601 time with offset, got {value!r}") from exc
    if parsed.tzinfo is None:
        raise RuleError(f"{where}: give a time zone, e.g. 2026-01-01T00:00:00+08:00")
    return parsed


def _text(value: Any, where: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 200:
        raise RuleError(f"{where}: expected a text of 1 to 200 characters, got {value!r}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if not isinstance(value, list) or not value or len(value) > 100:
        raise RuleError(f"{where}: expected a list of 1 to 100 values")
    return value


class Compiler:
    def __init__(self, shop_id: str, now: datetime) -> None:
        self.shop_id = shop_id
        self.now = now
        self.conditions = 0
        self.groups: dict[str, str] = {}  # the groups the rule names, each with where it names it

    def compile(self, rule: Any, where: str = "rule", depth: int = 0) -> ColumnElement[bool]:
        if depth > MAX_DEPTH:
            raise RuleError(f"{where}: rules may nest at most {MAX_DEPTH} levels")
        if not isinstance(rule, dict):
            raise RuleError(f"{where}: expected an object")
        keys = set(rule)
        if keys in ({"all"}, {"any"}):
            (key,) = keys
            parts = rule[key]
            if not isinstance(parts, list) or not parts:
                raise RuleError(f"{where}.{key}: expected a non-empty list of rules")
            compiled = [self.compile(p, f"{where}.{key}[{i}]", depth + 1) for i, p in enumerate(parts)]
            return and_(true(), *compiled) if key == "all" else or_(false(), *compiled)
        if keys == {"not"}:
            return not_(self.compile(rule["not"], f"{where}.not", depth + 1))
        if keys == {"field", "op", "value"}:
            self.conditions += 1
            if self.conditions > MAX_CONDITIONS:
                raise RuleError(f"{where}: a rule may hold at most {MAX_CONDITIONS} conditions")
            return self._condition(rule["field"], rule["op"], rule["value"], where)
        raise RuleError(f"{where}: expected all, any, not, or field/op/value; got keys {sorted(keys)}")

    def _condition(self, name: Any, op: Any, value: Any, where: str) -> ColumnElement[bool]:
        if isinstance(name, str) and name.startswith(ATTRIBUTE_PREFIX):
            return self._attribute(name, op, value, where)
        field = FIELDS.get(name) if isinstance(name, str) else None
        if field is None:
            raise RuleError(
                f"{where}.field: unknown field {name!r}; known: {', '.join(sorted(FIELDS))}, attributes.<key>"
            )
        if op not in OPS[field.kind]:
            raise RuleError(
                f"{where}.op: {op!r} does not apply to {name}; use one of {sorted(OPS[field.kind])}"
            )
        at = f"{where}.value"
        column = field.column(self.now)
        if field.kind == "tags":
            return self._tags(op, [str(t) for t in _list(value, at)] if op != "has" else [str(value)])
        if field.kind == "group":
            group_ids = [_text(v, at) for v in _list(value, at)]
            self.groups.update((group_id, at) for group_id in group_ids)
            in_group = exists(
                select(GroupMember.group_id).where(
                    GroupMember.shop_id == Profile.shop_id,
                    GroupMember.customer_id == Profile.customer_id,
                    GroupMember.group_id.in_(group_ids),
                )
            )
            return in_group if op == "in" else not_(in_group)
        if field.kind == "channel":
            channels = [_text(value, at)] if op == "has" else [_text(v, at) for v in _list(value, at)]
            overlaps = Profile.channels.overlap(cast(channels, Profile.channels.type))
            return not_(overlaps) if op == "has_none" else overlaps
        if field.kind == "behaviour":
            return self._behaviour(BEHAVIOUR_KINDS[name], op, value, at)
        if field.kind == "text":
            if op in ("in", "not_in"):
                return self._compare(column, op, [_text(v, at) for v in _list(value, at)])
            return self._compare(column, op, _text(value, at))
        if field.kind == "enum":
            values = _list(value, at) if op in ("in", "not_in") else [value]
            unknown = [v for v in values if v not in field.choices]
            if unknown:
                raise RuleError(
                    f"{at}: unknown {name} {unknown[0]!r}; known: {', '.join(sorted(field.choices))}"
                )
            return self._compare(column, op, values if op in ("in", "not_in") else values[0])
        if field.kind == "time":
            if op in ("within_days", "not_within_days"):
                since = self.now - timedelta(days=_int(value, at))
                inside = column >= since
                return inside if op == "within_days" else or_(column < since, column.is_(None))
            if op == "between":
                low, high = self._ordered(self._pair(value, at), _time, at)
                return column.between(low, high)
            moment = _time(value, at)
            return column < moment if op == "before" else column > moment
        convert = {"int": _int, "money": _money, "number": _number}[field.kind]
        if op == "between":
            low, high = self._ordered(self._pair(value, at), convert, at)
            return column.between(low, high)
        if op in ("in", "not_in"):
            return self._compare(column, op, [convert(v, at) for v in _list(value, at)])
        return self._compare(column, op, convert(value, at))

    @staticmethod
    def _pair(value: Any, where: str) -> list[Any]:
        if not isinstance(value, list) or len(value) != 2:
            raise RuleError(f"{where}: between takes [low, high]")
        return value

    @staticmethod
    def _ordered(pair: list[Any], convert: Callable[[Any, str], Any], where: str) -> tuple[Any, Any]:
        # [500, 100] would match nobody without a word: almost always the two typed the wrong way round.
        low, high = (convert(v, where) for v in pair)
        if low > high:
            raise RuleError(f"{where}: between takes [low, high], and {pair[0]} is above {pair[1]}")
        return low, high

    @staticmethod
    def _compare(column: ColumnElement[Any], op: str, value: Any) -> ColumnElement[bool]:
        return {
            "eq": lambda: column == value,
            "ne": lambda: or_(column != value, column.is_(None)),
            "gt": lambda: column > value,
            "gte": lambda: column >= value,
            "lt": lambda: column < value,
            "lte": lambda: column <= value,
            "in": lambda: column.in_(value),
            "not_in": lambda: or_(column.not_in(value), column.is_(None)),
        }[op]()

    def _behaviour(self, kinds: tuple[str, ...], op: str, value: Any, where: str) -> ColumnElement[bool]:
        """`{"field": "carted", "op": "within_days", "value": 7}` or, for one item,
        `"value": {"days": 7, "item_id": "TEA-01"}`."""
        item_id: str | None = None
        if isinstance(value, dict):
            unknown = set(value) - {"days", "item_id"}
            if unknown or "days" not in value:
                raise RuleError(f'{where}: expected a number of days or {{"days": N, "item_id": "..."}}')
            item_id = _text(value["item_id"], f"{where}.item_id") if "item_id" in value else None
            value = value["days"]
        days = _int(value, where)
        if not 0 < days <= 3650:
            raise RuleError(f"{where}: days must be between 1 and 3650")
        conditions = [
            ProfileBehaviour.shop_id == Profile.shop_id,
            ProfileBehaviour.customer_id == Profile.customer_id,
            ProfileBehaviour.kind.in_(kinds),
            ProfileBehaviour.occurred_at >= self.now - timedelta(days=days),
        ]
        if item_id is not None:
            conditions.append(ProfileBehaviour.item_id == item_id)
        happened = exists(select(ProfileBehaviour.kind).where(*conditions))
        return happened if op == "within_days" else not_(happened)

    def _attribute(self, name: str, op: Any, value: Any, where: str) -> ColumnElement[bool]:
        """`{"field": "attributes.skin_type", "op": "eq", "value": "dry"}`: what the buyer answered. A
        multiple-choice answer (a list) equals every option chosen. Containment (`@>`) keeps it one
        index-friendly test per value."""
        key = name[len(ATTRIBUTE_PREFIX) :]
        if not ATTRIBUTE_KEY.fullmatch(key):
            raise RuleError(
                f"{where}.field: attribute names are lower-case letters, digits and _; got {key!r}"
            )
        if op not in ATTRIBUTE_OPS:
            raise RuleError(
                f"{where}.op: {op!r} does not apply to attributes; use one of {sorted(ATTRIBUTE_OPS)}"
            )
        at = f"{where}.value"
        if op == "exists":
            if not isinstance(value, bool):
                raise RuleError(f"{at}: exists takes true or false")
            answered = Profile.attributes.has_key(key)
            return answered if value else not_(answered)
        values = [_text(v, at) for v in _list(value, at)] if op in ("in", "not_in") else [_text(value, at)]
        matches = or_(
            false(),
            *(
                or_(Profile.attributes.contains({key: v}), Profile.attributes.contains({key: [v]}))
                for v in values
            ),
        )
        return matches if op in ("eq", "in") else not_(matches)

    def _tags(self, op: str, tags: list[str]) -> ColumnElement[bool]:
        def tagged(tag_filter: ColumnElement[bool]) -> ColumnElement[bool]:
            return exists(
                select(CustomerTag.tag).where(
                    CustomerTag.shop_id == Profile.shop_id,
                    CustomerTag.customer_id == Profile.customer_id,
                    tag_filter,
                )
            )

        if op in ("has", "has_any"):
            return tagged(CustomerTag.tag.in_(tags))
        if op == "has_none":
            return not_(tagged(CustomerTag.tag.in_(tags)))
        return and_(*(tagged(CustomerTag.tag == t) for t in tags))


def compile_rule(rule: Any, shop_id: str, now: datetime) -> ColumnElement[bool]:
    return and_(Profile.shop_id == shop_id, Compiler(shop_id, now).compile(rule))


def named_groups(rule: Any) -> set[str]:
    """The group ids a stored rule names (a rule that no longer compiles names none)."""
    compiler = Compiler("", datetime.now().astimezone())
    try:
        compiler.compile(rule)
    except RuleError:
        return set()
    return set(compiler.groups)


async def checked_rule(session: AsyncSession, rule: Any, shop_id: str, now: datetime) -> ColumnElement[bool]:
    """A rule from a request, compiled, with the groups it names looked up: a group that is not the
    shop's is refused (422), where it would silently match nobody."""
    compiler = Compiler(shop_id, now)
    condition = and_(Profile.shop_id == shop_id, compiler.compile(rule))
    if compiler.groups:
        known = set(
            await session.scalars(
                select(Group.id).where(Group.shop_id == shop_id, Group.id.in_(compiler.groups))
            )
        )
        for group_id, where in compiler.groups.items():
            if group_id not in known:
                raise RuleError(f"{where}: group {group_id} not found")
    return condition
