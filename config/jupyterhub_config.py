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
SCHEDULER_PROXY = "hub.example.org:8786"

SCOPE = f"access:services!service={SERVICE_NAME}"

c.JupyterHub.services = [
    {
        "name": SERVICE_NAME,
        # the service listens here; the hub's proxy routes /services/dask-gateway/ to it
        "url": f"http://127.0.0.1:{SERVICE_PORT}",
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
        "display": True,
    }
]

c.JupyterHub.load_roles = [
    # every user may use the service (add it to JupyterHub's default 'user' role);
    # to restrict it, give the scope to a group instead
    {"name": "user", "scopes": ["self", SCOPE]},
    # the service looks up users' admin flag and groups (for admins and group limits)
    {"name": "hubgate", "scopes": ["read:users", "read:groups"], "services": [SERVICE_NAME]},
]

# the token inside each single-user server may call the service (notebooks, lab extension)
c.Spawner.server_token_scopes = ["users:activity!user", SCOPE]

# what DaskHub and 2i2c set: Gateway() needs no arguments in a notebook
c.Spawner.environment = {
    "DASK_GATEWAY__ADDRESS": f"{HUB_URL}/services/{SERVICE_NAME}",
    "DASK_GATEWAY__PUBLIC_ADDRESS": f"{HUB_URL}/services/{SERVICE_NAME}",
    "DASK_GATEWAY__PROXY_ADDRESS": f"gateway://{SCHEDULER_PROXY}",
    "DASK_GATEWAY__AUTH__TYPE": "jupyterhub",
}
