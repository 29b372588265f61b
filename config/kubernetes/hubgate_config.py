"""hubgate on Kubernetes, with the options a 2i2c hub offers (instance type, resources
per worker, image, environment variables, idle timeout).

Mounted at /etc/hubgate/hubgate_config.py by the ConfigMap that
``kubectl apply -k config/kubernetes/`` generates from this file.
"""

import os

from hubgate.options import (
    OptionSet,
    Select,
    environment_variables_field,
    idle_timeout_field,
    image_field,
    resources_per_worker_field,
    standard_handler,
)

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

namespace = os.environ.get("POD_NAMESPACE", "jhub")

# -- the service ------------------------------------------------------------------------
c.HubgateService.backend_class = "kubernetes"
c.HubgateService.service_url = "http://0.0.0.0:8000"
# Scheduler pods report to the service over TLS (each sends its cluster's secret token):
# through the hub's public https address, where the ingress (cert-manager / Let's Encrypt,
# or z2jh's proxy.https) terminates TLS and the hub's proxy forwards
# /services/dask-gateway/ to the service. The agent verifies the certificate against the
# image's CA store; for an internal CA set agent_ca_file (mounted from a ConfigMap).
c.HubgateService.agent_url = "wss://hub.example.org/services/dask-gateway/api/agent/ws"
# c.HubgateService.agent_ca_file = "/etc/hubgate/agent-ca.pem"
# Schedulers and workers run the image's own interpreter, not the service's.
c.HubgateService.python = "python"
c.HubgateService.scheduler_proxy_address = "0.0.0.0:8786"
# What clients outside the cluster use (the LoadBalancer's DNS name).
c.HubgateService.public_proxy_address = "gateway://dask.example.org:8786"
# Owners' notebooks connect to their schedulers' pod IPs directly (hubgate's client,
# falling back to the proxy): needs networkpolicy-direct-connect.yaml; False without it.
c.HubgateService.direct_connect = True
# Dashboards, each cluster on an origin of its own: the ingress sends *.dask.example.org
# (wildcard DNS and certificate) to the hubgate Service's "dashboards" port.
c.HubgateService.dashboard_url = "https://{cluster}.dask.example.org"
c.HubgateService.dashboard_bind_address = "0.0.0.0:8790"
c.HubgateService.cluster_start_timeout = 300  # a new node can take minutes to come up
c.HubgateService.worker_start_timeout = 300
c.HubgateService.user_limits = {"max_clusters": 3, "max_cores": 64, "max_memory": "512G"}

# -- where pods run ---------------------------------------------------------------------
INSTANCE_TYPES = {
    # option shown to users -> node placement
    "n2-highmem-16 (16 CPU, 128 GiB)": "n2-highmem-16",
    "r5.4xlarge (16 CPU, 128 GiB)": "r5.4xlarge",
}
c.KubernetesBackend.namespace = namespace
c.KubernetesBackend.node_selector = {"hub.jupyter.org/node-purpose": "user"}
c.KubernetesBackend.tolerations = [
    {
        "key": "hub.jupyter.org/dedicated",
        "operator": "Equal",
        "value": "user",
        "effect": "NoSchedule",
    },
    {
        "key": "hub.jupyter.org_dedicated",
        "operator": "Equal",
        "value": "user",
        "effect": "NoSchedule",
    },
]
c.KubernetesBackend.instance_types = {
    machine: {"node_selector": {"node.kubernetes.io/instance-type": machine}}
    for machine in INSTANCE_TYPES.values()
}
# c.KubernetesBackend.image_pull_secrets = ["regcred"]
# Pods run as this uid with runAsNonRoot (the kubelet refuses root) and no capabilities;
# 1000 is the docker-stacks images' "jovyan". At least min_uid.
c.KubernetesBackend.run_as_user = 1000

# -- what users choose ------------------------------------------------------------------
c.HubgateService.cluster_options = OptionSet(
    Select(
        "instance_type",
        options=list(INSTANCE_TYPES.items()),
        label="Instance type running worker containers",
        help="The machine type of the nodes the scheduler and workers run on.",
    ),
    resources_per_worker_field(gib_per_cpu=7.5),
    image_field(os.environ.get("JUPYTER_IMAGE_SPEC", "")),
    environment_variables_field(),
    idle_timeout_field(30),
    handler=standard_handler,
)
