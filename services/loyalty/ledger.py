"""The points ledger: the only code that changes a member's points.

Every change happens under the member row's lock (`SELECT … FOR UPDATE`), in the caller's
transaction, as one append-only entry plus the cached balances plus the lots it creates or consumes,
plus a `loyalty.points_changed` event in the outbox. Concurrent redemptions of one member therefore
queue on the lock and each sees the balance the previous one left: the balance can never be spent
twice nor go below zero (a CHECK constraint backs this up).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import Select, String, any_, bindparam, select, text
from sqlalchemy.dialects.postgresql import ARRAY, insert
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm.attributes import InstrumentedAttribute, set_committed_value

from laoke.contracts.envelope import event_key
from laoke.contracts.loyalty import POINTS_CHANGED, TIER_CHANGED, PointsChangedPayload, TierChangedPayload
from laoke.contracts.topics import Topic
from laoke.kit import clock
from laoke.kit.errors import Conflict
from laoke.kit.outbox import Outbox, OutboxEvent
from services.loyalty.models import Member, PointsEntry, PointsLot
from services.loyalty.program import ProgramSettings

# Kinds that add to lifetime earnings (a manual plus is not earned by the member).
EARNING_KINDS = frozenset({"earn", "release", "signin", "bonus"})

_ENSURE_MEMBERS = text(
    "INSERT INTO loyalty.members (shop_id, customer_id) "
    "SELECT :shop_id, unnest(CAST(:customer_ids AS text[])) ON CONFLICT DO NOTHING"
)


def locked_in_key_order(entity: type[Any], key: InstrumentedAttribute[str], keys: str) -> Select[Any]:
    """A shop's rows of `entity` whose `key` is in the array bound as `keys` (the shop as `shop_id`),
    locked in key order: one lock order for every run, so two runs sharing rows never each hold one the
    other waits for. Build it once: building a SQLAlchemy statement costs more of the service's CPU than
    PostgreSQL spends running this one, and an `IN` list made a new SQL text, and a new prepared
    statement, for every run size."""
    return (
        select(entity)
        .where(entity.shop_id == bindparam("shop_id"), key == any_(bindparam(keys, type_=ARRAY(String))))
        .order_by(key)
        .with_for_update()
    )


_LOCK_MEMBERS = locked_in_key_order(Member, Member.customer_id, "customer_ids").execution_options(
    populate_existing=True
)
# One member locked, as a subquery of a caller that reads something else in the same round trip (binds
# :shop_id and :customer_id; load it with `populate_existing`, after a flush, as `Ledger.members` does).
LOCK_MEMBER = (
    select(Member)
    .where(Member.shop_id == bindparam("shop_id"), Member.customer_id == bindparam("customer_id"))
    .with_for_update()
)
# Core, not ORM: an ORM-enabled insert costs several times the Python work per entry.
_BOOK = insert(PointsEntry.__table__).on_conflict_do_nothing().returning(PointsEntry.id)
# A debit in one round trip: the entry, then `:points` taken from the member's lots (those expiring first,
# then the oldest) and from the cached balance. Nothing is taken when the reference was booked before: the
# entry's insert then returns no row. The caller holds the member's lock.
_DEBIT = text(
    """
    WITH entry AS (
        INSERT INTO loyalty.points_ledger (shop_id, customer_id, kind, points, pending, reference, note)
        VALUES (:shop_id, :customer_id, :kind, -CAST(:points AS bigint), 0, :reference, :note)
        ON CONFLICT DO NOTHING
        RETURNING id
    ), ordered AS (
        SELECT id, remaining,
               coalesce(sum(remaining) OVER (ORDER BY expires_at NULLS LAST, id
                                             ROWS BETWEEN UNBOUNDED PRECEDING AND 1 PRECEDING), 0) AS before
        FROM loyalty.points_lots
        WHERE shop_id = :shop_id AND customer_id = :customer_id AND remaining > 0
          AND EXISTS (SELECT FROM entry)
    ), taken AS (
        SELECT id, least(remaining, :points - before) AS amount FROM ordered WHERE before < :points
    ), consumed AS (
        UPDATE loyalty.points_lots l SET remaining = l.remaining - t.amount
        FROM taken t WHERE l.id = t.id
        RETURNING t.amount
    ), member AS (
        UPDATE loyalty.members SET points_balance = points_balance - :points, updated_at = :now
        WHERE shop_id = :shop_id AND customer_id = :customer_id AND EXISTS (SELECT FROM entry)
        RETURNING points_balance
    )
    SELECT (SELECT id FROM entry) AS entry_id,
           (SELECT coalesce(sum(amount), 0) FROM consumed) AS taken,
           (SELECT points_balance FROM member) AS balance
    """
)


class InsufficientPoints(Conflict):
    code = "insufficient_points"


@dataclass(frozen=True)
class Booked:
    entry_id: int
    points: int
    balance: int


class Ledger:
    """Books points for one shop in the caller's transaction.

    With `batched`, a run of changes (the orders of one consumer run) is written once: member rows, lots
    and the `points_changed` / `tier_changed` events wait in the session until `write()`, instead of a
    flush and an outbox insert per change. The caller must call `write()` before its transaction ends."""

    def __init__(
        self,
        session: AsyncSession,
        outbox: Outbox,
        shop_id: str,
        program: ProgramSettings,
        *,
        batched: bool = False,
    ) -> None:
        self.session = session
        self.outbox = outbox
        self.shop_id = shop_id
        self.program = program
        self.batched = batched
        self._events: list[OutboxEvent] = []

    async def member(self, customer_id: str, *, create: bool = True) -> Member | None:
        """The member, locked for this transaction (created first when `create`)."""
        return (await self.members({customer_id}, create=create)).get(customer_id)

    async def members(self, customer_ids: set[str], *, create: bool = True) -> dict[str, Member]:
        """Each of these members (created first when new and `create`), locked in customer order, so two
        runs that share members cannot each hold one the other waits for."""
        # Sessions do not autoflush, and reloading the rows below would drop changes made to them earlier
        # in this transaction (an earlier event of the same run): write them first.
        await self.session.flush()
        ordered = sorted(customer_ids)
        if create:
            await self.session.execute(_ENSURE_MEMBERS, {"shop_id": self.shop_id, "customer_ids": ordered})
        found = await self.session.scalars(_LOCK_MEMBERS, {"shop_id": self.shop_id, "customer_ids": ordered})
        return {member.customer_id: member for member in found}

    async def write(self) -> None:
        """Write what a batched ledger holds: member rows and lots, then its events, in booking order."""
        await self.session.flush()
        events, self._events = self._events, []
        await self.outbox.add_many(self.session, events)

    async def credit(
        self,
        member: Member,
        kind: str,
        points: int,
        reference: str,
        *,
        pending: int = 0,
        note: str | None = None,
        at: datetime | None = None,
    ) -> Booked | None:
        """Add `points` to the available balance (a new lot) and `pending` to the pending balance (may be
        negative: a release moves pending into available). None when this reference was booked before."""
        assert points >= 0, "credits add points; use debit to take them"
        if points == 0 and pending == 0:
            return None
        if member.points_pending + pending < 0:
            raise ValueError("pending points would go below zero")
        at = at or clock.now()
        entry_id = await self._book(member, kind, points, pending, reference, note)
        if entry_id is None:
            return None
        if points:
            self.session.add(
                PointsLot(
                    shop_id=self.shop_id,
                    customer_id=member.customer_id,
                    entry_id=entry_id,
                    points=points,
                    remaining=points,
                    earned_at=at,
                    expires_at=self.program.expires_at(at),
                )
            )
        member.points_balance += points
        member.points_pending += pending
        member.updated_at = clock.now()
        if kind in EARNING_KINDS:
            member.lifetime_earned += points
        return await self._changed(member, entry_id, kind, points, pending, reference)

    async def debit(
        self,
        member: Member,
        kind: str,
        points: int,
        reference: str,
        *,
        note: str | None = None,
        partial: bool = False,
    ) -> Booked | None:
        """Take `points` from the available balance, from the lots expiring first. Without enough
        points: `InsufficientPoints`, or with `partial` whatever is there (a refund of points already
        spent takes back what it can, and says so in the note)."""
        assert points > 0, "debits take a positive number of points"
        if points > member.points_balance:
            if not partial:
                raise InsufficientPoints(
                    f"member {member.customer_id} has {member.points_balance} points, {points} needed"
                )
            shortfall = points - member.points_balance
            note = f"{note + '; ' if note else ''}{shortfall} points were already spent"
            points = member.points_balance
            if points == 0:
                await self._book(member, kind, 0, 0, reference, note)
                return None
        # The member row must hold what was booked before in this transaction: the statement updates it.
        await self.session.flush()
        now = clock.now()
        debited = (
            await self.session.execute(
                _DEBIT,
                {
                    "shop_id": self.shop_id,
                    "customer_id": member.customer_id,
                    "kind": kind,
                    "points": points,
                    "reference": reference,
                    "note": note,
                    "now": now,
                },
            )
        ).one()
        if debited.entry_id is None:
            return None
        assert debited.taken == points, f"lots held {debited.taken} of {points} points: the balance is wrong"
        assert debited.balance == member.points_balance - points, "the member row changed outside its lock"
        # What the statement wrote, so the session has nothing left to write for it.
        set_committed_value(member, "points_balance", debited.balance)
        set_committed_value(member, "updated_at", now)
        entry_id = debited.entry_id
        return await self._changed(member, entry_id, kind, -points, 0, reference)

    async def pending(self, member: Member, delta: int, kind: str, reference: str) -> Booked | None:
        """Move only the pending balance (points promised on a paid order, or withdrawn when it closes)."""
        if delta == 0:
            return None
        if member.points_pending + delta < 0:
            raise ValueError("pending points would go below zero")
        entry_id = await self._book(member, kind, 0, delta, reference, None)
        if entry_id is None:
            return None
        member.points_pending += delta
        member.updated_at = clock.now()
        return await self._changed(member, entry_id, kind, 0, delta, reference)

    async def set_tier(self, member: Member, level: int) -> None:
        if level == member.tier_level:
            return
        tier = self.program.tier(level)
        previous = member.tier_level
        member.tier_level = level
        member.tier_changed_at = clock.now()
        await self._announce(
            member,
            TIER_CHANGED,
            TierChangedPayload(
                customer_id=member.customer_id,
                from_level=previous or None,
                to_level=level,
                tier_name=tier.name if tier else "",
            ),
        )

    async def _book(
        self, member: Member, kind: str, points: int, pending: int, reference: str, note: str | None
    ) -> int | None:
        return await self.session.scalar(
            _BOOK,
            {
                "shop_id": self.shop_id,
                "customer_id": member.customer_id,
                "kind": kind,
                "points": points,
                "pending": pending,
                "reference": reference,
                "note": note,
            },
        )

    async def _changed(
        self, member: Member, entry_id: int, kind: str, points: int, pending: int, reference: str
    ) -> Booked:
        await self._announce(
            member,
            POINTS_CHANGED,
            PointsChangedPayload(
                customer_id=member.customer_id,
                delta=points,
                pending_delta=pending,
                kind=kind,
                reference=reference,
                balance=member.points_balance,
                pending=member.points_pending,
            ),
        )
        return Booked(entry_id=entry_id, points=points, balance=member.points_balance)

    async def _announce(self, member: Member, event_type: str, payload: BaseModel) -> None:
        event = OutboxEvent(
            topic=Topic.LOYALTY,
            event_type=event_type,
            shop_id=self.shop_id,
            key=event_key(self.shop_id, member.customer_id),
            payload=payload,
        )
        if self.batched:
            self._events.append(event)
            return
        await self.session.flush()
        await self.outbox.add_many(self.session, [event])


async def fold(session: AsyncSession, shop_id: str, source: str, target: str) -> None:
    """`customer.merged`: the source member's entries, lots, orders and balances move to the target,
    which keeps the higher tier."""
    params = {"shop": shop_id, "source": source, "target": target}
    for table in ("points_ledger", "points_lots", "orders", "redemptions", "coupons", "lottery_draws"):
        await session.execute(
            text(
                f"UPDATE loyalty.{table} SET customer_id = :target "  # noqa: S608 - our own table names
                "WHERE shop_id = :shop AND customer_id = :source"
            ),
            params,
        )
    await session.execute(
        text(
            """
            WITH gone AS (
                DELETE FROM loyalty.members WHERE shop_id = :shop AND customer_id = :source
                RETURNING points_balance, points_pending, lifetime_earned, tier_level, birthday
            )
            INSERT INTO loyalty.members AS m
                (shop_id, customer_id, points_balance, points_pending, lifetime_earned, tier_level, birthday)
            SELECT :shop, :target, points_balance, points_pending, lifetime_earned, tier_level, birthday
            FROM gone
            ON CONFLICT (shop_id, customer_id) DO UPDATE SET
                points_balance = m.points_balance + excluded.points_balance,
                points_pending = m.points_pending + excluded.points_pending,
                lifetime_earned = m.lifetime_earned + excluded.lifetime_earned,
                tier_level = greatest(m.tier_level, excluded.tier_level),
                birthday = coalesce(m.birthday, excluded.birthday),
                updated_at = now()
            """
        ),
        params,
    )
