"""Failpoints: named places where a test (or the fault-injection suite) can make a process crash.

`LAOKE_FAILPOINTS="consumer.after_db_commit=exit"` makes the process exit at that point as if
SIGKILLed; `=raise` raises `FailpointCrash` instead (for in-process tests: a BaseException, so no
`except Exception` on the way up can swallow it); `=error` raises an ordinary `FailpointError`, a
failure the code is expected to handle. Unset, `hit()` is a dictionary lookup.
"""

from __future__ import annotations

import os

_ACTIVE: dict[str, str] = {}


class FailpointCrash(BaseException):
    """A simulated crash: nothing after the failpoint runs, nothing is cleaned up."""


class FailpointError(RuntimeError):
    """A simulated failure (a lost connection, a full disk) that the code must handle."""


def load_from_env() -> None:
    _ACTIVE.clear()
    for item in filter(None, os.environ.get("LAOKE_FAILPOINTS", "").split(",")):
        name, _, action = item.partition("=")
        _ACTIVE[name.strip()] = action.strip() or "raise"


def arm(name: str, action: str = "raise") -> None:
    _ACTIVE[name] = action


def disarm(name: str) -> None:
    _ACTIVE.pop(name, None)


def hit(name: str) -> None:
    action = _ACTIVE.get(name)
    if action == "exit":
        os._exit(137)
    if action == "raise":
        _ACTIVE.pop(name)  # one crash per arming, as a real crash would be followed by a restart
        raise FailpointCrash(name)
    if action == "error":
        _ACTIVE.pop(name)
        raise FailpointError(name)


load_from_env()
