"""The `laoke` command: run the stack, serve one component, migrate, create shops, replay events.

laoke run                       whole stack (embedded PostgreSQL + broker unless configured)
laoke stop | status             a stack started by `laoke run`
laoke serve loyalty --port 8003 [--role api|worker|all]
laoke migrate [component ...]
laoke topics
laoke shop create --name 西湖茶庄 [--timezone Asia/Shanghai] [--currency CNY]
laoke replay --since 2026-11-22T00:00:00Z [--until ...] [--service ingest ...]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import sys
import time
from datetime import datetime

import httpx

from laoke.devstack.supervisor import StackConfig, data_dir, load_or_create_secrets, run_forever
from laoke.stack import COMPONENTS, component


def _state() -> dict[str, object] | None:
    path = data_dir() / "run.json"
    return json.loads(path.read_text()) if path.exists() else None


def cmd_run(_: argparse.Namespace) -> int:
    return run_forever(StackConfig.from_env())


def cmd_stop(_: argparse.Namespace) -> int:
    state = _state()
    if state is None:
        print("No stack is running (no .laoke/run.json).")
        return 0
    pid = int(state["pid"])  # type: ignore[call-overload]
    try:
        os.kill(pid, signal.SIGTERM)
    except ProcessLookupError:
        (data_dir() / "run.json").unlink(missing_ok=True)
        print("The stack was not running; cleared its state file.")
        return 0
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and (data_dir() / "run.json").exists():
        time.sleep(0.2)
    print("Stopped.")
    return 0


def cmd_status(_: argparse.Namespace) -> int:
    state = _state()
    if state is None:
        print("No stack is running.")
        return 1
    healthy = True
    with httpx.Client(timeout=2) as client:
        for name, url in state["components"].items():  # type: ignore[union-attr]
            try:
                ok = client.get(f"{url}/readyz").status_code == 200
            except httpx.HTTPError:
                ok = False
            healthy &= ok
            print(f"{name:<13} {url:<28} {'ready' if ok else 'NOT READY'}")
    return 0 if healthy else 1


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    from laoke.kit.http_protocol import LaokeHttpProtocol

    comp = component(args.component)
    if args.role != "all":
        # Workers run consumers and the relay without serving traffic; api replicas the reverse.
        os.environ[f"{comp.env_prefix}RUN_CONSUMERS"] = str(args.role == "worker").lower()
        os.environ[f"{comp.env_prefix}RUN_RELAY"] = str(args.role == "worker").lower()
    uvicorn.run(
        comp.app_factory,
        factory=True,
        host=args.host,
        port=args.port or comp.default_port,
        loop="uvloop",
        http=LaokeHttpProtocol,
        access_log=False,
        log_config=None,
        timeout_graceful_shutdown=15,
        server_header=False,
    )
    return 0


def cmd_providers(args: argparse.Namespace) -> int:
    """The local SMTP server and Aliyun SMS endpoint (`make run` starts them unless real ones are set)."""
    import uvicorn

    from laoke.devstack.providers import LocalProviders, sms_app, start_smtp

    state = LocalProviders()
    smtp = start_smtp(state, args.host, args.smtp_port)
    try:
        uvicorn.run(sms_app(state), host=args.host, port=args.http_port, access_log=False, log_config=None)
    finally:
        smtp.stop()
    return 0


def _database_url() -> str:
    url = os.environ.get("DATABASE_URL") or (_state() or {}).get("database_url")
    if not url:
        raise SystemExit("DATABASE_URL is not set and no local stack is running")
    return str(url)


def cmd_migrate(args: argparse.Namespace) -> int:
    from laoke.kit.migrations import upgrade

    for name in args.components or [c.name for c in COMPONENTS]:
        upgrade(component(name).package, _database_url())
        print(f"{name}: migrated to head")
    return 0


def cmd_topics(_: argparse.Namespace) -> int:
    from laoke.contracts.topics import ALL_TOPICS
    from laoke.kit.kafka import ensure_topics

    servers = os.environ.get("KAFKA_BOOTSTRAP_SERVERS") or (_state() or {}).get("kafka_bootstrap_servers")
    if not servers:
        raise SystemExit("KAFKA_BOOTSTRAP_SERVERS is not set and no local stack is running")
    partitions = int(os.environ.get("LAOKE_TOPIC_PARTITIONS", "6"))
    created = asyncio.run(ensure_topics(str(servers), ALL_TOPICS, partitions))
    print(f"created {len(created)} topics" if created else "all topics exist")
    return 0


def cmd_shop_create(args: argparse.Namespace) -> int:
    state = _state() or {}
    gateway = args.gateway or os.environ.get("LAOKE_GATEWAY_URL") or state.get("gateway_url")
    token = (
        args.admin_token
        or os.environ.get("LAOKE_ADMIN_TOKEN")
        or load_or_create_secrets(data_dir())["admin_token"]
    )
    if not gateway:
        raise SystemExit("no gateway: start the stack (`make run`) or pass --gateway URL")
    body = {"name": args.name, "timezone": args.timezone, "currency": args.currency}
    response = httpx.post(
        f"{gateway}/api/v1/admin/shops", json=body, headers={"Authorization": f"Bearer {token}"}, timeout=10
    )
    print(json.dumps(response.json(), ensure_ascii=False, indent=2))
    return 0 if response.status_code == 201 else 1


def cmd_replay(args: argparse.Namespace) -> int:
    from laoke.kit.db import Database, service_metadata
    from laoke.kit.outbox import plumbing_tables, replay
    from laoke.kit.settings import ServiceSettings

    async def _replay() -> None:
        for name in args.service or [c.name for c in COMPONENTS]:
            settings = ServiceSettings(service_name=name, database_url=_database_url())
            db = Database(settings)
            try:
                table = plumbing_tables(service_metadata(name)).outbox
                count = await replay(db, table, args.since, args.until)
                print(f"{name}: {count} events queued for re-publishing")
            finally:
                await db.dispose()

    asyncio.run(_replay())
    return 0


def cmd_import(args: argparse.Namespace) -> int:
    from laoke.import_cli import run_import

    state = _state() or {}
    gateway = args.gateway or os.environ.get("LAOKE_GATEWAY_URL") or state.get("gateway_url")
    api_key = args.api_key or os.environ.get("LAOKE_API_KEY")
    if not gateway:
        raise SystemExit("no gateway: start the stack (`make run`) or pass --gateway URL")
    if not api_key:
        raise SystemExit("pass --api-key or set LAOKE_API_KEY (a key with the write scope)")
    return run_import(args, str(gateway), api_key)


def _aware(value: str) -> datetime:
    parsed = datetime.fromisoformat(value)
    if parsed.tzinfo is None:
        raise argparse.ArgumentTypeError("give a time zone, e.g. 2026-11-22T00:00:00+08:00 or ...Z")
    return parsed


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="laoke", description="Laoke member-operations CRM")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("run", help="start the whole stack").set_defaults(func=cmd_run)
    sub.add_parser("stop", help="stop a stack started by `laoke run`").set_defaults(func=cmd_stop)
    sub.add_parser("status", help="readiness of each component").set_defaults(func=cmd_status)

    serve = sub.add_parser("serve", help="run one component")
    serve.add_argument("component", choices=[c.name for c in COMPONENTS])
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int)
    serve.add_argument("--role", choices=["all", "api", "worker"], default="all")
    serve.set_defaults(func=cmd_serve)

    providers = sub.add_parser("providers", help="local SMTP server and Aliyun SMS endpoint for development")
    providers.add_argument("--host", default="127.0.0.1")
    providers.add_argument("--smtp-port", type=int, default=8025)
    providers.add_argument("--http-port", type=int, default=8026)
    providers.set_defaults(func=cmd_providers)

    migrate = sub.add_parser("migrate", help="apply database migrations")
    migrate.add_argument("components", nargs="*", help="default: all")
    migrate.set_defaults(func=cmd_migrate)
    sub.add_parser("topics", help="create the Kafka topics").set_defaults(func=cmd_topics)

    shop = sub.add_parser("shop", help="shops").add_subparsers(dest="shop_command", required=True)
    create = shop.add_parser("create", help="create a shop through the gateway's admin API")
    create.add_argument("--name", required=True)
    create.add_argument("--timezone", default="Asia/Shanghai")
    create.add_argument("--currency", default="CNY")
    create.add_argument("--gateway")
    create.add_argument("--admin-token")
    create.set_defaults(func=cmd_shop_create)

    imp = sub.add_parser("import", help="import order history from a CSV/XLSX file, with progress")
    imp.add_argument("file")
    imp.add_argument("--format", choices=["taobao", "shopify", "generic"], help="default: detected")
    imp.add_argument("--channel", help="channel the orders came from (e.g. tmall); default: the format's")
    imp.add_argument("--award-points", action="store_true", help="let loyalty award points for them")
    imp.add_argument("--dry-run", action="store_true", help="check and count, store nothing")
    imp.add_argument("--api-key", help="default: $LAOKE_API_KEY")
    imp.add_argument("--gateway", help="default: the running stack's gateway")
    imp.set_defaults(func=cmd_import)

    rp = sub.add_parser("replay", help="re-publish outbox events of a time range")
    rp.add_argument("--since", type=_aware, required=True)
    rp.add_argument("--until", type=_aware)
    rp.add_argument("--service", action="append", choices=[c.name for c in COMPONENTS])
    rp.set_defaults(func=cmd_replay)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
