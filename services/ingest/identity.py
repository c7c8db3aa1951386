"""Buyer identity: which Laoke customer an order's buyer is.

Within a channel a buyer is known by the channel's id (Taobao open uid or nick, Shopify customer id)
or e-mail. Across channels only a normalised mobile number links two identities (the shop's
`merge_by_mobile` setting, on by default); it is stored as an identity of the pseudo-channel `mobile`.

When an order proves two existing customers are one buyer (a Taobao buyer and a Shopify buyer with the
same mobile), the younger id folds into the one that already owned the mobile: identities and orders
move, the old id records where it went, and `customer.merged {from, into}` tells other services.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from sqlalchemy import bindparam, select, text, update
from sqlalchemy.dialects.postgresql import insert
from sqlalchemy.ext.asyncio import AsyncSession

from laoke.contracts.customers import CUSTOMER_MERGED, CustomerMergedPayload
from laoke.contracts.envelope import event_key
from laoke.contracts.topics import Topic
from laoke.kit.cache import TtlCache
from laoke.kit.ids import new_id
from laoke.kit.outbox import Outbox
from services.ingest.models import Customer, CustomerIdentity, Order, ShopSettings

MOBILE_CHANNEL = "mobile"
# Mainland China mobile numbers: 11 digits starting 13-19. Masked numbers (138****1234) never match.
MOBILE_RE = re.compile(r"^1[3-9]\d{9}$")
_NOT_DIGITS = re.compile(r"[\s\-()'+.]")

_identities = CustomerIdentity.__table__
_customers = Customer.__table__

_CLAIM = insert(_identities).on_conflict_do_nothing().returning(_identities.c.customer_id)
# A new customer, the identity it is created for and the buyer's other identities, in one round trip; no
# row (and nothing written) when another order of the same buyer claimed the first identity first. The
# other identities are claimed as `_CLAIM` does, each unless someone holds it already.
_CREATE = text(
    """
    WITH claimed AS (
        INSERT INTO ingest.customer_identities (shop_id, channel, external_id, customer_id)
        VALUES (:shop_id, :channel, :external_id, :customer_id)
        ON CONFLICT DO NOTHING
        RETURNING customer_id
    ), created AS (
        INSERT INTO ingest.customers (shop_id, id) SELECT :shop_id, customer_id FROM claimed
        ON CONFLICT DO NOTHING
    ), others AS (
        INSERT INTO ingest.customer_identities (shop_id, channel, external_id, customer_id)
        SELECT :shop_id, k.channel, k.external_id, c.customer_id
        FROM claimed c
        CROSS JOIN unnest(CAST(:channels AS text[]), CAST(:external_ids AS text[])) AS k(channel, external_id)
        ON CONFLICT DO NOTHING
    )
    SELECT customer_id FROM claimed
    """
)
# An order's identities, one primary-key probe each. As one `(channel, external_id) IN (…)` list the
# lookup could use only the key's shop prefix, and in a shop the statistics did not know yet (taken for a
# row or two) the planner walked every identity of the shop on each webhook.
KNOWN_IDENTITIES = text(
    "SELECT k.channel, k.external_id, i.customer_id "
    "FROM unnest(CAST(:channels AS text[]), CAST(:external_ids AS text[])) AS k(channel, external_id) "
    "CROSS JOIN LATERAL (SELECT customer_id FROM ingest.customer_identities i WHERE i.shop_id = :shop_id "
    "AND i.channel = k.channel AND i.external_id = k.external_id OFFSET 0) i"
)
# A merge moves the source customer's identities to the target. The source comes as a row beside the
# shop, not as a condition on the identities: in a shop the statistics do not know yet, `shop_id = :shop_id`
# looks like a row or two, and the update walked every identity of the shop through the primary key.
MERGE_IDENTITIES = text(
    "UPDATE ingest.customer_identities i SET customer_id = :target "
    "FROM (SELECT CAST(:shop_id AS varchar) AS shop_id, "
    "unnest(ARRAY[CAST(:source AS varchar)]) AS customer_id) AS m "
    "WHERE i.shop_id = m.shop_id AND i.customer_id = m.customer_id"
)
_SETTINGS = select(ShopSettings.merge_by_mobile, ShopSettings.timezone).where(
    ShopSettings.shop_id == bindparam("shop_id")
)


def identity_keys(shop_id: str, keys: list[tuple[str, str]]) -> dict[str, object]:
    """`KNOWN_IDENTITIES`'s parameters for these (channel, external id) keys."""
    return {"shop_id": shop_id, "channels": [k[0] for k in keys], "external_ids": [k[1] for k in keys]}


def normalise_mobile(raw: str | None) -> str | None:
    """`+86 138-0013-8000`, `'13800138000`, `008613800138000` → `13800138000`; anything else → None."""
    if not raw:
        return None
    digits = _NOT_DIGITS.sub("", raw)
    for prefix in ("0086", "86"):
        if digits.startswith(prefix) and len(digits) == 11 + len(prefix):
            digits = digits[len(prefix) :]
    return digits if MOBILE_RE.match(digits) else None


@dataclass(frozen=True, slots=True)
class BuyerKeys:
    """The identities an order carries, most specific first."""

    channel: str
    external_id: str | None
    email: str | None
    mobile: str | None

    def channel_keys(self) -> list[tuple[str, str]]:
        keys = [(self.channel, v) for v in (self.external_id, self.email) if v]
        return keys


@dataclass(frozen=True, slots=True)
class ShopIngestSettings:
    merge_by_mobile: bool = True
    timezone: str = "Asia/Shanghai"


# Read on every order and webhook, changed rarely: each process keeps them for a few seconds. A change
# applies at once on the replica that took it and within five seconds on the others.
_settings_cache: TtlCache[ShopIngestSettings] = TtlCache(5.0)


async def shop_settings(session: AsyncSession, shop_id: str) -> ShopIngestSettings:
    hit, cached = _settings_cache.get(shop_id)
    if hit and cached is not None:
        return cached
    row = (await session.execute(_SETTINGS, {"shop_id": shop_id})).first()
    settings = ShopIngestSettings(row.merge_by_mobile, row.timezone) if row else ShopIngestSettings()
    return _settings_cache.put(shop_id, settings)


def forget_shop_settings(shop_id: str) -> None:
    _settings_cache.forget(shop_id)


def buyer_keys(channel: str, external_id: str | None, email: str | None, mobile: str | None) -> BuyerKeys:
    return BuyerKeys(
        channel=channel,
        external_id=external_id,
        email=email.strip().lower() if email else None,
        mobile=normalise_mobile(mobile),
    )


class IdentityResolver:
    def __init__(self, session: AsyncSession, outbox: Outbox, shop_id: str) -> None:
        self.session = session
        self.outbox = outbox
        self.shop_id = shop_id

    async def resolve(self, keys: BuyerKeys, *, merge_by_mobile: bool) -> str:
        """The customer id of the buyer, creating or merging customers as the keys require."""
        mobile = keys.mobile if merge_by_mobile else None
        wanted = keys.channel_keys() + ([(MOBILE_CHANNEL, mobile)] if mobile else [])
        if not wanted:
            raise ValueError("buyer has no identity")
        known = await self._known(wanted)
        by_channel = next((known[k] for k in keys.channel_keys() if k in known), None)
        by_mobile = known.get((MOBILE_CHANNEL, mobile)) if mobile else None

        if by_channel is None and by_mobile is None:
            customer_id, created = await self._create(wanted)
            if created:  # every key claimed with the customer; claiming them again cost a round trip each
                return customer_id
            known[wanted[0]] = customer_id
        elif by_channel is None:
            customer_id = by_mobile  # first order on this channel of a buyer known elsewhere
        elif by_mobile is not None and by_mobile != by_channel:
            await self._merge(source=by_channel, target=by_mobile)
            customer_id = by_mobile
        else:
            customer_id = by_channel
        assert customer_id is not None
        for key in wanted:
            if key not in known:
                await self._claim(key, customer_id)
        return customer_id

    async def _known(self, keys: list[tuple[str, str]]) -> dict[tuple[str, str], str]:
        rows = await self.session.execute(KNOWN_IDENTITIES, identity_keys(self.shop_id, keys))
        return {(r.channel, r.external_id): r.customer_id for r in rows}

    async def _create(self, keys: list[tuple[str, str]]) -> tuple[str, bool]:
        """A new customer owning `keys` (the first one decides): its id and True. Concurrent first orders
        of one buyer race on the first key; the loser takes the winner's id and False (its other keys are
        then still to claim), so a buyer never gets two ids."""
        primary, others = keys[0], list(dict.fromkeys(k for k in keys[1:] if k != keys[0]))
        created = await self.session.scalar(
            _CREATE,
            {
                "shop_id": self.shop_id,
                "channel": primary[0],
                "external_id": primary[1],
                "customer_id": new_id("cus"),
                "channels": [k[0] for k in others],
                "external_ids": [k[1] for k in others],
            },
        )
        if created is not None:
            return created, True
        return (await self._known([primary]))[primary], False

    async def _claim(self, key: tuple[str, str], customer_id: str) -> str:
        identity = {"shop_id": self.shop_id, "channel": key[0], "external_id": key[1]}
        claimed = await self.session.scalar(_CLAIM, {**identity, "customer_id": customer_id})
        if claimed is not None:
            return claimed
        existing = await self._known([key])
        return existing[key]

    async def _merge(self, *, source: str, target: str) -> None:
        await self.session.execute(
            MERGE_IDENTITIES, {"shop_id": self.shop_id, "source": source, "target": target}
        )
        await self.session.execute(
            update(Order.__table__)
            .where(Order.__table__.c.shop_id == self.shop_id, Order.__table__.c.customer_id == source)
            .values(customer_id=target)
        )
        await self.session.execute(
            update(_customers)
            .where(_customers.c.shop_id == self.shop_id, _customers.c.id == source)
            .values(merged_into=target)
        )
        await self.outbox.add(
            self.session,
            topic=Topic.CUSTOMERS,
            event_type=CUSTOMER_MERGED,
            shop_id=self.shop_id,
            key=event_key(self.shop_id, source),
            payload=CustomerMergedPayload(from_customer_id=source, into_customer_id=target).model_dump(
                mode="json", by_alias=True
            ),
        )
