"""The docker-compose stack is wired consistently: services, images, mounts, ports, health.

``docker-compose config`` (no daemon needed) normalizes and validates docker-compose.yml; the
tests then check what compose would actually run against the files it mounts: the collector's
exporters reach existing services, Prometheus scrapes the processor and alerts Alertmanager,
Grafana's datasource reaches Prometheus and its dashboard provider reads the mounted folder.

Tools missing from PATH skip these tests, or fail them when MLOBS_REQUIRE_PROMETHEUS=1 (CI).
"""

from __future__ import annotations

import os
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from _tools import need

ROOT = Path(__file__).resolve().parents[1]
COMPOSE = ROOT / "docker-compose.yml"
GATEWAY = ROOT / "collector" / "gateway.yaml"
PROM_COMPOSE = ROOT / "deploy" / "prometheus.compose.yml"
PROM_SHIPPED = ROOT / "prometheus" / "prometheus.yml"
GRAFANA_DATASOURCE = ROOT / "grafana" / "provisioning" / "datasources" / "prometheus.yml"
GRAFANA_DASHBOARDS = ROOT / "grafana" / "provisioning" / "dashboards" / "mlobs.yml"

SERVICES = {"otelcol", "mlobs", "prometheus", "alertmanager", "grafana", "jaeger"}
PUBLISHED = {
    "otelcol": {4317, 4318, 13133},
    "mlobs": {9464},
    "prometheus": {9090},
    "alertmanager": {9093},
    "grafana": {3000},
    "jaeger": {16686},
}
# Images without a shell or HTTP client cannot run a healthcheck (see docker-compose.yml).
NO_HEALTHCHECK = {"otelcol", "jaeger"}


def load(path: Path) -> Any:
    with path.open() as fh:
        return yaml.safe_load(fh)


@pytest.fixture(scope="module")
def stack() -> dict[str, Any]:
    """The stack as docker-compose resolves it (paths made absolute, defaults filled in)."""
    binary = need("docker-compose")
    env = {k: v for k, v in os.environ.items() if k != "GRAFANA_ADMIN_PASSWORD"}
    result = subprocess.run(
        [binary, "-f", str(COMPOSE), "config"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stderr
    return yaml.safe_load(result.stdout)


def mounts(service: dict[str, Any]) -> list[tuple[str, str, bool]]:
    """(source, target, read_only) per volume, for both short and long compose syntax."""
    out = []
    for volume in service.get("volumes", []):
        if isinstance(volume, str):
            parts = volume.split(":")
            source, target = parts[0], parts[1]
            read_only = len(parts) > 2 and "ro" in parts[2].split(",")
        else:
            source, target = volume.get("source", ""), volume["target"]
            read_only = bool(volume.get("read_only"))
        out.append((source, target, read_only))
    return out


def bind_mounts(service: dict[str, Any]) -> dict[str, tuple[Path, bool]]:
    """Container path -> (host path, read-only) for mounts of files from this repository."""
    return {
        target: (Path(source), read_only)
        for source, target, read_only in mounts(service)
        if source.startswith("/")
    }


def published(service: dict[str, Any]) -> set[int]:
    ports = set()
    for port in service.get("ports", []):
        if isinstance(port, dict):
            assert int(port["published"]) == int(port["target"]), port
            ports.add(int(port["published"]))
        else:
            host, _, container = str(port).rpartition(":")
            assert host == container, port
            ports.add(int(container))
    return ports


def reachable_ports(service: dict[str, Any]) -> set[int]:
    return published(service) | {int(str(p).split("/")[0]) for p in service.get("expose", [])}


def host_port(endpoint: str) -> tuple[str, int]:
    endpoint = endpoint.split("://", 1)[-1].rstrip("/")
    host, _, port = endpoint.rpartition(":")
    return host, int(port)


# --- compose as resolved -------------------------------------------------------------------------
def test_services_and_pinned_images(stack: dict[str, Any]) -> None:
    services = stack["services"]
    assert set(services) == SERVICES
    assert "build" in services["mlobs"]
    assert Path(services["mlobs"]["build"]["context"]).resolve() == ROOT
    for name, service in services.items():
        if name == "mlobs":
            continue
        image = service["image"]
        repository, _, tag = image.rpartition(":")
        assert repository and tag and tag != "latest", f"{name}: pin a version, got {image}"


def test_bind_mounts_exist_and_are_read_only(stack: dict[str, Any]) -> None:
    for name, service in stack["services"].items():
        for target, (source, read_only) in bind_mounts(service).items():
            assert source.exists(), f"{name}: {source} (mounted at {target}) is missing"
            assert ROOT in source.parents, f"{name}: {source} is outside the repository"
            assert read_only, f"{name}: configuration mount {target} should be read-only"


def test_published_ports(stack: dict[str, Any]) -> None:
    assert {name: published(s) for name, s in stack["services"].items()} == PUBLISHED


def test_healthchecks_and_startup_order(stack: dict[str, Any]) -> None:
    services = stack["services"]
    for name, service in services.items():
        if name in NO_HEALTHCHECK:
            assert "healthcheck" not in service
        else:
            test = service["healthcheck"]["test"]
            assert test[0] == "CMD" and any("health" in part for part in test), name
        for dependency, spec in service.get("depends_on", {}).items():
            assert dependency in services
            if spec["condition"] == "service_healthy":
                assert dependency not in NO_HEALTHCHECK, (
                    f"{name} waits on unhealthy-able {dependency}"
                )
    assert services["otelcol"]["depends_on"]["mlobs"]["condition"] == "service_healthy"
    mlobs_check = " ".join(services["mlobs"]["healthcheck"]["test"])
    assert mlobs_check == "CMD mlobs healthcheck"  # probes as the processor is configured


def test_collector_config_is_the_gateway_and_reaches_its_exporters(stack: dict[str, Any]) -> None:
    services = stack["services"]
    otelcol = services["otelcol"]
    config_path = next(
        arg.split("=", 1)[1] for arg in otelcol["command"] if arg.startswith("--config=")
    )
    source, _ = bind_mounts(otelcol)[config_path]
    assert source == GATEWAY
    gateway = load(GATEWAY)
    for exporter_id, exporter in gateway["exporters"].items():
        if "endpoint" not in exporter:
            continue
        host, port = host_port(exporter["endpoint"])
        assert host in services, f"{exporter_id}: no service {host}"
        assert port in reachable_ports(services[host]), f"{exporter_id}: {host}:{port} not exposed"
    receiver_ports = {
        host_port(p["endpoint"])[1] for p in gateway["receivers"]["otlp"]["protocols"].values()
    }
    assert receiver_ports <= published(otelcol)
    health_port = host_port(gateway["extensions"]["health_check"]["endpoint"])[1]
    assert health_port in published(otelcol)
    (reader,) = gateway["service"]["telemetry"]["metrics"]["readers"]
    telemetry_port = reader["pull"]["exporter"]["prometheus"]["port"]
    scraped = [
        t
        for job in load(PROM_COMPOSE)["scrape_configs"]
        for sc in job["static_configs"]
        for t in sc["targets"]
    ]
    assert f"otelcol:{telemetry_port}" in scraped


def test_prometheus_scrapes_the_stack_and_loads_the_shipped_rules(stack: dict[str, Any]) -> None:
    services = stack["services"]
    prometheus = services["prometheus"]
    binds = bind_mounts(prometheus)
    config_target = next(
        arg.split("=", 1)[1] for arg in prometheus["command"] if arg.startswith("--config.file=")
    )
    assert binds[config_target][0] == PROM_COMPOSE
    config = load(PROM_COMPOSE)
    (rule_glob,) = config["rule_files"]
    rules_dir = str(Path(rule_glob).parent)
    assert binds[rules_dir][0] == ROOT / "prometheus" / "rules"

    targets = {
        job["job_name"]: [t for sc in job["static_configs"] for t in sc["targets"]]
        for job in config["scrape_configs"]
    }
    assert targets["mlobs"] == ["mlobs:9464"]
    for job, addresses in targets.items():
        for address in addresses:
            host, port = host_port(address)
            if host != "localhost":
                assert host in services and port in reachable_ports(services[host]), (job, address)
    (alertmanagers,) = config["alerting"]["alertmanagers"]
    (am_target,) = alertmanagers["static_configs"][0]["targets"]
    host, port = host_port(am_target)
    assert host == "alertmanager" and port in published(services["alertmanager"])


def test_grafana_provisioning_reaches_prometheus_and_the_dashboards(stack: dict[str, Any]) -> None:
    services = stack["services"]
    binds = bind_mounts(services["grafana"])
    assert binds["/etc/grafana/provisioning"][0] == ROOT / "grafana" / "provisioning"
    (datasource,) = load(GRAFANA_DATASOURCE)["datasources"]
    host, port = host_port(datasource["url"])
    assert host == "prometheus" and port in published(services["prometheus"])
    (provider,) = load(GRAFANA_DASHBOARDS)["providers"]
    assert binds[provider["options"]["path"]][0] == ROOT / "grafana" / "dashboards"


# --- files on their own (no docker-compose needed) ----------------------------------------------
def test_compose_prometheus_config_mirrors_the_shipped_one() -> None:
    """Same job names and intervals, so rules written against prometheus.yml hold in compose."""
    compose, shipped = load(PROM_COMPOSE), load(PROM_SHIPPED)
    assert compose["global"] == shipped["global"]
    compose_jobs = {job["job_name"]: job for job in compose["scrape_configs"]}
    for job in shipped["scrape_configs"]:
        mirrored = compose_jobs[job["job_name"]]
        assert mirrored.get("scrape_interval") == job.get("scrape_interval")
        shipped_ports = {host_port(t)[1] for sc in job["static_configs"] for t in sc["targets"]}
        compose_ports = {
            host_port(t)[1] for sc in mirrored["static_configs"] for t in sc["targets"]
        }
        assert shipped_ports == compose_ports
    assert [Path(g).name for g in compose["rule_files"]] == [
        Path(g).name for g in shipped["rule_files"]
    ]


def test_grafana_provisioning_files() -> None:
    datasources = load(GRAFANA_DATASOURCE)
    assert datasources["apiVersion"] == 1
    (datasource,) = datasources["datasources"]
    assert datasource["uid"] == "mlobs-prometheus"
    assert datasource["type"] == "prometheus"
    assert datasource["url"] == "http://prometheus:9090"
    assert datasource["access"] == "proxy"
    providers = load(GRAFANA_DASHBOARDS)
    assert providers["apiVersion"] == 1
    (provider,) = providers["providers"]
    assert provider["type"] == "file"
    assert provider["options"]["path"] == "/var/lib/grafana/dashboards"
    assert (ROOT / "grafana" / "dashboards").is_dir()


@pytest.mark.prometheus
def test_promtool_accepts_the_compose_prometheus_config() -> None:
    promtool = need("promtool")
    result = subprocess.run(
        [promtool, "check", "config", "--syntax-only", str(PROM_COMPOSE)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert result.returncode == 0, result.stdout + result.stderr
