"""`laoke import FILE` against a running gateway: uploads, follows progress, reports, exit code."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from laoke.cli import main
from laoke.testing.plugin import ShopClient
from laoke.testing.servers import ServerSet
from laoke.testing.taobao_export import write


async def test_the_cli_imports_a_file_and_reports(
    shop: ShopClient, stack: ServerSet, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write(tmp_path / "订单报表.csv", 300, encoding="gbk")
    argv = ["import", str(path), "--gateway", stack.gateway_url, "--api-key", shop.api_key]
    assert await asyncio.to_thread(main, argv) == 0
    out = capsys.readouterr().out
    assert ": completed" in out and "rows 300: imported 300" in out

    again = await asyncio.to_thread(main, [*argv, "--dry-run"])
    assert again == 0
    assert "would be imported 0, would be skipped 300" in capsys.readouterr().out

    empty = tmp_path / "empty.csv"
    empty.write_bytes(b"")
    assert await asyncio.to_thread(main, ["import", str(empty), "--gateway", stack.gateway_url,
                                          "--api-key", shop.api_key]) == 1  # fmt: skip
    assert "the file is empty" in capsys.readouterr().out
