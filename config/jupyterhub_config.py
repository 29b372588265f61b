"""JupyterHub configuration that adds hubgate to a hub (merge it into yours).

It registers hubgate as a managed service under the name dask-gateway (so the URLs of a
hub moving from dask-gateway stay the same), grants users and their servers the scope
to call it, and gives every single-user server the environment that makes
``Gateway()`` work with no arguments.

Adjust HUB_URL (the public URL of the hub), SCHEDULER_PROXY (the public host:port of
hubgate's scheduler proxy) and the service's command.
"""

import sys

c = get_config()  # noqa: F821

HUB_URL = "https://hub.example.org"
SERVICE_NAME = "dask-gateway"
SERVICE_PORT = 8789
# where single-user servers reach the service itself: their API calls skip the hub's
# proxy, one hop fewer (bench/README.md). Servers on this machine use loopback; with
# containers, the service's own host name (on Kubernetes its Service, e.g.
# http://hubgate.<namespace>.svc:8789), which the service must then listen on.
SERVICE_URL = f"http://127.0.0.1:{SERVICE_PORT}"
SCHEDULER_PROXY = "hub.example.org:8786"

SCOPE = f"access:services!service={SERVICE_NAME}"
# hubgate's admins hold this scope (HubgateService.admin_scope): they list, scale and stop
# everyone's clusters and open their dashboards, but never get another user's credentials
ADMIN_SCOPE = "custom:hubgate:admin"
ADMIN_USERS = ["ada"]  # e.g. the hub's admin_users
ADMIN_GROUPS = ["hpc-support"]

c.JupyterHub.custom_scopes = {
    ADMIN_SCOPE: {
        "description": "Administer everyone's Dask clusters: list, scale and stop them and "
        "open their dashboards (never their credentials).",
    },
}

c.JupyterHub.services = [
    {
        "name": SERVICE_NAME,
        # the service listens here; the hub's proxy routes /services/dask-gateway/ to it
        "url": SERVICE_URL,
        "command": [
            sys.executable,
            "-m",
            "hubgate",
            "service",
            "--config",
            "/etc/hubgate/hubgate_config.py",
        ],
        # browsers opening dashboards and the clusters page log in without a consent page
        "oauth_no_confirm": True,
        # ...and an admin's login there carries the admin scope (others' never does)
        "oauth_client_allowed_scopes": [ADMIN_SCOPE],
        "display": True,
    }
]

c.JupyterHub.load_roles = [
    # every user may use the service (add it to JupyterHub's default 'user' role);
    # to restrict it, give the scope to a group instead
    {"name": "user", "scopes": ["self", SCOPE]},
    # the service looks up users' groups (for group limits) and, for
    # HubgateService.stop_clusters_with_server (on in hubgate_config.py), lists users'
    # running servers: list:users and read:servers (leave them out with the option off)
    {
        "name": "hubgate",
        "scopes": ["read:users", "read:groups", "list:users", "read:servers"],
        "services": [SERVICE_NAME],
    },
    # hubgate's admins: a hub admin is not one unless listed here (or in a group here)
    {
        "name": "hubgate-admin",
        "scopes": [ADMIN_SCOPE],
        "users": ADMIN_USERS,
        "groups": ADMIN_GROUPS,
    },
]

# the token inside each single-user server may call the service (notebooks, lab
# extension), never as an admin: code in the server, and whoever shares it, holds it.
# Admins use a token from /hub/token (which inherits the admin scope) or the clusters page.
# access:servers!server (JupyterHub's default for server tokens) becomes
# access:servers!server=<user>/<server>: it tells hubgate which server made a cluster, for
# HubgateService.stop_clusters_with_server.
c.Spawner.server_token_scopes = ["users:activity!user", "access:servers!server", SCOPE]

# what DaskHub and 2i2c set: Gateway() needs no arguments in a notebook
c.Spawner.environment = {
    # API calls straight to the service; links for browsers through the hub
    "DASK_GATEWAY__ADDRESS": f"{SERVICE_URL}/services/{SERVICE_NAME}",
    "DASK_GATEWAY__PUBLIC_ADDRESS": f"{HUB_URL}/services/{SERVICE_NAME}",
    "DASK_GATEWAY__PROXY_ADDRESS": f"gateway://{SCHEDULER_PROXY}",
    "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
    # with dask-labextension-gateway installed, dask-labextension's cluster manager uses
    # hubgate (through the official client); without it this key does nothing
    "DASK_LABEXTENSION__USE_GATEWAY": "True",
}
