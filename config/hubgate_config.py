"""An example configuration of the hubgate service for a university hub.

Every option, with its help, is printed by ``hubgate generate-config``. This file shows
the ones most hubs set: the database, options with profiles, limits and admins.
"""

from hubgate.options import (
    OptionSet,
    environment_variables_field,
    idle_timeout_field,
    profile_field,
    standard_handler,
    worker_cores_field,
    worker_memory_field,
)

c = get_config()  # noqa: F821

GIB = 2**30

# --- where state lives -----------------------------------------------------------------
# SQLite by default; PostgreSQL for production. Secrets in it are encrypted with the keys
# in HUBGATE_ENCRYPTION_KEYS (make one with `hubgate generate-key`) or a generated key file.
c.HubgateService.db_url = "postgresql+psycopg://hubgate:secret@db.example.org/hubgate"
c.HubgateService.data_dir = "/var/lib/hubgate"

# --- who runs users' processes (the local backend) ------------------------------------------
# The service runs as root; each user's schedulers, workers and setup scripts run under an
# account of that user's, never as root, the service or another user:
#   "system":    the user's system account, named by a template (TLJH: "jupyter-{username}");
#                a hub user without one cannot create clusters (403).
#   "uid-range": for hubs whose users have no system accounts (what `hubgate demo` uses):
#                each hub user gets a uid of their own from uid_range, kept in db_url.
# Accounts below min_uid (system accounts) and the service's own are always refused.
# backend_class = "unsafe-local" runs every cluster as the service: single-user set-ups only.
c.LocalBackend.account_mode = "system"
c.LocalBackend.account_template = "{username}"
# c.LocalBackend.account_mode = "uid-range"
# c.LocalBackend.uid_range = (2_000_000_000, 2_000_999_999)  # no system account or subuid here
c.Backend.min_uid = 1000
# Users' processes must reach this folder: its parent folders need o+x (it is made 0711,
# each cluster's folder inside it 0700 and owned by the cluster's account).
c.LocalBackend.work_dir = "/var/lib/hubgate-clusters"

# --- the scheduler proxy that clients reach as gateway://host:port -----------------------
c.HubgateService.scheduler_proxy_address = "0.0.0.0:8786"
c.HubgateService.public_proxy_address = "gateway://hub.example.org:8786"

# --- dashboards, each cluster on an origin of its own (never the hub's) ---------------------
# Wildcard DNS *.dask.example.org and a wildcard certificate at the TLS terminator, which
# sends those hosts (Host header kept) to the dashboard listener.
c.HubgateService.dashboard_url = "https://{cluster}.dask.example.org"
c.HubgateService.dashboard_bind_address = "127.0.0.1:8790"

# --- what users may choose ---------------------------------------------------------------
PROFILES = [
    ("small (1 core, 4 GiB)", {"worker_cores": 1, "worker_memory": 4 * GIB}),
    ("medium (2 cores, 8 GiB)", {"worker_cores": 2, "worker_memory": 8 * GIB}),
    ("large (4 cores, 16 GiB)", {"worker_cores": 4, "worker_memory": 16 * GIB}),
]


def options_for(user):
    """Students pick a profile; staff may also set cores and memory freely."""
    fields = [
        profile_field(PROFILES, default=PROFILES[0][0]),
        environment_variables_field(),
        idle_timeout_field(default=30, max=8 * 60),
    ]
    if "staff" in user.groups:
        fields += [worker_cores_field(default=1, max=8), worker_memory_field(default=4, max=32)]
    return OptionSet(*fields, handler=standard_handler)


c.HubgateService.cluster_options = options_for

# --- limits -------------------------------------------------------------------------------
# per cluster
c.HubgateService.cluster_config = {"max_workers": 20, "scheduler_memory": "2G"}
# per user, across all of their clusters; a group's limits replace them for its members
c.HubgateService.user_limits = {"max_clusters": 2, "max_cores": 16, "max_memory": "64G"}
c.HubgateService.group_limits = {
    "staff": {"max_clusters": 5, "max_cores": 64, "max_memory": "256G"}
}

# --- getting resources back -----------------------------------------------------------------
# A cluster made in a notebook server (its kernels, widgets, the JupyterLab sidebar) stops
# when that server stops: logged out, culled, stopped by an admin. Clusters made with a
# /hub/token token (a laptop) are left alone. The hub must grant the service list:users
# and read:servers (see jupyterhub_config.py); it is asked once a minute here.
c.HubgateService.stop_clusters_with_server = True
c.HubgateService.server_poll_interval = 60

# --- admins ---------------------------------------------------------------------------------
# Admin powers come only from a scope on the caller's token, which the hub grants with a
# role (see jupyterhub_config.py: the "hubgate-admin" role, e.g. for the hpc-support
# group). This is its name (the default):
c.HubgateService.admin_scope = "custom:hubgate:admin"
