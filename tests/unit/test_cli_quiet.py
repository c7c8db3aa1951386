"""The `laoke` command starts without warnings where XDG_RUNTIME_DIR is unset (containers, CI, ssh)."""

from __future__ import annotations

import os
import subprocess
import sys


def test_the_cli_imports_without_a_warning() -> None:
    env = {k: v for k, v in os.environ.items() if k != "XDG_RUNTIME_DIR"}
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", "import laoke.cli"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 0 and done.stderr == "", done.stderr
