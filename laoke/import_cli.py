"""`laoke import FILE`: upload a history file through the gateway and follow it to the end."""

from __future__ import annotations

import argparse
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
from tqdm import tqdm

POLL_SECONDS = 0.5


def _chunks(path: Path, bar: tqdm, size: int = 1 << 20) -> Iterator[bytes]:
    with path.open("rb") as f:
        while chunk := f.read(size):
            bar.update(len(chunk))
            yield chunk


def _multipart(path: Path, fields: dict[str, str], bar: tqdm) -> tuple[str, Iterator[bytes]]:
    """A streamed multipart body, so a GB file is never read into memory and the bar shows the upload."""
    boundary = f"laoke-{time.time_ns()}"

    def body() -> Iterator[bytes]:
        for name, value in fields.items():
            yield (
                f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'
            ).encode()
        yield (
            f'--{boundary}\r\nContent-Disposition: form-data; name="file"; filename="{path.name}"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n"
        ).encode()
        yield from _chunks(path, bar)
        yield f"\r\n--{boundary}--\r\n".encode()

    return f"multipart/form-data; boundary={boundary}", body()


def run_import(args: argparse.Namespace, gateway: str, api_key: str) -> int:
    path = Path(args.file)
    if not path.is_file():
        raise SystemExit(f"no such file: {path}")
    fields = {"award_points": str(args.award_points).lower(), "dry_run": str(args.dry_run).lower()}
    if args.format:
        fields["format"] = args.format
    if args.channel:
        fields["channel"] = args.channel
    headers = {"Authorization": f"Bearer {api_key}"}
    with httpx.Client(base_url=gateway, headers=headers, timeout=httpx.Timeout(30, read=600)) as client:
        with tqdm(total=path.stat().st_size, unit="B", unit_scale=True, desc="upload ") as bar:
            content_type, body = _multipart(path, fields, bar)
            response = client.post("/api/v1/imports", content=body, headers={"Content-Type": content_type})
        if response.status_code != 202:
            print(f"refused ({response.status_code}): {response.json().get('detail', response.text)}")
            return 1
        status = _follow(client, response.json()["import_id"], path.stat().st_size)
    _report(status)
    return 0 if status["status"] == "completed" else 1


def _follow(client: httpx.Client, import_id: str, size: int) -> dict[str, Any]:
    with tqdm(total=size, unit="B", unit_scale=True, desc="import ") as bar:
        while True:
            status = client.get(f"/api/v1/imports/{import_id}").json()
            bar.update(max(0, status["bytes_read"] - bar.n))
            # As text: tqdm shows a number of 20,000 as 2e+04.
            bar.set_postfix(
                rows=f"{status['rows_total']:,}", failed=f"{status['rows_failed']:,}", step=status["status"]
            )
            if status["status"] in ("completed", "failed"):
                return status
            time.sleep(POLL_SECONDS)


def _report(status: dict[str, Any]) -> None:
    print(
        f"import {status['id']}: {status['status']}"
        + (" (dry run, nothing stored)" if status["dry_run"] else "")
    )
    if status["error"]:
        print(f"  {status['error']}")
    would = "would be " if status["dry_run"] else ""  # a dry run counts what a real one would do
    print(
        f"  rows {status['rows_total']}: {would}imported {status['rows_imported']}, "
        f"{would}skipped {status['rows_skipped']} (already known or repeated), "
        f"failed {status['rows_failed']}; {'new customers it would make' if would else 'new customers'} "
        f"{status['customers_created']}"
    )
    for error in status["first_errors"]:
        print(f"  line {error['line']}: {error['error']}")
    if status["rows_failed"] > len(status["first_errors"]):
        print(f"  all rejected rows: GET /api/v1/imports/{status['id']}/errors.csv")
