"""HTTP API of history imports: upload, progress, errors, and the bulk feed downstream services read."""

from __future__ import annotations

import asyncio
import contextlib
import csv
import io
import re
import shutil
from collections.abc import AsyncIterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Literal

from fastapi import APIRouter, FastAPI, File, Form, Query, Request, UploadFile, status
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field
from sqlalchemy import or_, select, update

from laoke.contracts.imports import IMPORT_FEED_COLUMNS
from laoke.kit.bulk import binary_feed, csv_feed
from laoke.kit.db import Database, SessionDep
from laoke.kit.errors import ERROR_RESPONSES, NotFound, PayloadTooLarge, Unprocessable
from laoke.kit.ids import new_id
from laoke.kit.service import CallerDep
from services.ingest.imports import reader
from services.ingest.imports.runner import STALE_AFTER, ImportJob
from services.ingest.models import Import, ImportRowError

router = APIRouter(prefix="/api/v1/imports", tags=["imports"], responses=ERROR_RESPONSES)
internal = APIRouter(prefix="/internal/v1/imports", tags=["internal"], include_in_schema=False)

FIRST_ERRORS = 20
_UNSAFE = re.compile(r"[^\w.\-]+")


class ImportAccepted(BaseModel):
    import_id: str = Field(examples=["imp_5d1f0c2b9a7e4c31"])
    status: str = Field(examples=["queued"])
    status_url: str = Field(examples=["/api/v1/imports/imp_5d1f0c2b9a7e4c31"])


class ImportRowErrorOut(BaseModel):
    line: int = Field(description="Line in the file; the header is line 1")
    error: str = Field(examples=["买家实际支付金额: not an amount: abc"])
    raw: str | None = Field(description="The row's order id, amounts and status as written")


class ImportOut(BaseModel):
    id: str
    filename: str
    format: str = Field(examples=["taobao"])
    encoding: str | None = Field(examples=["gbk"])
    status: Literal["queued", "parsing", "storing", "completed", "failed"]
    dry_run: bool
    award_points: bool
    size_bytes: int
    bytes_read: int = Field(description="Progress of reading the file")
    rows_total: int
    rows_imported: int = Field(description="Orders created or brought up to date")
    rows_skipped: int = Field(
        description="Already known in this or a newer state, or listed twice in the file"
    )
    rows_failed: int
    customers_created: int
    error: str | None = Field(description="Why a failed import failed; nothing of it was imported")
    first_errors: list[ImportRowErrorOut]
    placed_from: datetime | None
    placed_to: datetime | None
    created_at: datetime
    started_at: datetime | None
    finished_at: datetime | None


class ImportList(BaseModel):
    items: list[ImportOut]


def _out(row: Import, errors: list[ImportRowError]) -> ImportOut:
    return ImportOut(
        id=row.id,
        filename=row.filename,
        format=row.format,
        encoding=row.encoding,
        status=row.status,  # type: ignore[arg-type]
        dry_run=row.dry_run,
        award_points=row.award_points,
        size_bytes=row.size_bytes,
        bytes_read=row.bytes_read,
        rows_total=row.rows_total,
        rows_imported=row.rows_imported,
        rows_skipped=row.rows_skipped,
        rows_failed=row.rows_failed,
        customers_created=row.customers_created,
        error=row.error,
        first_errors=[ImportRowErrorOut(line=e.line, error=e.error, raw=e.raw) for e in errors],
        placed_from=row.placed_from,
        placed_to=row.placed_to,
        created_at=row.created_at,
        started_at=row.started_at,
        finished_at=row.finished_at,
    )


def _save_upload(upload: UploadFile, target: Path, limit: int) -> int:
    target.parent.mkdir(parents=True, exist_ok=True)
    size = 0
    with target.open("wb") as out:
        while chunk := upload.file.read(1 << 20):
            size += len(chunk)
            if size > limit:
                raise PayloadTooLarge(f"the file is larger than the import limit of {limit} bytes")
            out.write(chunk)
    return size


class ImportRunner:
    """The imports this replica is running; at most `imports_at_once` run together, others queue."""

    def __init__(self, db: Database, outbox: object, at_once: int, temp_buffers_mib: int) -> None:
        self.db = db
        self.landing = db.sessions_on_own_connections(temp_buffers=f"{temp_buffers_mib}MB")
        self.outbox = outbox
        self.slots = asyncio.Semaphore(at_once)
        self.tasks: set[asyncio.Task[None]] = set()

    def start(self, job: ImportJob) -> None:
        async def run() -> None:
            async with self.slots:
                await job.run()

        task = asyncio.create_task(run(), name=f"import-{job.import_id}")
        self.tasks.add(task)
        task.add_done_callback(self.tasks.discard)

    async def fail_interrupted(self) -> None:
        """Imports whose process died mid-way (their transaction rolled back with it) say so."""
        cutoff = datetime.now(UTC) - STALE_AFTER
        async with self.db.transaction() as session:
            await session.execute(
                update(Import)
                .where(
                    Import.status.in_(("queued", "parsing", "storing")),
                    or_(
                        Import.heartbeat_at < cutoff,
                        Import.heartbeat_at.is_(None) & (Import.created_at < cutoff),
                    ),
                )
                .values(
                    status="failed",
                    error="interrupted: ingest stopped during the import; "
                    "nothing was imported, upload it again",
                    rows_imported=0,
                    finished_at=datetime.now(UTC),
                )
            )

    async def stop(self) -> None:
        for task in self.tasks:
            task.cancel()
        if self.tasks:
            await asyncio.wait(self.tasks, timeout=10)


@contextlib.asynccontextmanager
async def imports_lifespan(app: FastAPI) -> AsyncIterator[None]:
    settings = app.state.settings
    runner = ImportRunner(
        app.state.db, app.state.outbox, settings.imports_at_once, settings.import_temp_buffers_mib
    )
    app.state.imports = runner
    await runner.fail_interrupted()
    try:
        yield
    finally:
        await runner.stop()


@router.post(
    "",
    response_model=ImportAccepted,
    status_code=status.HTTP_202_ACCEPTED,
    summary="Import order history from a file",
    description="Multipart upload of a Taobao seller export (已卖出的宝贝 / 订单报表, CSV in GBK, GB18030 or "
    "UTF-8 with or without BOM, or .xlsx), a Shopify orders export, or Laoke's generic CSV. `format` is "
    "detected from the header row when omitted. The import runs in the background: poll `status_url`. "
    "Bad rows are reported with their line and skipped; good rows land; importing the same file again "
    "changes nothing. Historical orders keep their own timestamps. With `dry_run` nothing is stored but "
    "the counts are exact. `award_points` (default false) lets loyalty award points for imported "
    "completed orders. One `import.completed` event is published instead of one event per order.",
)
async def create_import(
    request: Request,
    caller: CallerDep,
    file: Annotated[UploadFile, File(description="CSV or XLSX")],
    format: Annotated[Literal["taobao", "shopify", "generic"] | None, Form()] = None,
    channel: Annotated[
        Literal["taobao", "tmall", "jd", "pinduoduo", "douyin", "shopify", "woocommerce", "api"] | None,
        Form(description="Channel the orders came from; defaults to the format's (taobao, shopify, api)"),
    ] = None,
    award_points: Annotated[bool, Form()] = False,
    dry_run: Annotated[bool, Form()] = False,
) -> ImportAccepted:
    settings = request.app.state.settings
    import_id = new_id("imp")
    filename = (file.filename or "upload")[-200:]
    target = Path(settings.import_dir) / import_id / (_UNSAFE.sub("_", filename) or "upload")
    try:
        size = await asyncio.to_thread(_save_upload, file, target, settings.import_max_bytes)
        # File-level problems (empty, not CSV/XLSX, wrong encoding, a missing column) are answered now;
        # only row-level work is left for the background.
        layout = await asyncio.to_thread(reader.inspect, target, format, target.parent)
    except reader.FileProblem as exc:
        shutil.rmtree(target.parent, ignore_errors=True)
        raise Unprocessable(str(exc)) from exc
    except BaseException:
        shutil.rmtree(target.parent, ignore_errors=True)
        raise
    db: Database = request.app.state.db
    async with db.transaction() as session:
        session.add(
            Import(
                id=import_id,
                shop_id=caller.shop_id,
                filename=filename,
                format=layout.fmt.name,
                encoding=layout.encoding_label,
                status="queued",
                dry_run=dry_run,
                award_points=award_points,
                size_bytes=size,
            )
        )
    runner: ImportRunner = request.app.state.imports
    runner.start(
        ImportJob(
            db,
            runner.landing,
            request.app.state.outbox,
            import_id,
            caller.shop_id,
            layout,
            channel=channel,
            dry_run=dry_run,
            award_points=award_points,
        )
    )
    return ImportAccepted(import_id=import_id, status="queued", status_url=f"/api/v1/imports/{import_id}")


async def _load(session: SessionDep, shop_id: str, import_id: str) -> Import:
    row = await session.scalar(select(Import).where(Import.shop_id == shop_id, Import.id == import_id))
    if row is None:
        raise NotFound(f"import {import_id} not found")
    return row


@router.get("/{import_id}", response_model=ImportOut, summary="Progress and outcome of an import")
async def get_import(import_id: str, caller: CallerDep, session: SessionDep) -> ImportOut:
    row = await _load(session, caller.shop_id, import_id)
    errors = await session.scalars(
        select(ImportRowError)
        .where(ImportRowError.import_id == import_id)
        .order_by(ImportRowError.line)
        .limit(FIRST_ERRORS)
    )
    return _out(row, list(errors))


@router.get("", response_model=ImportList, summary="Recent imports, newest first")
async def list_imports(
    caller: CallerDep, session: SessionDep, limit: Annotated[int, Query(ge=1, le=100)] = 20
) -> ImportList:
    rows = await session.scalars(
        select(Import).where(Import.shop_id == caller.shop_id).order_by(Import.created_at.desc()).limit(limit)
    )
    return ImportList(items=[_out(r, []) for r in rows])


@router.get(
    "/{import_id}/errors.csv",
    summary="Every rejected row of an import, as CSV",
    description="Columns line, error, raw; UTF-8 with BOM so Excel shows Chinese correctly. At most "
    "100,000 rows are kept per import.",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}}},
)
async def import_errors_csv(import_id: str, caller: CallerDep, session: SessionDep) -> StreamingResponse:
    await _load(session, caller.shop_id, import_id)
    rows = (
        await session.execute(
            select(ImportRowError.line, ImportRowError.error, ImportRowError.raw)
            .where(ImportRowError.import_id == import_id)
            .order_by(ImportRowError.line)
        )
    ).all()

    def render() -> bytes:
        out = io.StringIO()
        writer = csv.writer(out)
        writer.writerow(["line", "error", "raw"])
        writer.writerows(rows)
        return "\ufeff".encode() + out.getvalue().encode()

    body = await asyncio.to_thread(render)
    return StreamingResponse(
        iter([body]),
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{import_id}-errors.csv"'},
    )


# Feed columns that are not plain order columns. A phone that is already a bare mobile number (nearly
# all of them) skips the two regular expressions that clean the others: 6.9 s → 1.6 s of a million-order
# feed, same numbers out.
_FEED_EXPRESSIONS = {
    "receiver_name": "receiver->>'name'",
    "mobile": (
        "CASE WHEN receiver->>'phone' ~ '^1[3-9][0-9]{9}$' THEN receiver->>'phone' "
        "ELSE substring(regexp_replace(receiver->>'phone', '\\D', '', 'g') "
        "FROM '^(?:0?86)?(1[3-9]\\d{9})$') END"
    ),
    "province": "receiver->>'province'",
    "city": "receiver->>'city'",
}
# Each column cast to the type its readers declare: the binary feed carries values, not their types.
_FEED_SELECT = {
    name: f"CAST({_FEED_EXPRESSIONS.get(name, name)} AS {kind}) AS {name}"
    for name, kind in IMPORT_FEED_COLUMNS
}
FeedColumns = Annotated[
    str | None,
    Query(
        description="The columns to stream, comma-separated, in the order wanted (default: every one of "
        "`IMPORT_FEED_COLUMNS`). A reader that needs fewer spares ingest the buyer's contact columns, "
        "which are read out of each order's receiver.",
        examples=["id,customer_id,status,paid_fen"],
    ),
]


def _order_feed(columns: str | None) -> str:
    """The feed's query, in no particular order: its readers absorb it set-based (sorting a million rows
    cost a second)."""
    wanted = columns.split(",") if columns else list(_FEED_SELECT)
    unknown = [name for name in wanted if name not in _FEED_SELECT]
    if unknown or len(set(wanted)) != len(wanted):
        raise Unprocessable(
            f"columns must name each of {', '.join(_FEED_SELECT)} at most once; got {columns}"
        )
    return (
        f"SELECT {', '.join(_FEED_SELECT[name] for name in wanted)} FROM ingest.orders "  # noqa: S608 - known columns
        "WHERE shop_id = $1 AND import_id = $2"
    )


@internal.get("/{import_id}/orders.bin")
async def import_orders_feed(
    import_id: str, caller: CallerDep, request: Request, columns: FeedColumns = None
) -> StreamingResponse:
    """Every order an import wrote (`IMPORT_FEED_COLUMNS`, or the `columns` asked for), streamed from
    PostgreSQL's COPY in its binary format: the feed `import.completed` names.

    For other services answering `import.completed` (internal credential only; not routed publicly)."""
    return binary_feed(request.app.state.db, _order_feed(columns), caller.shop_id, import_id)


@internal.get("/{import_id}/orders.csv")
async def import_orders_csv(
    import_id: str, caller: CallerDep, request: Request, columns: FeedColumns = None
) -> StreamingResponse:
    """The same feed as CSV with a header: readable by a person, and what `import.completed` named
    before the binary feed (an event still queued from then keeps working)."""
    return csv_feed(request.app.state.db, _order_feed(columns), caller.shop_id, import_id)
