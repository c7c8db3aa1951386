"""Structured JSON logs with request/correlation/event ids, and personal data masked before it is written.

Masking happens in a structlog processor, so no call site can forget it: values under personal-data
keys are masked whatever they hold, and phone numbers or e-mail addresses embedded in any other string
(an exception message, a payload dump) are masked by pattern.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import Mapping
from typing import Any

import structlog

from laoke.kit.jsonutil import dumps
from laoke.kit.pii import mask_email, mask_phone

_PII_KEYS = frozenset(
    {"phone", "mobile", "receiver_phone", "email", "address", "receiver_address", "birthday", "id_card"}
)
_MOBILE = re.compile(r"(?<!\d)(\+?86[ -]?)?(1[3-9]\d)[ -]?(\d{4})[ -]?(\d{4})(?!\d)")
_EMAIL = re.compile(r"([A-Za-z0-9._%+-])[A-Za-z0-9._%+-]*@([A-Za-z0-9.-]+\.[A-Za-z]{2,})")


# Every string of every log line passes through here; most hold neither a phone-like run of digits nor
# an "@", and one
# search finds that out far more cheaply than two substitutions.
_SUSPECT = re.compile(r"\d{3}[ -]?\d{4}[ -]?\d{4}|@")


def mask_text(text: str) -> str:
    """Mask phone numbers and e-mail addresses wherever they appear in free text."""
    if _SUSPECT.search(text) is None:
        return text
    text = _MOBILE.sub(lambda m: f"{m.group(2)}****{m.group(4)}", text)
    return _EMAIL.sub(lambda m: f"{m.group(1)}***@{m.group(2)}", text)


def _mask_value(key: str, value: Any) -> Any:
    if key in _PII_KEYS and value not in (None, ""):
        if key in ("phone", "mobile", "receiver_phone"):
            return mask_phone(str(value))
        if key == "email":
            return mask_email(str(value))
        return "***"
    return mask_any(value)


def mask_any(value: Any) -> Any:
    if isinstance(value, str):
        return mask_text(value)
    if isinstance(value, Mapping):
        return {k: _mask_value(str(k), v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [mask_any(v) for v in value]
    return value


def _mask_processor(_: Any, __: str, event_dict: dict[str, Any]) -> dict[str, Any]:
    return {k: _mask_value(k, v) for k, v in event_dict.items()}


def _render(_: Any, __: str, event_dict: dict[str, Any]) -> str:
    return dumps(event_dict).decode()


class _Stdout:
    """Whatever `sys.stdout` is when a line is written, not when logging was configured (a test that
    captures output sees every line; so would a process that redirects its stdout later)."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


def configure_logging(service: str, level: str = "INFO") -> None:
    """JSON lines on stdout; the standard library's loggers (uvicorn, aiokafka) go through the same path."""
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        structlog.processors.format_exc_info,
        _mask_processor,
    ]
    structlog.configure(
        processors=[*shared, _render],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(_Stdout()),  # type: ignore[arg-type]
        cache_logger_on_first_use=True,
    )
    structlog.contextvars.bind_contextvars(service=service)
    handler = logging.StreamHandler(_Stdout())  # type: ignore[arg-type]
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, _render],
            foreign_pre_chain=[*shared, structlog.stdlib.add_logger_name],
        )
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    # Access lines come from our own middleware (with ids); aiokafka is chatty at INFO.
    logging.getLogger("uvicorn.access").disabled = True
    logging.getLogger("aiokafka").setLevel(logging.WARNING)
    for chatty in ("httpx", "httpx2", "httpcore", "httpcore2"):  # one line per upstream call
        logging.getLogger(chatty).setLevel(logging.WARNING)
