from __future__ import annotations

import io
import json
import sys

import structlog

from laoke.kit.logging import configure_logging, mask_any, mask_text


def test_phone_and_email_in_free_text_are_masked() -> None:
    text = "buyer 13812345678 (+8613912345678) wrote from li.lei@example.com"
    masked = mask_text(text)
    assert "13812345678" not in masked and "13912345678" not in masked
    assert "138****5678" in masked
    assert "li.lei@" not in masked and "l***@example.com" in masked
    for written in ("138 1234 5678", "138-1234-5678", "+86 138 1234 5678", "收件人电话13812345678"):
        assert "1234" not in mask_text(written).replace("138****5678", ""), written
    assert mask_text("ord_5d1f0c2b9a7e4c31 shipped") == "ord_5d1f0c2b9a7e4c31 shipped"


def test_personal_fields_are_masked_whatever_they_hold() -> None:
    masked = mask_any(
        {
            "mobile": "13812345678",
            "email": "a@b.cn",
            "address": "杭州市西湖区1号",
            "birthday": "1990-01-01",
            "n": 3,
        }
    )
    assert masked == {
        "mobile": "138****5678",
        "email": "a***@b.cn",
        "address": "***",
        "birthday": "***",
        "n": 3,
    }


def test_log_lines_are_json_and_masked(monkeypatch: object) -> None:
    buffer = io.StringIO()
    configure_logging("unit")
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(buffer))
    structlog.get_logger("t").info("order_received", receiver_phone="13812345678", note="call 13987654321")
    line = json.loads(buffer.getvalue().strip().splitlines()[-1])
    assert line["receiver_phone"] == "138****5678"
    assert "13987654321" not in line["note"]
    assert line["service"] == "unit" and line["level"] == "info"
    structlog.configure(logger_factory=structlog.PrintLoggerFactory(sys.stdout))
