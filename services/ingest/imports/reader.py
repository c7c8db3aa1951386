"""Reading an uploaded file: what it is (CSV in which encoding, or XLSX), and its rows in batches.

CSV is read by Arrow's streaming reader a few MB at a time, transcoding GBK/GB18030 on the way, so
memory stays flat however large the file. XLSX is turned into a UTF-8 CSV next to it first (calamine
streams rows; a sheet holds at most ~1M rows anyway) and then read the same way.
"""

from __future__ import annotations

import codecs
import csv
import io
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import date, datetime
from pathlib import Path

import pyarrow as pa
import pyarrow.csv as pcsv

from services.ingest.imports.formats import FORMATS, FileFormat, detect, map_columns

# Arrow's reader holds on to memory in proportion to its block size (measured: 1 MiB blocks keep a
# million-row file under ~140 MiB, 8 MiB blocks reach ~500 MiB), so it reads small blocks and we
# group them into batches big enough that per-batch overhead does not matter.
BLOCK_SIZE = 1 << 20
BATCH_ROWS = 50_000
_SNIFF = 256 << 10


class FileProblem(ValueError):
    """The file as a whole cannot be imported (the message says why, in the owner's terms)."""


@dataclass
class Layout:
    path: Path
    encoding: str  # as Arrow is told to read it
    encoding_label: str  # as reported to the user
    fmt: FileFormat
    columns: dict[str, str]  # canonical → header in the file
    was_xlsx: bool = False


@dataclass
class InvalidRows:
    """Rows whose column count does not match the header (garbage in the middle of a file)."""

    lines: list[int] = field(default_factory=list)
    texts: list[str] = field(default_factory=list)

    def handler(self, row: pcsv.InvalidRow) -> str:
        self.lines.append(row.number if row.number is not None else -1)
        self.texts.append(row.text[:500])
        return "skip"


def _is_xlsx(head: bytes) -> bool:
    return head.startswith(b"PK\x03\x04")


def sniff_encoding(head: bytes) -> tuple[str, str]:
    """(encoding for Arrow, label). UTF-8 with or without BOM, else GB18030 (a superset of GBK)."""
    if head.startswith(codecs.BOM_UTF8):
        return "utf-8", "utf-8-sig"
    if head.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
        raise FileProblem("the file is UTF-16 text; save it as CSV (UTF-8 or GBK) or as .xlsx")
    cut = head.rfind(b"\n") + 1 or len(head)
    try:
        head[:cut].decode("utf-8")
        return "utf-8", "utf-8"
    except UnicodeDecodeError:
        pass
    try:
        head[:cut].decode("gb18030")
    except UnicodeDecodeError as exc:
        raise FileProblem(
            f"the file is neither UTF-8 nor GBK/GB18030 text (undecodable bytes at offset {exc.start})"
        ) from exc
    return "gb18030", "gbk"


def _cell(value: object) -> str:
    if value is None:
        return ""
    if isinstance(value, float) and value.is_integer():
        return str(int(value))
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S")
    if isinstance(value, date):
        return value.strftime("%Y-%m-%d")
    return str(value)


def xlsx_to_csv(path: Path, target: Path) -> Path:
    from python_calamine import CalamineWorkbook

    try:
        workbook = CalamineWorkbook.from_path(str(path))
        sheet = workbook.get_sheet_by_index(0)
        rows = sheet.iter_rows()
        with target.open("w", encoding="utf-8", newline="") as out:
            writer = csv.writer(out)
            for row in rows:
                writer.writerow([_cell(v) for v in row])
    except Exception as exc:  # calamine raises its own error types for every kind of broken file
        raise FileProblem(
            f"the file is not a readable .xlsx spreadsheet ({type(exc).__name__}: {exc})"
        ) from exc
    return target


def inspect(path: Path, requested_format: str | None, workdir: Path) -> Layout:
    size = path.stat().st_size
    if size == 0:
        raise FileProblem("the file is empty (0 bytes)")
    with path.open("rb") as f:
        head = f.read(_SNIFF)
    was_xlsx = False
    if _is_xlsx(head) or path.suffix.lower() == ".xlsx":
        path = xlsx_to_csv(path, workdir / (path.name + ".csv"))
        was_xlsx = True
        with path.open("rb") as f:
            head = f.read(_SNIFF)
        if not head.strip():
            raise FileProblem("the spreadsheet's first sheet is empty")
    if b"\x00" in head:
        raise FileProblem("the file is not CSV text or an .xlsx spreadsheet")
    encoding, label = sniff_encoding(head)
    text = head.decode("utf-8-sig" if encoding == "utf-8" else encoding, errors="replace")
    header = next(csv.reader(io.StringIO(text.split("\n", 1)[0].rstrip("\r"))), [])
    fmt = FORMATS[requested_format] if requested_format else detect(header)
    if fmt is None:
        raise FileProblem(
            "cannot tell the file's format from its header row; pass format=taobao, shopify or generic"
        )
    columns, missing = map_columns(fmt, header)
    if missing:
        names = ", ".join(f"{fmt.label(m)} ({m})" for m in missing)
        raise FileProblem(f"missing required column: {names}")
    return Layout(path, encoding, "xlsx" if was_xlsx else label, fmt, columns, was_xlsx)


def batches(
    layout: Layout, invalid: InvalidRows, source: io.RawIOBase | None = None
) -> Iterator[pa.RecordBatch]:
    """The file's rows, only the columns the format uses, all as text, renamed to canonical names."""
    wanted = list(dict.fromkeys(layout.columns.values()))
    reader = pcsv.open_csv(
        source if source is not None else str(layout.path),
        read_options=pcsv.ReadOptions(encoding=layout.encoding, block_size=BLOCK_SIZE, use_threads=False),
        parse_options=pcsv.ParseOptions(newlines_in_values=True, invalid_row_handler=invalid.handler),
        convert_options=pcsv.ConvertOptions(
            include_columns=wanted,
            column_types={name: pa.string() for name in wanted},
            strings_can_be_null=True,
            quoted_strings_can_be_null=True,
        ),
    )
    rename = {header: canonical for canonical, header in layout.columns.items()}
    pending: list[pa.RecordBatch] = []
    rows = 0
    for batch in reader:
        pending.append(batch)
        rows += batch.num_rows
        if rows >= BATCH_ROWS:
            yield _joined(pending, rename)
            pending, rows = [], 0
    if pending:
        yield _joined(pending, rename)


def _joined(batches: list[pa.RecordBatch], rename: dict[str, str]) -> pa.RecordBatch:
    table = pa.Table.from_batches(batches).combine_chunks()
    joined = table.to_batches()[0] if table.num_rows else batches[0]
    return joined.rename_columns([rename[name] for name in joined.schema.names])
