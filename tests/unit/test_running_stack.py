"""`make run` refuses to start beside a live stack: what counts as one."""

from __future__ import annotations

import json
import os
from pathlib import Path

from laoke.devstack.supervisor import running_stack


def test_only_a_readable_state_of_a_live_process_counts(tmp_path: Path) -> None:
    state = tmp_path / "run.json"
    assert running_stack(state) is None  # none written
    state.write_text("half a file")
    assert running_stack(state) is None
    state.write_text(json.dumps({"gateway_url": "http://127.0.0.1:8000"}))
    assert running_stack(state) is None  # no pid
    state.write_text(json.dumps({"pid": 2**22 + 12345}))
    assert running_stack(state) is None  # above pid_max: no such process
    alive = {"pid": os.getpid(), "gateway_url": "http://127.0.0.1:8000"}
    state.write_text(json.dumps(alive))
    assert running_stack(state) == alive
