"""Scheduled loyalty work: points expiry, expiring-points notices, birthday bonuses, tier re-evaluation.

Any number of replicas may run the loop; a PostgreSQL advisory lock lets one of them work per round.
Expiry is set-based in chunks of members: the chunk's members are locked first (in a fixed order, as
every ledger change locks them: the chunk's keys come sorted), then one statement zeroes their expired
lots, books one `expire` entry per member and moves their balances. Because spending also happens
under the member lock, expiry only ever takes what is left of a lot. One `loyalty.points_expired`
event per shop and run (not one per member) tells consumers where to read the new balances.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import date, datetime, timedelta

import structlog
from fastapi import FastAPI
from sqlalchemy import extract, or_, select, text

from laoke.contracts.loyalty import POINTS_EXPIRED, POINTS_EXPIRING, PointsExpiredPayload
from laoke.contracts.topics import Topic
from laoke.kit import clock
from laoke.kit.db import Database
from laoke.kit.outbox import Outbox, envelope_sql
from services.loyalty import activities, program, tiers
from services.loyalty.ledger import Ledger
from services.loyalty.models import Activity, Member, Program

log = structlog.get_logger(__name__)
Job = Callable[[Database, Outbox], Awaitable[object]]

_LOCK = text("SELECT pg_try_advisory_xact_lock(hashtextextended('loyalty.jobs', 0))")
CHUNK = 50_000
# Expiry runs this many transactions at once (the database does the work; more than its cores is waste).
EXPIRY_WORKERS = 2

# The next members with due lots, walking the member index in order (keyset: no sort, no rescans).
_DUE_MEMBERS = text(
    """
    SELECT DISTINCT shop_id, customer_id FROM loyalty.points_lots
    WHERE (shop_id, customer_id) > (CAST(:after_shop AS text), CAST(:after_customer AS text))
      AND remaining > 0 AND expires_at <= :as_of
      AND (hashtext(customer_id) & 2147483647) % :workers = :worker
    ORDER BY shop_id, customer_id LIMIT :chunk
    """
)
# Statements over a chunk's members go member by member through the key (a nested loop over the
# chunk's keys, in their order): as a join, the planner hashed every member and due lot of the database
# for each chunk of 50,000 (0.45 s a chunk in the lock and again in the expiry).
_LOCK_MEMBERS = text(
    """
    SELECT count(*)
    FROM unnest(CAST(:shops AS text[]), CAST(:customers AS text[])) AS x(shop_id, customer_id)
    CROSS JOIN LATERAL (
        SELECT 1 FROM loyalty.members m
        WHERE m.shop_id = x.shop_id AND m.customer_id = x.customer_id
        FOR UPDATE
    ) locked
    """
)
_EXPIRE = text(
    """
    WITH due AS (
        SELECT l.id, x.shop_id, x.customer_id, l.remaining
        FROM unnest(CAST(:shops AS text[]), CAST(:customers AS text[])) AS x(shop_id, customer_id)
        CROSS JOIN LATERAL (
            SELECT l.id, l.remaining FROM loyalty.points_lots l
            WHERE l.shop_id = x.shop_id AND l.customer_id = x.customer_id
              AND l.remaining > 0 AND l.expires_at <= :as_of
            OFFSET 0  -- kept a subquery: probed per member, not flattened into a hash join
        ) l
    ), zeroed AS (
        UPDATE loyalty.points_lots l SET remaining = 0 FROM due WHERE l.id = due.id
        RETURNING due.shop_id, due.customer_id, due.remaining
    ), per_member AS (
        SELECT shop_id, customer_id, sum(remaining) AS points FROM zeroed GROUP BY shop_id, customer_id
    ), entries AS (
        INSERT INTO loyalty.points_ledger (shop_id, customer_id, kind, points, reference, note)
        SELECT shop_id, customer_id, 'expire', -points, 'expire:' || :run || ':' || customer_id,
               'points expired'
        FROM per_member
        RETURNING 1
    ), moved AS (
        UPDATE loyalty.members m SET points_balance = m.points_balance - p.points, updated_at = now()
        FROM per_member p WHERE m.shop_id = p.shop_id AND m.customer_id = p.customer_id
        RETURNING m.shop_id, p.points
    )
    SELECT shop_id, count(*) AS members, sum(points) AS points, (SELECT count(*) FROM entries) AS entries
    FROM moved GROUP BY shop_id
    """
)
_EXPIRING_PAYLOAD = (
    "jsonb_build_object('customer_id', customer_id, 'points', points, "
    "'expires_at', to_char(expires_at AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS\"Z\"'), "
    "'balance', points_balance)"
)
_NOTIFY = text(
    f"""
    WITH soon AS (
        UPDATE loyalty.points_lots SET notified_at = :as_of
        WHERE shop_id = :shop AND remaining > 0 AND notified_at IS NULL
          AND expires_at > :as_of AND expires_at <= :until
        RETURNING customer_id, remaining, expires_at
    ), per_member AS (
        SELECT s.customer_id, sum(s.remaining) AS points, min(s.expires_at) AS expires_at, m.points_balance
        FROM soon s JOIN loyalty.members m ON m.shop_id = :shop AND m.customer_id = s.customer_id
        GROUP BY s.customer_id, m.points_balance
    )
    INSERT INTO loyalty.outbox (event_id, topic, key, event_type, shop_id, envelope)
    SELECT (e->>'event_id')::uuid, :topic, :shop || ':' || customer_id, '{POINTS_EXPIRING}', :shop, e
    FROM (SELECT customer_id, {
        envelope_sql("loyalty", POINTS_EXPIRING, _EXPIRING_PAYLOAD)
    } AS e FROM per_member) x
    """  # noqa: S608 - only constants of this module are interpolated
)


async def expire_points(
    db: Database, outbox: Outbox, now: datetime, workers: int = EXPIRY_WORKERS
) -> tuple[int, int]:
    """Expire every lot due by `now`; returns (members, points). Members are split between `workers`
    concurrent transactions by a hash of their id (disjoint sets: they never wait for each other).
    Each shop touched gets one `loyalty.points_expired` event for the run, with the feed of the new
    balances (services/loyalty/internal_api.py)."""
    run = now.strftime("%Y%m%dT%H%M%S")
    shares = await asyncio.gather(
        *(_expire_share(db, now, run, worker, workers) for worker in range(workers))
    )
    per_shop: dict[str, tuple[int, int]] = {}
    for share in shares:
        for shop_id, (members, points) in share.items():
            known = per_shop.get(shop_id, (0, 0))
            per_shop[shop_id] = (known[0] + members, known[1] + points)
    if per_shop:
        async with db.transaction() as session:
            for shop_id, (members, points) in sorted(per_shop.items()):
                await outbox.add(
                    session,
                    topic=Topic.LOYALTY,
                    event_type=POINTS_EXPIRED,
                    shop_id=shop_id,
                    key=f"{shop_id}:expiry",
                    occurred_at=now,
                    payload=PointsExpiredPayload(
                        run=run,
                        members=members,
                        points=points,
                        balances_path=f"/internal/v1/expiries/{run}/balances.csv",
                    ),
                )
    return sum(m for m, _ in per_shop.values()), sum(p for _, p in per_shop.values())


async def _expire_share(
    db: Database, now: datetime, run: str, worker: int, workers: int
) -> dict[str, tuple[int, int]]:
    per_shop: dict[str, tuple[int, int]] = {}
    share = {"worker": worker, "workers": workers}
    after = {"after_shop": "", "after_customer": ""}
    while True:
        async with db.transaction() as session:
            due = (await session.execute(_DUE_MEMBERS, {"as_of": now, "chunk": CHUNK} | share | after)).all()
            if not due:
                return per_shop
            after = {"after_shop": due[-1].shop_id, "after_customer": due[-1].customer_id}
            keys = {"shops": [r.shop_id for r in due], "customers": [r.customer_id for r in due]}
            await session.execute(_LOCK_MEMBERS, keys)
            for row in await session.execute(_EXPIRE, keys | {"as_of": now, "run": run}):
                known = per_shop.get(row.shop_id, (0, 0))
                per_shop[row.shop_id] = (known[0] + row.members, known[1] + int(row.points))


async def notify_expiring(db: Database, now: datetime) -> int:
    async with db.transaction() as session:
        shops = list(
            await session.scalars(
                text(
                    "SELECT DISTINCT shop_id FROM loyalty.points_lots "
                    "WHERE remaining > 0 AND notified_at IS NULL AND expires_at > :as_of"
                ),
                {"as_of": now},
            )
        )
        sent = 0
        for shop_id in shops:
            settings = await program.load(session, shop_id)
            until = now + timedelta(days=settings.expiry.notice_days)
            result = await session.execute(
                _NOTIFY, {"shop": shop_id, "as_of": now, "until": until, "topic": Topic.LOYALTY.value}
            )
            sent += result.rowcount or 0  # type: ignore[attr-defined]
        return sent


def _birthday_matches(today: date) -> list[tuple[int, int]]:
    days = [(today.month, today.day)]
    leap = today.year % 4 == 0 and (today.year % 100 != 0 or today.year % 400 == 0)
    if (today.month, today.day) == (2, 28) and not leap:
        days.append((2, 29))  # a 29 February birthday is celebrated on the 28th in common years
    return days


async def birthday_bonuses(db: Database, outbox: Outbox, now: datetime) -> int:
    """Members whose birthday is today (shop-local) get the programme's birthday bonus, once a year."""
    paid = 0
    async with db.transaction() as session:
        shop_ids = list(await session.scalars(select(Program.shop_id)))
        for shop_id in shop_ids:
            settings = await program.load(session, shop_id)
            if not settings.birthday_bonus:
                continue
            today = settings.today(now)
            matches = _birthday_matches(today)
            customers = list(
                await session.scalars(
                    select(Member.customer_id).where(
                        Member.shop_id == shop_id,
                        or_(
                            *(
                                (extract("month", Member.birthday) == m)
                                & (extract("day", Member.birthday) == d)
                                for m, d in matches
                            )
                        ),
                    )
                )
            )
            ledger = Ledger(session, outbox, shop_id, settings)
            for customer_id in customers:
                member = await ledger.member(customer_id, create=False)
                if member is None:
                    continue
                booked = await ledger.credit(
                    member,
                    "bonus",
                    settings.birthday_bonus,
                    f"birthday:{customer_id}:{today.year}",
                    note="生日礼",
                )
                paid += booked is not None
    return paid


async def reevaluate_tiers(db: Database) -> int:
    """Programmes with a window and downgrades allowed: members move with their recent spend."""
    changed = 0
    async with db.transaction() as session:
        for shop_id in list(await session.scalars(select(Program.shop_id))):
            settings = await program.load(session, shop_id)
            if settings.reevaluation_days and not settings.never_downgrade:
                changed += await tiers.evaluate(session, shop_id, settings, allow_down=True)
    return changed


async def run_jobs(db: Database, outbox: Outbox) -> dict[str, int] | None:
    """One round of every job; None when another replica holds the round."""
    async with db.transaction() as session:
        if not await session.scalar(_LOCK):
            return None
        now = clock.now()
        # The lock is transaction-scoped: the jobs below run in their own transactions meanwhile,
        # and another replica's round cannot start until this one is done.
        members, points = await expire_points(db, outbox, now)
        done = {
            "expired_members": members,
            "expired_points": points,
            "expiring_notices": await notify_expiring(db, now),
            "birthday_bonuses": await birthday_bonuses(db, outbox, now),
            "tiers_changed": await reevaluate_tiers(db),
        }
    if any(done.values()):
        log.info("loyalty_jobs", **done)
    return done


async def end_activities(db: Database, outbox: Outbox) -> int:
    """Live activities past their window end; a price guess is revealed then (its winners paid)."""
    now = clock.now()
    ended = 0
    async with db.transaction() as session:
        due = list(
            await session.scalars(
                select(Activity)
                .where(
                    or_(
                        (Activity.status == "live") & (Activity.ends_at <= now),
                        (Activity.type == "guess_price")
                        & (Activity.revealed_at.is_(None))
                        & ((Activity.status == "ended") | (Activity.ends_at <= now)),
                    )
                )
                .limit(100)
            )
        )
        for activity in due:
            activity.status = "ended"
            activity.updated_at = now
            ended += 1
            if activity.type == "guess_price" and activity.revealed_at is None:
                await session.flush()
                await activities.reveal(
                    session, outbox, activity, await program.load(session, activity.shop_id)
                )
    if ended:
        log.info("activities_ended", activities=ended)
    return ended


async def _loop(db: Database, outbox: Outbox, every: float, stop: asyncio.Event, job: Job) -> None:
    while not stop.is_set():
        try:
            await job(db, outbox)
        except Exception:  # a failed round is retried on the next one
            log.exception("loyalty_jobs_failed", job=job.__name__)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), every)


async def place_members(db: Database, outbox: Outbox) -> int:
    """Existing members into newly set tiers (services/loyalty/tiers.py)."""
    moved = await tiers.place_members(db)
    if moved:
        log.info("tiers_placed", members_moved=moved)
    return moved


def jobs_lifespan(  # type: ignore[no-untyped-def]
    every: float, activities_every: float, placement_every: float, enabled: bool
):
    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        stop = asyncio.Event()
        db, outbox = app.state.db, app.state.outbox
        tasks = (
            [
                asyncio.create_task(_loop(db, outbox, every, stop, run_jobs)),
                asyncio.create_task(_loop(db, outbox, activities_every, stop, end_activities)),
                asyncio.create_task(_loop(db, outbox, placement_every, stop, place_members)),
            ]
            if enabled
            else []
        )
        try:
            yield
        finally:
            stop.set()
            await asyncio.gather(*tasks)

    return lifespan
