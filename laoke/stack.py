"""The components of a Laoke stack: what the CLI starts, migrates and checks. Referenced by import path
so the shared kernel never imports a service."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Component:
    name: str
    package: str  # import path of the component's package (has app.py and migrations/)
    default_port: int
    env_prefix: str

    @property
    def app_factory(self) -> str:
        return f"{self.package}.app:create_app"


GATEWAY = Component("gateway", "gateway", 8000, "GATEWAY_")
SERVICES = (
    Component("ingest", "services.ingest", 8001, "INGEST_"),
    Component("segmentation", "services.segmentation", 8002, "SEGMENTATION_"),
    Component("loyalty", "services.loyalty", 8003, "LOYALTY_"),
    Component("messaging", "services.messaging", 8004, "MESSAGING_"),
)
COMPONENTS = (GATEWAY, *SERVICES)


def component(name: str) -> Component:
    for c in COMPONENTS:
        if c.name == name:
            return c
    raise KeyError(f"unknown component {name!r}; known: {', '.join(c.name for c in COMPONENTS)}")
