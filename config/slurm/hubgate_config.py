"""hubgate on a Slurm site, shaped like JASMIN's dask-gateway on LOTUS.

Every scheduler and worker is a Slurm job submitted as the user who asked for the
cluster; users pick a worker size and may give a ``worker_setup`` command that activates
their own environment on the compute node (``source ~/envs/dask/bin/activate``).

Load with ``hubgate --config /etc/hubgate/hubgate_config.py`` (or point the hub's
service entry at it). The service must run as root for ``runuser`` (the default
``submit_as_user``), or as an account with sudo rights (see below).
"""

from hubgate.options import (
    OptionSet,
    Select,
    String,
    environment_variables_field,
    idle_timeout_field,
    standard_handler,
    worker_cores_field,
    worker_memory_field,
    worker_setup_field,
)

c = get_config()  # noqa: F821 (provided by traitlets when it loads this file)

# -- the service ------------------------------------------------------------------------
c.HubgateService.backend_class = "slurm"
# Schedulers on compute nodes report to the service over TLS: each sends its cluster's
# secret token on this websocket. TLS is terminated by the hub's https front end (nginx
# in front of the hub's proxy, or JupyterHub's own ssl_cert/ssl_key), which forwards
# /services/dask-gateway/ to the service like any other request. The scheduler verifies
# the certificate against the node's system CA store; for an internal CA, give its
# certificate(s) here and the service ships them to every scheduler.
c.HubgateService.agent_url = "wss://dask-gateway.example.ac.uk/services/dask-gateway/api/agent/ws"
# c.HubgateService.agent_ca_file = "/etc/pki/tls/certs/example-ac-uk-ca.pem"
c.HubgateService.scheduler_proxy_address = "0.0.0.0:8786"
c.HubgateService.public_proxy_address = "gateway://dask-gateway.example.ac.uk:8786"
# Dashboards on origins of their own (wildcard DNS and certificate for
# *.dask-dashboards.example.ac.uk at the TLS terminator, routed to this listener).
c.HubgateService.dashboard_url = "https://{cluster}.dask-dashboards.example.ac.uk"
c.HubgateService.dashboard_bind_address = "127.0.0.1:8790"
# A job can wait in the queue for a while before it starts.
c.HubgateService.cluster_start_timeout = 1800
c.HubgateService.worker_start_timeout = 1800
c.HubgateService.user_limits = {"max_clusters": 2, "max_cores": 64, "max_memory": "256G"}

# -- Slurm ------------------------------------------------------------------------------
c.SlurmBackend.partition = "par-single"  # a cluster option "partition" overrides it
c.SlurmBackend.account = ""  # the user's default account
c.SlurmBackend.qos = ""
c.SlurmBackend.walltime = "1-00:00:00"  # clusters live at most a day
c.SlurmBackend.extra_directives = []  # e.g. ["--constraint=amd"]
# How jobs are submitted as the user: runuser when the service runs as root, or
#   ["sudo", "-n", "-u", "{username}", "--"]
# for a service account whose sudoers entry allows sbatch/scancel/tail/python as users.
c.SlurmBackend.submit_as_user = ["runuser", "-u", "{username}", "--"]
# Hub user names are the JASMIN account names; map them here if they differ.
c.SlurmBackend.system_username = "{username}"
# Hub users whose account is below this uid (root, slurm, daemon, ...) or is the service's
# own get a 403 and no job is submitted for them.
c.SlurmBackend.min_uid = 1000
# Credentials and job output go to the user's home (0700), which compute nodes mount.
c.SlurmBackend.staging_dir = "{home}/.hubgate/{cluster}/{name}"
# Cancel as the user (the service account is not a Slurm operator).
c.SlurmBackend.cancel_as_user = True
# Compute nodes are reached by their fully qualified names.
c.SlurmBackend.advertise_host_command = ["hostname", "-f"]
# The interpreter, readable by every user, that prepares staging folders as the user.
c.SlurmBackend.staging_python = "/opt/hubgate/venv/bin/python"
# Schedulers as jobs too (default); True runs them on the service host at once, which
# avoids waiting in the queue for the scheduler but puts their load on this host.
c.SlurmBackend.scheduler_on_service_host = False

# -- what users choose ------------------------------------------------------------------
c.HubgateService.cluster_options = OptionSet(
    worker_cores_field(1, max=8),
    worker_memory_field(4, max=32),
    Select(
        "partition",
        options=["par-single", "par-multi", "short-serial"],
        label="LOTUS partition",
        help="The Slurm partition the scheduler and workers are queued in.",
    ),
    String(
        "walltime",
        "08:00:00",
        label="Walltime",
        help="How long the cluster's jobs may run (HH:MM:SS).",
    ),
    worker_setup_field("source /apps/jasmin/jaspy/miniconda_envs/jaspy3.11/bin/activate"),
    environment_variables_field(),
    idle_timeout_field(60),
    handler=standard_handler,
)
