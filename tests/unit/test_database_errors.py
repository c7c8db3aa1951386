"""Which database failures are "unavailable, retry" (503, consumer retries without dead-lettering)."""

from __future__ import annotations

import asyncpg
from sqlalchemy.exc import DBAPIError, OperationalError

from laoke.kit.errors import database_unavailable


class _Adapted(Exception):
    """Stands for the driver adapter's error, which carries the server's SQLSTATE."""

    def __init__(self, sqlstate: str | None = None) -> None:
        super().__init__("adapted")
        self.sqlstate = sqlstate


def _wrapped(orig: BaseException) -> DBAPIError:
    return DBAPIError("SELECT 1", {}, orig)


def test_a_connection_closed_mid_request_is_unavailable() -> None:
    adapted = _Adapted()
    adapted.__cause__ = asyncpg.exceptions.ConnectionDoesNotExistError("connection was closed")
    assert database_unavailable(_wrapped(adapted))
    reset = _Adapted()
    reset.__cause__ = ConnectionResetError(104, "Connection reset by peer")
    assert database_unavailable(_wrapped(reset))


def test_server_shutdown_and_connection_states_are_unavailable() -> None:
    for state in ("08006", "08003", "57P01", "57P02", "57P03"):
        assert database_unavailable(_wrapped(_Adapted(state))), state
    assert database_unavailable(OperationalError("SELECT 1", {}, _Adapted()))
    assert database_unavailable(OSError("no route"))


def test_bad_input_and_bugs_are_not_unavailable() -> None:
    assert not database_unavailable(_wrapped(_Adapted("22001")))  # value too long: the input's fault
    assert not database_unavailable(_wrapped(_Adapted("42P01")))  # undefined table: a bug
    assert not database_unavailable(ValueError("nope"))
