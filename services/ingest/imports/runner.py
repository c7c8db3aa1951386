"""Running one import: read → clean → COPY, then land set-based, all in one transaction.

Parsing and cleaning run in a worker thread (Arrow releases the GIL) while the event loop COPYs the
previous batch, so the two cores share the work. The import runs on a connection of its own (with room
for its staging tables in `temp_buffers`); progress (bytes read, rows seen, rows failed) is
written to the `imports` row from a second connection, so `GET /api/v1/imports/{id}` shows it live.
"""

from __future__ import annotations

import asyncio
import io
import shutil
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.compute as pc
import pyarrow.csv as pcsv
import structlog
from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncSession, async_sessionmaker

from laoke.contracts.envelope import event_key
from laoke.contracts.imports import IMPORT_COMPLETED, ImportCompletedPayload
from laoke.contracts.topics import Topic
from laoke.kit import failpoints
from laoke.kit.db import Database
from laoke.kit.outbox import Outbox
from services.ingest.identity import shop_settings
from services.ingest.imports import reader, store
from services.ingest.imports.normalise import Cleaned, clean
from services.ingest.models import Import, ImportRowError

log = structlog.get_logger(__name__)

MAX_STORED_ERRORS = 100_000
HEARTBEAT_SECONDS = 2.0
STALE_AFTER = timedelta(minutes=2)


class _CountingFile(io.RawIOBase):
    """Counts the bytes Arrow has read, for progress."""

    def __init__(self, path: Path) -> None:
        self._file = path.open("rb")
        self.bytes_read = 0

    def readable(self) -> bool:
        return True

    def readinto(self, buffer: Any) -> int:
        n = self._file.readinto(buffer)
        self.bytes_read += n or 0
        return n or 0

    def close(self) -> None:
        self._file.close()
        super().close()


@dataclass
class Progress:
    rows_total: int = 0
    rows_failed: int = 0
    error_lines: list[int] = field(default_factory=list)
    error_messages: list[str] = field(default_factory=list)
    error_raw: list[str] = field(default_factory=list)

    def add_errors(self, lines: list[int], messages: list[str], raw: list[str]) -> None:
        self.rows_failed += len(lines)
        room = MAX_STORED_ERRORS - len(self.error_lines)
        if room > 0:
            self.error_lines += lines[:room]
            self.error_messages += messages[:room]
            self.error_raw += raw[:room]


def _line_numbers(start: int, count: int, invalid_lines: list[int]) -> pa.Array:
    """Spreadsheet line of each good row (header = line 1), skipping the lines of malformed rows."""
    lines = pa.array(range(start, start + count), pa.int64())
    for bad in sorted(invalid_lines)[:1000]:
        lines = pc.if_else(pc.greater_equal(lines, bad), pc.add(lines, 1), lines)
    return lines


class ImportJob:
    def __init__(
        self,
        db: Database,
        landing: async_sessionmaker[AsyncSession],
        outbox: Outbox,
        import_id: str,
        shop_id: str,
        layout: reader.Layout,
        *,
        channel: str | None,
        dry_run: bool,
        award_points: bool,
    ) -> None:
        self.db = db
        self.landing = landing
        self.outbox = outbox
        self.import_id = import_id
        self.shop_id = shop_id
        self.layout = layout
        self.channel = channel
        self.dry_run = dry_run
        self.award_points = award_points
        self.progress = Progress()
        self._counting: _CountingFile | None = None
        self._last_beat = 0.0

    async def run(self) -> None:
        started = time.monotonic()
        await self._update(status="parsing", started_at=datetime.now(UTC), heartbeat_at=datetime.now(UTC))
        try:
            outcome = await self._run()
        except reader.FileProblem as exc:
            await self._fail(str(exc))
        except Exception as exc:  # the import must end in a state the owner can read, whatever broke
            log.exception("import_failed", import_id=self.import_id)
            await self._fail(f"the import stopped unexpectedly ({type(exc).__name__}); nothing was imported")
        else:
            seconds = round(time.monotonic() - started, 2)
            log.info("import_finished", import_id=self.import_id, seconds=seconds, **outcome)
        finally:
            shutil.rmtree(self.layout.path.parent, ignore_errors=True)

    async def _run(self) -> dict[str, Any]:
        layout = self.layout
        async with self.landing() as session:
            transaction = await session.begin()
            try:
                settings = await shop_settings(session, self.shop_id)
                await store.create_stage(session)
                await self._stream(session, layout, settings.timezone)
                await self._update(
                    status="storing",
                    rows_total=self.progress.rows_total,
                    rows_failed=self.progress.rows_failed,
                    bytes_read=self._bytes_read(),
                )
                landed = await store.land(
                    session,
                    shop_id=self.shop_id,
                    import_id=self.import_id,
                    merge=settings.merge_by_mobile,
                    sum_items=layout.fmt.name == "shopify",
                )
                imported = landed.inserted + landed.updated
                final = {
                    "status": "completed",
                    "rows_total": self.progress.rows_total,
                    "rows_imported": imported,
                    "rows_skipped": landed.rows - imported,
                    "rows_failed": self.progress.rows_failed,
                    "customers_created": landed.customers_created,
                    "placed_from": landed.placed_from,
                    "placed_to": landed.placed_to,
                    "bytes_read": self._bytes_read(),
                    "finished_at": datetime.now(UTC),
                }
                if not self.dry_run and imported:
                    await self.outbox.add(
                        session,
                        topic=Topic.ORDERS,
                        event_type=IMPORT_COMPLETED,
                        shop_id=self.shop_id,
                        key=event_key(self.shop_id, f"import:{self.import_id}"),
                        payload=ImportCompletedPayload(
                            import_id=self.import_id,
                            rows_imported=imported,
                            customers_created=landed.customers_created,
                            placed_from=landed.placed_from,
                            placed_to=landed.placed_to,
                            award_points=self.award_points,
                            orders_path=f"/internal/v1/imports/{self.import_id}/orders.bin",
                        ),
                    )
                failpoints.hit("import.before_commit")
                if self.dry_run:
                    await transaction.rollback()  # the counts are exact; the data goes
                    async with self.db.transaction() as report:
                        await self._finish(report, final)
                else:
                    # The final state commits with the data: a completed import is never missing its orders.
                    await self._finish(session, final)
                    await transaction.commit()
            except BaseException:
                await transaction.rollback()
                raise
        return {k: v for k, v in final.items() if k.startswith("rows")}

    def _bytes_read(self) -> int:
        return self._counting.bytes_read if self._counting else 0

    async def _stream(self, session: Any, layout: reader.Layout, zone: str) -> None:
        """Clean batches in a thread while the previous one is COPYed."""
        invalid = reader.InvalidRows()
        self._counting = _CountingFile(layout.path)
        channel = self.channel or layout.fmt.channel
        batches = reader.batches(layout, invalid, self._counting)
        seen = 0
        invalid_before = 0

        def next_chunk() -> tuple[Cleaned, bytes] | None:
            nonlocal seen, invalid_before
            try:
                batch = next(batches)
            except StopIteration:
                return None
            start = seen + 2 + invalid_before
            within = [n for n in invalid.lines[invalid_before:] if n >= start]
            lines = _line_numbers(start, batch.num_rows, within)
            invalid_before = len(invalid.lines)
            seen += batch.num_rows
            cleaned = clean(batch, lines, layout.fmt, zone, channel)
            buffer = pa.BufferOutputStream()
            pcsv.write_csv(
                cleaned.rows, buffer, pcsv.WriteOptions(include_header=False, quoting_style="needed")
            )
            return cleaned, buffer.getvalue().to_pybytes()

        pending = asyncio.create_task(asyncio.to_thread(next_chunk))
        while True:
            chunk = await pending
            if chunk is None:
                break
            pending = asyncio.create_task(asyncio.to_thread(next_chunk))
            cleaned, csv_bytes = chunk
            self.progress.rows_total += cleaned.rows.num_rows + len(cleaned.error_lines)
            self.progress.add_errors(cleaned.error_lines, cleaned.error_messages, cleaned.error_raw)
            if csv_bytes:
                await store.copy_rows(session, csv_bytes)
            await self._beat()
        if invalid.lines:
            self.progress.rows_total += len(invalid.lines)
            self.progress.add_errors(
                invalid.lines,
                [
                    f"the row has a different number of columns than the header ({text[:60]!r})"
                    for text in invalid.texts
                ],
                invalid.texts,
            )

    async def _beat(self) -> None:
        now = time.monotonic()
        if now - self._last_beat < HEARTBEAT_SECONDS:
            return
        self._last_beat = now
        await self._update(
            rows_total=self.progress.rows_total,
            rows_failed=self.progress.rows_failed,
            heartbeat_at=datetime.now(UTC),
        )

    async def _finish(self, session: Any, final: dict[str, Any]) -> None:
        await self._store_errors(session)
        await session.execute(update(Import).where(Import.id == self.import_id).values(**final))

    async def _store_errors(self, session: Any) -> None:
        if not self.progress.error_lines:
            return
        rows = [
            {"import_id": self.import_id, "line": line, "error": message, "raw": raw}
            for line, message, raw in zip(
                self.progress.error_lines, self.progress.error_messages, self.progress.error_raw, strict=True
            )
        ]
        # A line can fail twice only when a malformed row's number collides; keep the first.
        unique = list({row["line"]: row for row in reversed(rows)}.values())
        for start in range(0, len(unique), 5000):
            await session.execute(insert(ImportRowError), unique[start : start + 5000])

    async def _update(self, **values: Any) -> None:
        async with self.db.transaction() as session:
            await session.execute(update(Import).where(Import.id == self.import_id).values(**values))

    async def _fail(self, message: str) -> None:
        await self._update(
            status="failed",
            error=message,
            rows_imported=0,
            rows_total=self.progress.rows_total,
            rows_failed=self.progress.rows_failed,
            finished_at=datetime.now(UTC),
        )
