"""`laoke run`: the whole stack on one machine, each component its own process.

Order matters both ways: database and broker first, then migrations and topics, then services, then
the gateway; on Ctrl-C the reverse, each process given time to finish what it holds. A component
that dies is restarted (with backoff), as a process manager in production would.
"""

from __future__ import annotations

import asyncio
import json
import os
import secrets
import signal
import subprocess
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx

from laoke.contracts.topics import ALL_TOPICS
from laoke.devstack.broker import EmbeddedBroker, port_open
from laoke.devstack.postgres import EmbeddedPostgres
from laoke.kit.kafka import ensure_topics
from laoke.kit.migrations import upgrade
from laoke.stack import COMPONENTS, GATEWAY, SERVICES, Component

# The embedded broker answers a fetch only when its wait runs out, even if records arrived meanwhile,
# so a short wait keeps event latency low. Each fetch costs it work for every partition asked about:
# polling every 10 ms takes most of a core across a stack's consumers, so a consumer idle for a while
# waits longer (0.8 → 0.16 core of broker time for five consumers of eight topics of six partitions).
EMBEDDED_FETCH_MAX_WAIT_MS = 10
EMBEDDED_FETCH_IDLE_WAIT_MS = 100
# For the same reason the embedded broker's topics have two partitions, not six: enough for two replicas of
# a consumer to share a topic, at a third of the polling work (measured on 5,000 redemptions: broker CPU
# 15.4 → 7.6 s and 9.8 → 5.9 s). A Kafka cluster answers a fetch when records arrive and keeps the six
# partitions of `LAOKE_TOPIC_PARTITIONS`' default.
EMBEDDED_TOPIC_PARTITIONS = 2


def data_dir() -> Path:
    return Path(os.environ.get("LAOKE_DATA_DIR", ".laoke")).resolve()


def load_or_create_secrets(folder: Path) -> dict[str, str]:
    """The admin token and internal secret of this local stack, generated once and kept with its data."""
    path = folder / "secrets.json"
    if path.exists():
        return json.loads(path.read_text())
    values = {"admin_token": secrets.token_urlsafe(32), "internal_secret": secrets.token_urlsafe(32)}
    folder.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(values, indent=2))
    path.chmod(0o600)
    return values


@dataclass
class StackConfig:
    folder: Path
    host: str = "127.0.0.1"
    port_base: int = 8000
    pg_port: int = 54329
    broker_port: int = 19092
    database: str = "laoke"
    extra_env: dict[str, str] = field(default_factory=dict)
    pg_settings: dict[str, str] = field(default_factory=dict)
    # Services run as two processes, an API one and a worker (consumers + outbox relay), as in
    # production; each can then be stopped, killed or scaled on its own.
    split_workers: tuple[str, ...] = ()

    @classmethod
    def from_env(cls) -> StackConfig:
        return cls(
            folder=data_dir(),
            host=os.environ.get("LAOKE_HOST", "127.0.0.1"),
            port_base=int(os.environ.get("LAOKE_PORT_BASE", "8000")),
            pg_port=int(os.environ.get("LAOKE_PG_PORT", "54329")),
            broker_port=int(os.environ.get("LAOKE_BROKER_PORT", "19092")),
        )

    @property
    def smtp_port(self) -> int:
        return self.port_base + 25

    @property
    def providers_port(self) -> int:
        return self.port_base + 26

    def port(self, component: Component) -> int:
        return self.port_base + (component.default_port - GATEWAY.default_port)

    def url(self, component: Component) -> str:
        return f"http://{self.host}:{self.port(component)}"

    def worker_port(self, component: Component) -> int:
        """A split worker's port (health and metrics only): after the gateway's and the services' ports."""
        return self.port_base + len(SERVICES) + 1 + SERVICES.index(component)


@dataclass
class Child:
    name: str  # the component's name, or `<component>-worker` for a split worker
    component: Component
    process: subprocess.Popen[bytes]
    role: str = "all"
    restarts: int = 0
    next_restart: float = 0.0

    @property
    def log_name(self) -> str:
        return f"{self.name}.log"


class Stack:
    """Starts, watches and stops a whole stack. Used by `laoke run` and by the end-to-end tests."""

    def __init__(self, config: StackConfig) -> None:
        self.config = config
        self.logs = config.folder / "logs"
        self.postgres: EmbeddedPostgres | None = None
        self.broker: EmbeddedBroker | None = None
        self.children: dict[str, Child] = {}
        self.env: dict[str, str] = {}
        self.secrets: dict[str, str] = {}
        self.local_providers = False
        self.providers: subprocess.Popen[bytes] | None = None

    # -- infrastructure -------------------------------------------------------------------------
    def start_infrastructure(self) -> None:
        c = self.config
        c.folder.mkdir(parents=True, exist_ok=True)
        self.logs.mkdir(exist_ok=True)
        self.secrets = load_or_create_secrets(c.folder)
        env = {**os.environ, **c.extra_env}
        env.setdefault("LAOKE_ADMIN_TOKEN", self.secrets["admin_token"])
        env.setdefault("LAOKE_INTERNAL_SECRET", self.secrets["internal_secret"])
        if "DATABASE_URL" not in env:
            self.postgres = EmbeddedPostgres(c.folder / "pgdata", c.pg_port, settings=c.pg_settings)
            env["DATABASE_URL"] = self.postgres.start(c.database)
        if "KAFKA_BOOTSTRAP_SERVERS" not in env:
            self.broker = EmbeddedBroker(c.broker_port, self.logs / "broker.log")
            env["KAFKA_BOOTSTRAP_SERVERS"] = self.broker.start()
            env.setdefault("LAOKE_CONSUMER_FETCH_MAX_WAIT_MS", str(EMBEDDED_FETCH_MAX_WAIT_MS))
            env.setdefault("LAOKE_CONSUMER_FETCH_IDLE_WAIT_MS", str(EMBEDDED_FETCH_IDLE_WAIT_MS))
            env.setdefault("LAOKE_TOPIC_PARTITIONS", str(EMBEDDED_TOPIC_PARTITIONS))
        if "MESSAGING_SMTP_HOST" not in env and "MESSAGING_ALIYUN_SMS_ENDPOINT" not in env:
            # No real mail server or SMS vendor given: messaging sends to the local stand-ins.
            self.local_providers = True
            env["MESSAGING_SMTP_PORT"] = str(c.smtp_port)
            env["MESSAGING_ALIYUN_SMS_ENDPOINT"] = f"http://{c.host}:{c.providers_port}/"
            env["MESSAGING_TENCENT_SMS_ENDPOINT"] = f"http://{c.host}:{c.providers_port}/tencent"
            # The console's dev inbox shows what they received.
            env["GATEWAY_PROVIDERS_URL"] = f"http://{c.host}:{c.providers_port}"
        env.setdefault("MESSAGING_PUBLIC_URL", c.url(GATEWAY))
        for component in SERVICES:
            env.setdefault(f"GATEWAY_{component.name.upper()}_URL", c.url(component))
            if component.name in ("ingest", "segmentation", "loyalty"):
                env.setdefault(f"LAOKE_{component.name.upper()}_URL", c.url(component))
        self.env = env

    def migrate(self) -> None:
        for component in COMPONENTS:
            upgrade(component.package, self.env["DATABASE_URL"])

    def create_topics(self) -> list[str]:
        partitions = int(self.env.get("LAOKE_TOPIC_PARTITIONS", "6"))
        return asyncio.run(ensure_topics(self.env["KAFKA_BOOTSTRAP_SERVERS"], ALL_TOPICS, partitions))

    # -- processes ------------------------------------------------------------------------------
    def spawn(self, component: Component, role: str = "all") -> Child:
        name = f"{component.name}-worker" if role == "worker" else component.name
        port = self.config.worker_port(component) if role == "worker" else self.config.port(component)
        command = [
            sys.executable, "-m", "laoke.cli", "serve", component.name,
            "--host", self.config.host, "--port", str(port), "--role", role,
        ]  # fmt: skip
        with open(self.logs / f"{name}.log", "ab") as log:
            process = subprocess.Popen(
                command,
                env=self.env,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # Ctrl-C goes to the supervisor, which stops children in order
            )
        previous = self.children.get(name)
        child = Child(name, component, process, role, restarts=previous.restarts if previous else 0)
        self.children[name] = child
        return child

    def child_url(self, child: Child) -> str:
        port = self.config.worker_port(child.component) if child.role == "worker" else None
        return f"http://{self.config.host}:{port}" if port else self.config.url(child.component)

    def start_providers(self) -> None:
        c = self.config
        command = [
            sys.executable, "-m", "laoke.cli", "providers", "--host", c.host,
            "--smtp-port", str(c.smtp_port), "--http-port", str(c.providers_port),
        ]  # fmt: skip
        with open(self.logs / "providers.log", "ab") as log:
            self.providers = subprocess.Popen(
                command, env=self.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )

    def start_components(self) -> None:
        if self.local_providers:
            self.start_providers()
        for component in (*SERVICES, GATEWAY):
            if port_open(self.config.host, self.config.port(component)):
                raise RuntimeError(
                    f"port {self.config.port(component)} for {component.name} is taken; "
                    "is another stack running? (`make stop`, or set LAOKE_PORT_BASE)"
                )
            if component.name in self.config.split_workers:
                self.spawn(component, role="api")
                self.spawn(component, role="worker")
            else:
                self.spawn(component)

    def wait_ready(self, timeout: float = 90, names: list[str] | None = None) -> None:
        deadline = time.monotonic() + timeout
        pending = set(names or self.children)
        with httpx.Client(timeout=2) as client:
            while pending:
                for name in sorted(pending):
                    child = self.children[name]
                    if child.process.poll() is not None:
                        log_file = self.logs / child.log_name
                        raise RuntimeError(
                            f"{name} exited with code {child.process.returncode}; see {log_file}"
                        )
                    try:
                        if client.get(self.child_url(child) + "/readyz").status_code == 200:
                            pending.discard(name)
                    except httpx.HTTPError:
                        pass
                if time.monotonic() > deadline:
                    raise TimeoutError(f"not ready after {timeout:.0f}s: {', '.join(pending)}")
                time.sleep(0.1)

    def start(self) -> None:
        self.start_infrastructure()
        self.migrate()
        self.create_topics()
        self.start_components()
        self.wait_ready()

    def watch_once(self) -> list[str]:
        """Restart components that died; returns the names restarted."""
        restarted = []
        now = time.monotonic()
        for name, child in list(self.children.items()):
            if child.process.poll() is None:
                continue
            if child.next_restart == 0.0:
                child.next_restart = now + min(2**child.restarts * 0.5, 30)
            elif now >= child.next_restart:
                new = self.spawn(child.component, child.role)
                new.restarts = child.restarts + 1
                restarted.append(name)
        return restarted

    def stop_component(self, name: str, sig: int = signal.SIGTERM, timeout: float = 20) -> None:
        child = self.children.get(name)
        if child is None or child.process.poll() is not None:
            return
        child.process.send_signal(sig)
        try:
            child.process.wait(timeout)
        except subprocess.TimeoutExpired:
            child.process.kill()
            child.process.wait()

    def stop(self) -> None:
        for component in (GATEWAY, *SERVICES):
            self.stop_component(component.name)
            self.stop_component(f"{component.name}-worker")
        self.children.clear()
        if self.providers is not None and self.providers.poll() is None:
            self.providers.terminate()
            self.providers.wait(10)
        if self.broker is not None:
            self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()

    def state(self) -> dict[str, object]:
        return {
            "pid": os.getpid(),
            "gateway_url": self.config.url(GATEWAY),
            "components": {c.name: self.config.url(c) for c in COMPONENTS},
            "database_url": self.env.get("DATABASE_URL"),
            "kafka_bootstrap_servers": self.env.get("KAFKA_BOOTSTRAP_SERVERS"),
        }


def running_stack(state_file: Path) -> dict[str, Any] | None:
    """The state of a stack that `run.json` says runs and whose process is alive, else None."""
    try:
        state = dict(json.loads(state_file.read_text()))
        pid = int(state["pid"])
    except (OSError, ValueError, KeyError, TypeError):
        return None
    try:
        os.kill(pid, 0)
    except PermissionError:
        return state  # alive, another user's
    except OSError:
        return None
    return state


def run_forever(config: StackConfig) -> int:
    state_file = config.folder / "run.json"
    running = running_stack(state_file)
    if running is not None:
        # Starting anyway would fail on its ports, and stopping after that failure used to delete the
        # running stack's run.json, leaving `make stop` and `laoke import` unable to find it.
        print(
            f"Laoke is already running from {config.folder} (pid {running['pid']}, "
            f"{running.get('gateway_url')}); stop it with `make stop` first.",
            file=sys.stderr,
            flush=True,
        )
        return 1
    state_file.unlink(missing_ok=True)  # a stack that died without stopping left it behind
    stack = Stack(config)
    stopping = False

    def _stop(*_: object) -> None:
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, _stop)
    signal.signal(signal.SIGTERM, _stop)
    written = False
    try:
        print("Starting Laoke …", flush=True)
        stack.start()
        state_file.write_text(json.dumps(stack.state(), indent=2))
        written = True
        print(banner(stack), flush=True)
        while not stopping:
            for name in stack.watch_once():
                print(
                    f"{name} exited unexpectedly; restarted (log: {stack.logs / (name + '.log')})", flush=True
                )
            time.sleep(0.5)
    except (RuntimeError, TimeoutError, subprocess.CalledProcessError) as exc:
        print(f"Laoke could not start: {exc}", file=sys.stderr, flush=True)
        return 1
    finally:
        print("Stopping Laoke …", flush=True)
        stack.stop()
        if written:
            state_file.unlink(missing_ok=True)
        print("Stopped.", flush=True)
    return 0


def banner(stack: Stack) -> str:
    gateway = stack.config.url(GATEWAY)
    token = stack.env["LAOKE_ADMIN_TOKEN"]
    db = "embedded PostgreSQL" if stack.postgres else "DATABASE_URL"
    broker = "embedded broker (Tansu)" if stack.broker else "KAFKA_BOOTSTRAP_SERVERS"
    local_providers = (
        f"  Local SMTP   {stack.config.host}:{stack.config.smtp_port}  (mail kept: "
        f"http://{stack.config.host}:{stack.config.providers_port}/_local/mail)\n"
        f"  Local SMS    http://{stack.config.host}:{stack.config.providers_port}/  (Aliyun protocol; "
        f"received: /_local/sms)\n"
        if stack.local_providers
        else ""
    )
    return f"""
Laoke is running ({db}, {broker}).

  Console      {gateway}/console   (sign in with a shop's API key)
  Gateway      {gateway}
  API docs     {gateway}/docs
  Admin token  {token}
  Logs         {stack.logs}/
{local_providers}
Create a shop:
  curl -s -X POST {gateway}/api/v1/admin/shops -H 'Authorization: Bearer {token}' \\
       -H 'Content-Type: application/json' -d '{{"name": "My shop"}}'
  (its "api_key" signs you in to the console)

Press Ctrl-C to stop everything.
"""
