"""The deployment files validate offline: Kubernetes manifests against the API schemas bundled with
kubernetes-validate (KEDA's ScaledObject, a custom resource, by the checks below), the compose file
against the Compose specification bundled with check-jsonschema; and they agree with each other and
with the code (ports, probes, consumer groups, partitions, a non-root image)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import pytest
import yaml

from laoke.stack import COMPONENTS

DEPLOY = Path(__file__).resolve().parents[2] / "deploy"
KUBERNETES = "1.33"


def documents(name: str) -> list[dict[str, Any]]:
    with (DEPLOY / "kubernetes" / name).open() as f:
        return [d for d in yaml.safe_load_all(f) if d]


def by_kind(docs: list[dict[str, Any]], kind: str) -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in docs if d["kind"] == kind}


MAIN = documents("laoke.yaml")
KEDA = documents("keda.yaml")
SECRET = documents("secret.example.yaml")
DEPLOYMENTS = by_kind(MAIN, "Deployment")


def _containers() -> Iterator[tuple[str, dict[str, Any]]]:
    for name, deployment in DEPLOYMENTS.items():
        for container in deployment["spec"]["template"]["spec"]["containers"]:
            yield name, container


@pytest.mark.parametrize("resource", MAIN + SECRET, ids=lambda d: f"{d['kind']}/{d['metadata']['name']}")
def test_every_kubernetes_resource_validates_against_the_api_schema(resource: dict[str, Any]) -> None:
    kubernetes_validate.validate(resource, KUBERNETES, strict=True)


def test_every_component_runs_with_probes_and_the_http_tier_has_services() -> None:
    services = by_kind(MAIN, "Service")
    for component in COMPONENTS:
        assert component.name in DEPLOYMENTS, f"no Deployment for {component.name}"
        assert component.name in services, f"no Service for {component.name}"
        port = services[component.name]["spec"]["ports"][0]["targetPort"]
        assert port == component.default_port
    for name, container in _containers():
        port = container["ports"][0]["containerPort"]
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": port}, name
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": port}, name
        refs = {next(iter(r)) for r in container["envFrom"]}
        assert refs == {"configMapRef", "secretRef"}, name


def test_workers_scale_on_consumer_lag_and_the_http_tier_on_cpu() -> None:
    autoscaled = {
        h["spec"]["scaleTargetRef"]["name"] for h in by_kind(MAIN, "HorizontalPodAutoscaler").values()
    }
    config = by_kind(MAIN, "ConfigMap")["laoke"]["data"]
    partitions = int(config["LAOKE_TOPIC_PARTITIONS"])
    for scaled in KEDA:
        assert (scaled["apiVersion"], scaled["kind"]) == ("keda.sh/v1alpha1", "ScaledObject")
        target = scaled["spec"]["scaleTargetRef"]["name"]
        assert target in DEPLOYMENTS, f"ScaledObject {scaled['metadata']['name']} scales no Deployment"
        assert target not in autoscaled, f"{target} has both an HPA and a ScaledObject"
        args = DEPLOYMENTS[target]["spec"]["template"]["spec"]["containers"][0]["args"]
        assert args[args.index("--role") + 1] == "worker"
        service = args[1]
        (trigger,) = scaled["spec"]["triggers"]
        assert trigger["type"] == "kafka"
        assert trigger["metadata"]["consumerGroup"] == f"laoke.{service}"  # laoke/kit/consumer.py
        assert trigger["metadata"]["bootstrapServers"] == config["KAFKA_BOOTSTRAP_SERVERS"]
        assert int(trigger["metadata"]["lagThreshold"]) > 0
        assert scaled["spec"]["maxReplicaCount"] <= partitions, "replicas beyond the partitions sit idle"
    for name, deployment in DEPLOYMENTS.items():
        assert name in autoscaled or name in {s["spec"]["scaleTargetRef"]["name"] for s in KEDA}, (
            f"{name} is scaled by nothing"
        )
        assert deployment["spec"]["template"]["spec"]["terminationGracePeriodSeconds"] >= 20


def test_the_compose_file_follows_the_compose_specification_with_health_checks() -> None:
    schema = json.loads(
        resources.files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text()
    )
    compose = yaml.safe_load((DEPLOY / "compose.yaml").read_text())
    jsonschema.validate(compose, schema)
    services = compose["services"]
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["postgres"]["image"].startswith("postgres:")
    for component in COMPONENTS:
        names = [component.name] + ([f"{component.name}-worker"] if component.name != "gateway" else [])
        for name in names:
            check = services[name]["healthcheck"]["test"]
            assert f"127.0.0.1:{component.default_port}/readyz" in " ".join(check), name


def test_the_image_runs_as_a_non_root_user() -> None:
    lines = [line.split() for line in (DEPLOY / "Dockerfile").read_text().splitlines() if line.strip()]
    users = [words[1] for words in lines if words[0] == "USER"]
    assert users and users[-1] not in ("root", "0")
