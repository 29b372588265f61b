"""config/kubernetes/: the manifests match the Kubernetes API schema, the Role grants what
the backend calls, and the service config loads and offers the 2i2c options."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

import kubernetes_validate
import pytest
import yaml
from traitlets.config import PyFileConfigLoader

from hubgate.options import OptionSet
from hubgate.spawners import kubernetes as backend_module

CONFIG = Path(__file__).parents[2] / "config" / "kubernetes"
KUBE_VERSION = "1.35"


def manifests() -> list[dict[str, Any]]:
    docs = []
    for path in sorted(CONFIG.glob("*.yaml")):
        if path.name in ("values.yaml", "kustomization.yaml"):
            continue  # Helm values and kustomize's own file are not API objects
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def test_manifests_validate_against_kubernetes_schema() -> None:
    docs = manifests()
    assert {d["kind"] for d in docs} >= {
        "ServiceAccount",
        "Role",
        "RoleBinding",
        "Deployment",
        "Service",
        "PersistentVolumeClaim",
    }
    for doc in docs:
        try:
            kubernetes_validate.validate(doc, KUBE_VERSION, strict=True)
        except kubernetes_validate.ValidationError as exc:
            pytest.fail(f"{doc['kind']} {doc['metadata']['name']}: {str(exc).splitlines()[0]}")


def test_scheduler_proxy_is_exposed_outside_the_cluster() -> None:
    services = {d["metadata"]["name"]: d for d in manifests() if d["kind"] == "Service"}
    assert services["hubgate-scheduler-proxy"]["spec"]["type"] in ("LoadBalancer", "NodePort")
    assert [p["port"] for p in services["hubgate-scheduler-proxy"]["spec"]["ports"]] == [8786]


def _api_calls() -> set[str]:
    """The CoreV1Api methods the backend calls (read from its source)."""
    tree = ast.parse(Path(backend_module.__file__).read_text())
    names = {n.attr for n in ast.walk(tree) if isinstance(n, ast.Attribute)}
    return {n for n in names if re.match(r"(create|delete|list|read|patch|replace)_namespaced_", n)}


VERB = {"create": {"create"}, "delete": {"delete"}, "read": {"get"}, "list": {"list", "watch"}}


def test_role_grants_exactly_what_the_backend_calls() -> None:
    [role] = [d for d in manifests() if d["kind"] == "Role"]
    granted = {(r, v) for rule in role["rules"] for r in rule["resources"] for v in rule["verbs"]}
    needed = set()
    for call in _api_calls():
        verb, _, rest = call.partition("_namespaced_")
        resource = {"pod_log": "pods/log"}.get(rest, rest + "s")
        needed |= {(resource, v) for v in VERB[verb]}
    assert granted == needed


def test_values_register_the_service_and_client_settings() -> None:
    values = yaml.safe_load((CONFIG / "values.yaml").read_text())
    assert values["hub"]["services"]["dask-gateway"]["url"] == "http://hubgate:8000"
    assert "access:services!service=dask-gateway" in values["hub"]["loadRoles"]["user"]["scopes"]
    assert values["hub"]["loadRoles"]["hubgate"]["services"] == ["dask-gateway"]
    env = values["singleuser"]["extraEnv"]
    assert env["DASK_GATEWAY__AUTH__TYPE"] == "jupyterhub"
    assert env["DASK_GATEWAY__PROXY_ADDRESS"].endswith(":8786")


async def test_hubgate_config_offers_the_2i2c_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("POD_NAMESPACE", "jhub")
    monkeypatch.setenv("JUPYTER_IMAGE_SPEC", "pangeo/pangeo-notebook:2026.01.01")
    config = PyFileConfigLoader("hubgate_config.py", path=str(CONFIG)).load_config()
    options = config.HubgateService.cluster_options
    assert isinstance(options, OptionSet)
    assert [f["field"] for f in options.spec()] == [
        "instance_type",
        "resources_per_worker",
        "image",
        "environment",
        "idle_timeout_minutes",
    ]
    parsed, cluster = await options.parse(
        {"resources_per_worker": "2 CPU, 15 GiB", "environment": {"A": "1"}}, None
    )
    assert cluster["instance_type"] == "n2-highmem-16"
    assert cluster["worker_cores"] == 2
    assert cluster["image"] == "pangeo/pangeo-notebook:2026.01.01"
    assert cluster["idle_timeout"] == 30 * 60
    # every instance type the form offers is one the backend knows
    known = config.KubernetesBackend.instance_types
    choices = options.spec()[0]["spec"]["options"]
    assert choices and all(
        cluster_value in known
        for cluster_value in [
            (await options.parse({"instance_type": label}, None))[1]["instance_type"]
            for label in choices
        ]
    )
    assert config.KubernetesBackend.namespace == "jhub"


def test_network_policy_admits_only_the_service_and_cluster_pods() -> None:
    from hubgate.spawners.kube_objects import LABEL_ROLE

    [policy] = [
        d
        for d in manifests()
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "hubgate-clusters"
    ]
    [deployment] = [d for d in manifests() if d["kind"] == "Deployment"]
    service_pods = deployment["spec"]["template"]["metadata"]["labels"]
    cluster_pods = {"key": LABEL_ROLE, "operator": "In", "values": ["scheduler", "worker"]}
    assert policy["spec"]["podSelector"] == {"matchExpressions": [cluster_pods]}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    assert "ports" not in rule
    from_service, from_clusters = rule["from"]
    # the service's pods (as its Service selects them), and no others of the Deployment
    services = {d["metadata"]["name"]: d for d in manifests() if d["kind"] == "Service"}
    assert from_service == {"podSelector": {"matchLabels": services["hubgate"]["spec"]["selector"]}}
    assert from_service["podSelector"]["matchLabels"].items() <= service_pods.items()
    assert from_clusters == {"podSelector": {"matchExpressions": [cluster_pods]}}
    kustomization = yaml.safe_load((CONFIG / "kustomization.yaml").read_text())
    assert "networkpolicy.yaml" in kustomization["resources"]


def test_direct_connect_admits_notebooks_to_the_scheduler_port_only() -> None:
    """The optional policy for direct connect: single-user server pods may open the
    scheduler port of scheduler pods; workers and dashboards stay closed to them, and
    the notebooks' egress rule in values.yaml already covers scheduler pods."""
    from hubgate.spawners.kube_objects import LABEL_APP, LABEL_ROLE, SCHEDULER_PORT

    [policy] = [
        d
        for d in manifests()
        if d["kind"] == "NetworkPolicy" and d["metadata"]["name"] == "hubgate-direct-connect"
    ]
    assert policy["spec"]["podSelector"] == {"matchLabels": {LABEL_ROLE: "scheduler"}}
    assert policy["spec"]["policyTypes"] == ["Ingress"]
    [rule] = policy["spec"]["ingress"]
    assert rule["ports"] == [{"port": SCHEDULER_PORT, "protocol": "TCP"}]
    assert rule["from"] == [
        {"podSelector": {"matchLabels": {"app": "jupyterhub", "component": "singleuser-server"}}}
    ]
    kustomization = yaml.safe_load((CONFIG / "kustomization.yaml").read_text())
    assert "networkpolicy-direct-connect.yaml" in kustomization["resources"]
    values = yaml.safe_load((CONFIG / "values.yaml").read_text())
    egress = values["singleuser"]["networkPolicy"]["egress"]
    assert any(
        {"podSelector": {"matchLabels": {LABEL_APP: "hubgate"}}} in r["to"]
        and {"port": SCHEDULER_PORT} in r["ports"]
        for r in egress
    )
