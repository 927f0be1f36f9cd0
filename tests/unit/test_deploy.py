"""Static checks of deploy/: every file parses, the compose file has the whole system, the
Kubernetes manifests hang together, and the alert rules and dashboards only use metrics the
worker really exports. promtool and docker compose run when installed (skipped otherwise)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
from pydantic import AliasChoices

from campaign_worker.adapters.metrics import Metrics
from campaign_worker.config import Settings
from tests.support.ops import DEPLOY, metric_names

yaml = pytest.importorskip("yaml", reason="PyYAML missing: it belongs in the test extras")

K8S = DEPLOY / "k8s"
PROMTOOL = shutil.which("promtool")
needs_promtool = pytest.mark.skipif(
    PROMTOOL is None,
    reason="promtool not installed (Debian: apt-get install prometheus; or the release tarball)",
)


def load_yaml(path: Path) -> list[Any]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d is not None]


def k8s_docs() -> list[dict[str, Any]]:
    return [d for p in sorted(K8S.glob("*.yaml")) for d in load_yaml(p)]


def by_kind(kind: str) -> list[dict[str, Any]]:
    return [d for d in k8s_docs() if d.get("kind") == kind]


def known_env() -> set[str]:
    """Every environment name the worker reads."""
    names = {"CAMPAIGN_WORKER_LOG_FORMAT"}  # read by logs.setup_logging
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, AliasChoices):
            names |= {c for c in alias.choices if isinstance(c, str) and c.isupper()}
    return names


def exported_metric_names() -> set[str]:
    """Sample names the worker's registry exports (FastStream's metrics excluded)."""
    suffixes = {
        "counter": ("_total", "_created"),
        "histogram": ("_bucket", "_sum", "_count", "_created"),
        "gauge": ("",),
    }
    return {
        family.name + suffix
        for family in Metrics().registry.collect()
        for suffix in suffixes.get(family.type, ("",))
    }


def test_every_yaml_and_json_file_parses() -> None:
    files = sorted(DEPLOY.rglob("*.y*ml")) + sorted(DEPLOY.rglob("*.json"))
    assert len(files) >= 10
    for path in files:
        if path.suffix == ".json":
            json.loads(path.read_text())
        else:
            assert load_yaml(path), path


def test_compose_has_the_whole_system() -> None:
    [compose] = load_yaml(DEPLOY / "compose.yaml")
    services = compose["services"]
    assert {"kafka", "postgres", "mailpit", "worker", "prometheus", "grafana"} <= set(services)
    kafka = services["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    assert "controller" in kafka["environment"]["KAFKA_PROCESS_ROLES"]  # KRaft, no ZooKeeper
    worker = services["worker"]
    assert (DEPLOY / worker["build"]["context"] / worker["build"]["dockerfile"]).is_file()
    env = worker["environment"]
    assert {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "SMTP_HOST"} <= set(env)
    assert set(env) <= known_env(), set(env) - known_env()
    assert env["KAFKA_BOOTSTRAP_SERVERS"].startswith("kafka:")
    assert env["SMTP_HOST"] == "mailpit"
    for name, service in services.items():
        for volume in service.get("volumes", []):
            source = volume.split(":", 1)[0]
            if source.startswith("."):
                assert (DEPLOY / source).exists(), f"{name}: {source}"


@pytest.mark.skipif(
    not (shutil.which("docker-compose") or shutil.which("docker")),
    reason="neither docker compose nor docker-compose is installed",
)
def test_compose_file_validates_with_docker_compose() -> None:
    for command in (["docker", "compose"], ["docker-compose"]):
        if not shutil.which(command[0]):
            continue
        probe = subprocess.run([*command, "version"], capture_output=True, timeout=60)
        if probe.returncode != 0:
            continue  # a docker CLI without the compose plugin
        result = subprocess.run(
            [*command, "-f", str(DEPLOY / "compose.yaml"), "config", "-q"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert result.returncode == 0, result.stderr
        return
    pytest.skip("no working docker compose (plugin or docker-compose)")


def test_dockerfile_is_multi_stage_slim_and_non_root() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    stages = re.findall(r"^FROM\s+(\S+)", text, re.M)
    assert len(stages) >= 2 and all("slim" in s for s in stages)
    [user] = re.findall(r"^USER\s+(\S+)", text, re.M)
    assert user.split(":")[0].isdigit() and int(user.split(":")[0]) != 0
    assert re.search(r'^ENTRYPOINT \["campaign-worker"\]', text, re.M)
    assert "HEALTHCHECK" in text and "/healthz" in text and "EXPOSE 8080" in text
    for source in re.findall(r"^COPY (?!--from)(.+) \S+$", text, re.M):
        for part in source.split():
            assert (DEPLOY.parent / part).exists(), part


def test_kubernetes_manifests_hang_together() -> None:
    [deployment] = by_kind("Deployment")
    name = deployment["metadata"]["name"]
    pod = deployment["spec"]["template"]
    labels = pod["metadata"]["labels"]
    assert deployment["spec"]["selector"]["matchLabels"].items() <= labels.items()
    spec = pod["spec"]
    assert spec["terminationGracePeriodSeconds"] > 30  # the worker exits within 30 s
    assert spec["securityContext"]["runAsNonRoot"] is True
    [worker] = [c for c in spec["containers"] if c["name"] == "worker"]
    assert worker["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert worker["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert worker["args"][0] == "run"
    assert worker["securityContext"]["allowPrivilegeEscalation"] is False

    configmaps = {c["metadata"]["name"]: c for c in by_kind("ConfigMap")}
    secrets = {s["metadata"]["name"]: s for s in by_kind("Secret")}
    for ref in worker["envFrom"]:
        if "configMapRef" in ref:
            assert ref["configMapRef"]["name"] in configmaps
        else:
            assert ref["secretRef"]["name"] in secrets
    [configmap] = configmaps.values()
    assert set(configmap["data"]) <= known_env(), set(configmap["data"]) - known_env()
    [secret] = secrets.values()
    keda_keys = {"sasl", "tls", "username", "password"}
    assert set(secret["stringData"]) - keda_keys <= known_env()

    [pdb] = by_kind("PodDisruptionBudget")
    assert pdb["spec"]["selector"]["matchLabels"].items() <= labels.items()
    [scaled] = by_kind("ScaledObject")
    assert scaled["spec"]["scaleTargetRef"]["name"] == name
    assert scaled["spec"]["maxReplicaCount"] <= Settings.model_fields["topic_partitions"].default
    kafka = next(t for t in scaled["spec"]["triggers"] if t["type"] == "kafka")
    assert kafka["metadata"]["consumerGroup"] == configmap["data"]["CAMPAIGN_WORKER_GROUP_ID"]
    [auth] = by_kind("TriggerAuthentication")
    assert kafka["authenticationRef"]["name"] == auth["metadata"]["name"]
    assert {r["key"] for r in auth["spec"]["secretTargetRef"]} <= set(secret["stringData"])

    [kustomization] = load_yaml(K8S / "kustomization.yaml")
    for resource in kustomization["resources"]:
        assert (K8S / resource).is_file(), resource


def _alert_rules() -> list[dict[str, Any]]:
    [doc] = load_yaml(DEPLOY / "prometheus" / "alerts.yml")
    return [r for g in doc["groups"] for r in g["rules"]]


def test_alerts_and_dashboards_use_metrics_the_worker_exports() -> None:
    exported = exported_metric_names()
    expressions = [r["expr"] for r in _alert_rules()]
    dashboard = json.loads((DEPLOY / "grafana" / "dashboards" / "campaign-worker.json").read_text())
    expressions += [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    expressions += [
        t["metadata"]["query"]
        for s in by_kind("ScaledObject")
        for t in s["spec"]["triggers"]
        if t["type"] == "prometheus"
    ]
    for expr in expressions:
        used = metric_names(expr)
        assert used or re.match(r"^up\{", expr), f"no worker metric in {expr!r}"
        assert used <= exported, f"{expr!r} uses {sorted(used - exported)}, not exported"


def test_alert_rules_cover_what_operators_are_paged_for() -> None:
    text = " ".join(r["expr"] for r in _alert_rules())
    for needle in (
        "campaign_worker_consumer_lag_seconds",
        'status="STALL"',
        "campaign_worker_dead_letters_total",
        "campaign_worker_outbox_oldest_age_seconds",
    ):
        assert needle in text


@needs_promtool
def test_promtool_accepts_the_rules_and_their_unit_tests() -> None:
    assert PROMTOOL is not None
    prometheus = DEPLOY / "prometheus"
    for args in (
        ["check", "rules", "alerts.yml"],
        ["test", "rules", "alerts.test.yml"],
        ["check", "config", "prometheus.yml"],
    ):
        result = subprocess.run(
            [PROMTOOL, *args], cwd=prometheus, capture_output=True, text=True, timeout=60
        )
        assert result.returncode == 0, result.stdout + result.stderr
