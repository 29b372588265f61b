"""The hubgate service: a JupyterHub service that gives users Dask clusters.

Started by the hub as a managed service (it reads the ``JUPYTERHUB_*`` environment the
hub gives it) or run on its own as an external service. Configured with traitlets, from
``hubgate_config.py`` (``hubgate generate-config`` writes one with every option).
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import secrets
import signal
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlparse

from jupyterhub.traitlets import EntryPointType
from jupyterhub.utils import make_ssl_context
from tornado.httpserver import HTTPServer
from tornado.web import Application as TornadoApplication
from tornado.web import HTTPError
from traitlets import Any as AnyTrait
from traitlets import (
    Bool,
    Dict,
    Float,
    Integer,
    List,
    TraitError,
    Unicode,
    default,
    observe,
    validate,
)
from traitlets.config import Application, catch_config_error

from .._version import __version__
from ..options import OptionSet
from ..spawners.base import Backend, BackendError
from . import api_hubgate, api_v1
from .agent_socket import AgentSocket
from .auth import ADMIN_SCOPE, Authenticator, HubgateHubAuth
from .cluster_config import ClusterConfig, ConfigError
from .cluster_settings import ClusterSettings
from .dashboard_app import DashboardAccess, make_dashboard_app
from .dashboard_entry import ENTRY_SETTING, DashboardEntry, entry_routes
from .dashboard_origin import DashboardOrigin
from .dashboard_proxy import check_dashboard_access
from .dashboard_sessions import DashboardGrant, DashboardSessions
from .direct_address import check_host_template
from .errors import ServiceError
from .fd_limit import raise_open_files_limit
from .handlers_base import NotFoundHandler, OAuthCallbackHandler
from .hub_servers import HubRefused, HubServers
from .limits import LimitsPolicy, UserLimits, limits_table
from .manager import ClusterManager, ManagerSettings
from .model import ClusterStatus, User
from .pages import page_routes
from .scheduler_proxy import ProxyLimits, SchedulerProxy, parse_target
from .schema import SchemaError
from .secrets import SecretBox, SecretsError, configured_keys, load_or_create_keys
from .server_watch import ServerWatch
from .store import ClusterStore

log = logging.getLogger("hubgate")


class HubgateService(Application):
    name = "hubgate"
    description = "A JupyterHub service that gives users Dask clusters (dask-gateway compatible)"
    version = __version__

    config_file = Unicode(
        "hubgate_config.py",
        config=True,
        help="The configuration file to load (a traitlets Python config file).",
    )

    service_name = Unicode(
        config=True,
        help="""The JupyterHub service name. Defaults to $JUPYTERHUB_SERVICE_NAME, else
        'dask-gateway', so that deployments moving from dask-gateway keep their URLs
        (/services/dask-gateway/).""",
    )

    @default("service_name")
    def _default_service_name(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_NAME", "dask-gateway")

    service_url = Unicode(
        config=True,
        help="""The URL the service listens on. Defaults to $JUPYTERHUB_SERVICE_URL (set by
        the hub for managed services), else http://127.0.0.1:8789.""",
    )

    @default("service_url")
    def _default_service_url(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8789")

    service_prefix = Unicode(
        config=True,
        help="""The URL path prefix of the service behind the hub's proxy. Defaults to
        $JUPYTERHUB_SERVICE_PREFIX, else /services/<service_name>/.""",
    )

    @default("service_prefix")
    def _default_service_prefix(self) -> str:
        return os.environ.get("JUPYTERHUB_SERVICE_PREFIX", f"/services/{self.service_name}/")

    @validate("service_prefix")
    def _slashes(self, proposal: Any) -> str:
        return "/" + proposal["value"].strip("/") + "/"

    scheduler_proxy_address = Unicode(
        "127.0.0.1:8786",
        config=True,
        help="""host:port of the scheduler proxy: one TLS port that routes each client
        connection to its cluster's scheduler by SNI (daskgateway-<name>), without
        terminating TLS. Clients reach it as gateway://<public host>:<port>.""",
    )

    public_proxy_address = Unicode(
        config=True,
        help="""The scheduler proxy's address as clients should use it
        (gateway://host:port); shown in hubgate's own API. Defaults to
        gateway://<scheduler_proxy_address>.""",
    )

    @default("public_proxy_address")
    def _default_public_proxy(self) -> str:
        return f"gateway://{self.scheduler_proxy_address}"

    direct_connect = Bool(
        True,
        config=True,
        help="""Give each cluster's owner (only; admins never) its scheduler's direct
        address in hubgate's API (direct_scheduler_address), so that hubgate's client
        connects to the scheduler without the scheduler proxy when it can reach it, and
        falls back to the proxy when it cannot. The address gives nobody access: the
        scheduler requires the cluster's client certificate. False: clients always use
        the proxy (the official dask-gateway client always does).""",
    )

    list_credentials = Bool(
        False,
        config=True,
        help="""Include each running cluster's client certificate and key (tls_cert,
        tls_key) for its owner in the answer to list_clusters (GET /api/v1/clusters/),
        as dask-gateway does. False (the default): only the answer for one cluster
        (GET /api/v1/clusters/<name>, which connect() and get_cluster() read) carries
        them, so a list stays small and a private key leaves the service only when a
        client connects. dask-gateway's client leaves ClusterReport.tls_cert and tls_key
        None then, as its documentation describes for a report that is not full; turn
        this on only for a tool that reads them from list_clusters().""",
    )

    direct_connect_host = Unicode(
        "{host}",
        config=True,
        help="""The host in direct scheduler addresses, as a template of the backend's
        host for the scheduler ({host}: 127.0.0.1 on the local backend, the job's node
        for batch, the pod IP on Kubernetes), for sites where notebooks reach compute
        nodes under other names, e.g. '{host}-ib' for an InfiniBand interface.""",
    )

    @validate("direct_connect_host")
    def _check_direct_connect_host(self, proposal: Any) -> str:
        try:
            return check_host_template(proposal["value"])
        except ValueError as exc:
            raise TraitError(str(exc)) from None

    # The scheduler proxy's caps and timeouts (hub_service/proxy_admission.ProxyLimits).
    scheduler_proxy_max_connections = Integer(
        ProxyLimits.max_connections,
        config=True,
        help="""At most this many client connections open on the scheduler proxy at once
        (in their handshake or relayed); more are closed at once. Each relayed connection
        takes 6 file descriptors: the service raises its soft open-files limit to the hard
        limit at start-up and lowers this cap, with a warning, to what three quarters of
        that limit allow. 0 means no cap other than the descriptor limit.""",
    )
    scheduler_proxy_max_connections_per_address = Integer(
        ProxyLimits.max_connections_per_address,
        config=True,
        help="""At most this many connections open at once from one client address (an
        IPv4 address, or an IPv6 /64). Every user of a shared host (a login node, a NAT,
        single-user servers on one machine) shares it: each Dask client holds a few
        connections. 0 means no cap.""",
    )
    scheduler_proxy_max_handshakes = Integer(
        ProxyLimits.max_handshakes,
        config=True,
        help="""At most this many connections in their handshake at once (accepted, the
        TLS ClientHello not yet read and routed); more are closed at once. A real client
        sends its ClientHello as soon as it connects, so only slow or hostile ones wait
        here, each for at most scheduler_proxy_hello_timeout. 0 means no cap.""",
    )
    scheduler_proxy_max_handshakes_per_address = Integer(
        ProxyLimits.max_handshakes_per_address,
        config=True,
        help="""At most this many handshakes in progress at once from one client address
        (an IPv4 address, or an IPv6 /64), so that one host cannot take all of
        scheduler_proxy_max_handshakes. 0 means no cap.""",
    )
    scheduler_proxy_hello_timeout = Float(
        ProxyLimits.hello_timeout,
        config=True,
        help="""Seconds a new connection has to send its complete TLS ClientHello before
        the scheduler proxy closes it (slow or silent clients hold a handshake slot
        until then).""",
    )
    scheduler_proxy_connect_timeout = Float(
        ProxyLimits.connect_timeout,
        config=True,
        help="""Seconds the scheduler proxy waits for a cluster's scheduler to accept a
        connection before it gives up on the client's connection.""",
    )
    scheduler_proxy_idle_timeout = Float(
        ProxyLimits.idle_timeout,
        config=True,
        help="""Seconds a relayed connection may move no byte either way before the
        scheduler proxy closes it. A Dask client's main connection carries a heartbeat
        every few seconds (distributed.client.heartbeat, 5 s) and never idles that long;
        its idle pooled connections notice the close and are opened again when needed.
        0 means never.""",
    )
    scheduler_proxy_relay_threads = Integer(
        ProxyLimits.relay_threads,
        config=True,
        help="""Threads that relay the scheduler proxy's routed connections, each serving
        many connections (the number of threads does not grow with connections).""",
    )

    agent_url = Unicode(
        config=True,
        help="""The websocket URL schedulers use to report to the service. Defaults to the
        service's own listening address (right when schedulers run on this host or can
        reach it); set it to a URL through the hub's proxy for batch or Kubernetes
        backends whose nodes cannot reach the service directly.""",
    )

    @default("agent_url")
    def _default_agent_url(self) -> str:
        url = urlparse(self.service_url)
        scheme = "wss" if url.scheme == "https" else "ws"
        return f"{scheme}://{url.netloc}{self.service_prefix}api/agent/ws"

    agent_ca_file = Unicode(
        "",
        config=True,
        help="""A PEM file of the CA certificate(s) that schedulers trust when agent_url is
        wss:// and its certificate is not signed by a CA in the scheduler's system
        store (an internal CA). The service reads it at start and sends it to each
        scheduler beside its TLS credentials. Schedulers always verify a wss:// agent
        URL's certificate and host name.""",
    )

    data_dir = Unicode(
        config=True,
        help="""Folder for the service's own files: the SQLite database, the generated
        encryption key and cookie secret. Defaults to $HUBGATE_DATA_DIR, else
        ~/.local/share/hubgate.""",
    )

    @default("data_dir")
    def _default_data_dir(self) -> str:
        return os.environ.get("HUBGATE_DATA_DIR", str(Path.home() / ".local" / "share" / "hubgate"))

    db_url = Unicode(
        config=True,
        help="""SQLAlchemy URL of the database that keeps the clusters, so that a restart
        of the service loses none: a SQLite file by default
        (sqlite:///<data_dir>/hubgate.sqlite), PostgreSQL for production
        (postgresql+psycopg://user:password@host/db).""",
    )

    @default("db_url")
    def _default_db_url(self) -> str:
        return f"sqlite:///{Path(self.data_dir) / 'hubgate.sqlite'}"

    upgrade_db = Bool(
        None,
        allow_none=True,
        config=True,
        help="""Upgrade the database's schema at start when it was written by an older
        hubgate.

        None (the default): a SQLite file is upgraded, after a copy of it is written
        beside it (<file>.<time>.bak); any other database is left alone and the service
        stops with a message saying to back it up and run `hubgate upgrade-db`. True:
        any database is upgraded at start (back PostgreSQL up regularly). False: never;
        the service stops instead. A database written by a newer hubgate is always
        refused.""",
    )

    encryption_keys = List(
        Unicode(),
        config=True,
        help="""Fernet keys that encrypt secrets (cluster tokens, TLS keys) in the
        database. The first encrypts, all decrypt (rotation). Defaults to
        $HUBGATE_ENCRYPTION_KEYS (';'-separated); without either, a key is generated on
        first run into <data_dir>/hubgate.key (mode 0600).""",
    )

    backend_class = EntryPointType(
        default_value="hubgate.spawners.local.LocalBackend",
        klass=Backend,
        entry_point_group="hubgate.backends",
        config=True,
        help="""The backend that runs schedulers and workers: 'local' (processes on this
        host, the default), 'slurm', 'pbs', 'sge', 'lsf', 'htcondor', 'kubernetes', or an
        import path of a Backend subclass.""",
    )

    cluster_options = AnyTrait(
        config=True,
        help="""The options users may set for their clusters: a hubgate.options.OptionSet,
        or a callable (user) -> OptionSet (sync or async) for per-user or per-group
        option sets. The user has .name, .admin and .groups. Checked at start: anything
        else stops the service, and so does a key that the handler of an OptionSet
        given here (standard_handler, or none) would return and neither hubgate nor the
        backend takes. The result of an operator's own handler is checked per request:
        a key the backend does not take (max_worker for max_workers) refuses the
        request with a 409 that says the hub is misconfigured, and logs the key.""",
    )

    @validate("cluster_options")
    def _option_set_or_callable(self, proposal: Any) -> Any:
        value = proposal["value"]
        if value is not None and not isinstance(value, OptionSet) and not callable(value):
            raise TraitError(
                "HubgateService.cluster_options must be a hubgate.options.OptionSet or a "
                f"callable (user) -> OptionSet, got {value!r}"
            )
        return value

    @default("cluster_options")
    def _default_cluster_options(self) -> OptionSet:
        from ..options import standard_handler, worker_cores_field, worker_memory_field

        return OptionSet(
            worker_cores_field(default=1, max=4),
            worker_memory_field(default=1, max=8),
            handler=standard_handler,
        )

    cluster_config = Dict(
        config=True,
        help="""Defaults for every cluster's configuration, which the options handler's
        result overrides: worker_cores, worker_memory (bytes or '2G'), scheduler_cores,
        scheduler_memory, environment, worker_setup, scheduler_setup, python, image, idle_timeout
        (seconds, 0 = never), max_workers, max_cores, max_memory (per-cluster limits),
        and the keys the backend takes (Backend.accepted_resources: partition, account,
        walltime... for batch backends, instance_type on Kubernetes). Checked at start:
        an unknown key or a wrong value stops the service with a message naming it.""",
    )

    user_limits = Dict(
        config=True,
        help="""Limits across all of a user's running clusters: {"max_clusters": 2,
        "max_cores": 16, "max_memory": "64G"}. Omitted keys mean no limit. Checked at
        start: another key or a wrong value stops the service with a message.""",
    )

    group_limits = Dict(
        config=True,
        help="""Limits per hub group, like user_limits: {"students": {...}, "staff":
        {...}}. A user in several groups gets the most generous of them; a user in
        none gets user_limits.""",
    )

    per_user_limits = Dict(
        config=True,
        help="""Limits for named users, overriding their groups': {"alice": {...}}.""",
    )

    @validate("user_limits", "group_limits", "per_user_limits")
    def _typed_limits(self, proposal: Any) -> dict[str, Any]:
        name = proposal["trait"].name
        try:
            if name == "user_limits":
                UserLimits.from_config(proposal["value"], f"HubgateService.{name}")
            else:
                limits_table(proposal["value"], f"HubgateService.{name}")
        except ConfigError as exc:
            raise TraitError(str(exc)) from None
        return proposal["value"]

    @observe("user_limits", "group_limits", "per_user_limits")
    def _limits_changed(self, change: Any) -> None:
        self._limits_policy = None

    @observe("cluster_config", "cluster_options", "backend_class")
    def _cluster_settings_changed(self, change: Any) -> None:
        self._cluster_settings = None

    max_workers_per_cluster = Integer(
        1000,
        config=True,
        help="""The most workers any one cluster may have, whatever the limits above say
        (and when none are configured). Within it, requests above a cluster's or user's
        limit are clamped with a warning, as dask-gateway does; a request above it
        (scale(10**8)) is refused with a 422.""",
    )

    max_clusters_per_user = Integer(
        100,
        config=True,
        help="""The most clusters one user may run at once, whatever the limits above
        say (and when none are configured); a lower max_clusters in user_limits,
        group_limits or per_user_limits wins.""",
    )

    @validate("max_workers_per_cluster", "max_clusters_per_user")
    def _at_least_one(self, proposal: Any) -> int:
        if proposal["value"] < 1:
            raise TraitError(
                f"HubgateService.{proposal['trait'].name} must be at least 1, "
                f"got {proposal['value']}"
            )
        return proposal["value"]

    admin_scope = Unicode(
        ADMIN_SCOPE,
        config=True,
        help="""The token scope that makes a caller an admin of this service: admins list,
        scale and stop everyone's clusters and open their dashboards (never their
        credentials). The only source of admin powers: the hub grants it through roles,
        e.g. in jupyterhub_config.py

            c.JupyterHub.custom_scopes = {"custom:hubgate:admin": {"description": "..."}}
            c.JupyterHub.load_roles.append({"name": "hubgate-admin",
                "scopes": ["custom:hubgate:admin"], "users": ["ada"], "groups": ["hpc-support"]})

        and, for the clusters page, in the service's "oauth_client_allowed_scopes".
        A token without the scope (a narrow token of a hub admin, a server's token) is
        not an admin token.""",
    )

    admin_groups = List(
        Unicode(),
        config=True,
        help="""Deprecated and ignored: admin powers come only from the admin_scope on
        the caller's token. Grant that scope to these groups with a role in the hub's
        configuration instead (see admin_scope).""",
    )

    @observe("admin_groups")
    def _admin_groups_deprecated(self, change: Any) -> None:
        if change["new"]:
            self.log.warning(
                "HubgateService.admin_groups = %r is ignored: admin powers come only from "
                "the scope %s on the caller's token. Grant it in jupyterhub_config.py: "
                "c.JupyterHub.load_roles.append({'name': 'hubgate-admin', 'scopes': [%r], "
                "'groups': %r}) (with c.JupyterHub.custom_scopes defining %s)",
                change["new"],
                self.admin_scope,
                self.admin_scope,
                list(change["new"]),
                self.admin_scope,
            )

    require_access_scope = Bool(
        True,
        config=True,
        help="""Require the token's access:services!service=<name> scope (the hub grants
        it through roles). Turning this off lets any valid hub token in.""",
    )

    session_max_age = Float(
        300.0,
        config=True,
        help="""Seconds the service's own session cookie stays valid after a
        token-authenticated request (saves clients the 401 round trip).""",
    )

    dashboard_url = Unicode(
        "",
        config=True,
        help="""The origin that serves the cluster dashboards, as browsers reach it: never
        the hub's own, so that a page a user's scheduler serves cannot act with the
        viewer's hub login. With {cluster} at the start of the host name
        (https://{cluster}.dask.example.org: wildcard DNS and certificate) every cluster
        gets an origin of its own, the safest choice; without it
        (https://dask.example.org) all dashboards share one origin, where one user's
        dashboard page can read another's that the same browser has open. Dashboards are
        at /clusters/<name>/ on it; the service's own <prefix>clusters/<name>/ links (the
        ones dask-gateway's client shows) send the viewer there. Route it to
        dashboard_bind_address. Empty: no dashboards.""",
    )

    @validate("dashboard_url")
    def _dashboard_origin(self, proposal: Any) -> str:
        if proposal["value"]:
            DashboardOrigin.parse(proposal["value"])
        return proposal["value"]

    dashboard_bind_address = Unicode(
        "127.0.0.1:8790",
        config=True,
        help="""host:port the dashboard listener binds (a second HTTP server of the
        service, for dashboard_url; used only when dashboard_url is set). Put it behind
        the same TLS terminator as the hub, with the dashboard_url host(s) routed to it
        and their Host header kept.""",
    )

    dashboard_session_max_age = Float(
        12 * 3600.0,
        config=True,
        help="""Seconds a browser's session on a dashboard lasts before the viewer must
        come through the hub again. Access is re-checked with every request meanwhile
        (the cluster still runs; the viewer's hub login still valid and, for an admin
        viewing another user's cluster, still an admin).""",
    )

    max_json_body_size = Integer(
        1024 * 1024,
        config=True,
        help="""Bytes of request body the API reads (cluster options, scale, adapt); a
        larger body is answered 413 with a JSON message, without being parsed or kept
        in memory.""",
    )

    max_body_size = Integer(
        64 * 1024 * 1024,
        config=True,
        help="""Bytes of request body the service's HTTP server accepts at all (its
        tornado max_body_size), dashboards included. A body above it is cut off with a
        bare 400 and the connection closed; between max_json_body_size and this, the API
        answers a JSON 413.""",
    )

    cluster_start_timeout = Float(
        60.0,
        config=True,
        help="Seconds a scheduler may take to start and report before the cluster FAILS.",
    )

    worker_start_timeout = Float(
        60.0,
        config=True,
        help="Seconds a worker may take to start and connect before it counts as failed.",
    )

    worker_start_failure_limit = Integer(
        3,
        config=True,
        help="Consecutive worker start failures after which the cluster is marked FAILED.",
    )

    poll_interval = Float(
        1.0,
        config=True,
        help="""Seconds between polls of the backend for dead processes (one call for
        all clusters). Agents report most changes at once; the poll catches the rest.""",
    )

    stopped_cluster_retention = Float(
        24 * 3600.0,
        config=True,
        help="Seconds a stopped cluster's record (and its logs) stays visible.",
    )

    finished_workers_kept = Integer(
        20,
        config=True,
        help="""Stopped or failed workers each cluster keeps on record, the most recent
        ones, whose logs and failure reasons stay available (get_logs). Older ones are
        forgotten, in memory and in the database, so a long-lived adaptive cluster does
        not pile up thousands of them (its events still mention them).""",
    )

    @validate("finished_workers_kept")
    def _not_negative(self, proposal: Any) -> int:
        if proposal["value"] < 0:
            raise ValueError(f"{proposal['trait'].name} must be 0 or more")
        return proposal["value"]

    python = Unicode(
        sys.executable,
        config=True,
        help="""The Python interpreter that runs schedulers and workers (must have
        hubgate and distributed installed). A cluster's 'python' config overrides it.""",
    )

    stop_clusters_on_shutdown = Bool(
        False,
        config=True,
        help="""Stop every cluster when the service stops. Off by default: clusters
        outlive a restart of the service and are picked up again.""",
    )

    stop_clusters_with_server = Bool(
        False,
        config=True,
        help="""Stop a cluster when the single-user server it was created from stops (its
        user stopped it, it was culled, the hub stopped it). Off by default.

        A cluster belongs to a server when it was created with that server's own
        token, the JUPYTERHUB_API_TOKEN inside it: from a notebook or kernel, a widget
        or the JupyterLab sidebar of that server. A named server's clusters go with
        that named server only. Clusters created with any other token (one from
        /hub/token, on a laptop or pasted into a notebook) belong to no server and are
        never stopped by this, whether or not their user has a server running.

        The service asks the hub for every user's active servers every
        server_poll_interval seconds (one request for all users, per 200 of them
        active) and stops a cluster when its server is gone from the answer or has
        started again since an earlier one; only clusters created before the question
        are judged. Nothing is stopped before the hub has answered (after a restart of
        the service or of the hub) or while it cannot be asked. The cluster's reason
        names the server: "stopped because the JupyterHub server it was created from
        (alice's default server) stopped".

        The hub must grant the service's role the scopes list:users and read:servers
        (the service stops at start when the hub refuses), and, if it sets
        Spawner.server_token_scopes, list "access:servers!server" there (JupyterHub's
        default server role has it) so that a server's token can be told apart; see
        config/jupyterhub_config.py.""",
    )

    server_poll_interval = Float(
        30.0,
        config=True,
        help="""Seconds between two looks at the hub's active servers, with
        stop_clusters_with_server: how long a cluster may outlive its server. Each look
        is one request to the hub for all users (one per 200 users with a server
        running), plus one per user whose server seems to have stopped.""",
    )

    @validate("server_poll_interval")
    def _positive_interval(self, proposal: Any) -> float:
        if proposal["value"] <= 0:
            raise ValueError(f"server_poll_interval must be more than 0, got {proposal['value']}")
        return proposal["value"]

    hub_token_url = Unicode(
        config=True,
        help="Where users make API tokens, shown in error messages (default: <hub>/hub/token).",
    )

    @default("hub_token_url")
    def _default_hub_token_url(self) -> str:
        base = os.environ.get("JUPYTERHUB_BASE_URL", "/")
        return base.rstrip("/") + "/hub/token"

    @default("log_level")
    def _default_log_level(self) -> int:
        return logging.INFO

    aliases = {
        "config": "HubgateService.config_file",
        "log-level": "Application.log_level",
    }

    # --- set-up -----------------------------------------------------------------------

    @catch_config_error
    def initialize(self, argv: list[str] | None = None) -> None:
        super().initialize(argv)
        # The default file is optional; a file the operator named must exist.
        named = "config_file" in self.config.get("HubgateService", {})
        if named and not Path(self.config_file).is_file():
            raise TraitError(
                f"HubgateService.config_file: {self.config_file!r} is not a file "
                f"(the working directory is {os.getcwd()})"
            )
        if self.config_file and Path(self.config_file).exists():
            self.load_config_file(self.config_file)
        self.log.setLevel(self.log_level)
        logging.getLogger("hubgate").setLevel(self.log_level)
        for name in ("hubgate", "tornado.access"):
            logging.getLogger(name).handlers = self.log.handlers
            logging.getLogger(name).propagate = False
        self.check_settings()

    # Parsed once from the dict-typed settings (the observers above drop them on change).
    _limits_policy: LimitsPolicy | None = None
    _cluster_settings: ClusterSettings | None = None

    def check_settings(self) -> None:
        """Parse every dict-typed setting now and make the backend (its own settings
        are checked when it is made): a mistake raises TraitError, which initialize
        turns into one message and exit status 1, before anything starts."""
        self.limits_policy()
        self.cluster_settings()
        try:
            configured_keys(list(self.encryption_keys))
        except SecretsError as exc:
            raise TraitError(str(exc)) from None
        if not hasattr(self, "backend"):
            self.backend = self.backend_class(parent=self, log=self.log)

    def limits_policy(self) -> LimitsPolicy:
        if self._limits_policy is None:
            try:
                self._limits_policy = LimitsPolicy.from_config(
                    self.user_limits, self.group_limits, self.per_user_limits
                )
            except ConfigError as exc:
                raise TraitError(str(exc)) from None
        return self._limits_policy

    def cluster_settings(self) -> ClusterSettings:
        if self._cluster_settings is None:
            self._cluster_settings = ClusterSettings.from_config(
                self.cluster_config, self.cluster_options, self.backend_class
            )
        return self._cluster_settings

    def cluster_config_for(self, handler_output: dict[str, Any], user: User) -> ClusterConfig:
        return self.cluster_settings().config_for(handler_output, user)

    def limits_for(self, user: User) -> UserLimits:
        return self.limits_policy().for_user(user)

    def _cookie_secret(self) -> bytes:
        path = Path(self.data_dir) / "cookie_secret"
        if path.exists():
            return path.read_bytes().strip()
        value = secrets.token_hex(32).encode()
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as f:
            f.write(value)
        return value

    async def start_service(self) -> None:
        """Open the database, take over surviving clusters, listen."""
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(None, _private_folder, Path(self.data_dir))
        keys = await loop.run_in_executor(
            None,
            load_or_create_keys,
            list(self.encryption_keys),
            Path(self.data_dir) / "hubgate.key",
        )
        self.store = ClusterStore(self.db_url, SecretBox(keys), upgrade_db=self.upgrade_db)
        try:
            await self.store.open()
        except SchemaError as exc:
            self.log.critical("The database cannot be used: %s", exc)
            await self.store.close()
            raise SystemExit(1) from None

        self.hub_auth = HubgateHubAuth(
            api_url=os.environ.get("JUPYTERHUB_API_URL", "http://127.0.0.1:8081/hub/api"),
            cache_max_age=60,
        )
        self.authenticator = Authenticator(
            self.hub_auth,
            service_name=self.service_name,
            service_prefix=self.service_prefix,
            require_scope=self.require_access_scope,
            admin_scope=self.admin_scope,
            session_max_age=self.session_max_age,
            hub_login_hint=self.hub_token_url,
            secure_cookies=os.environ.get("JUPYTERHUB_PUBLIC_URL", "").startswith("https:"),
        )

        before, after = raise_open_files_limit()
        if after != before:
            self.log.info("open-files limit raised from %d to %d", before, after)
        host, port = parse_target(self.scheduler_proxy_address)
        self.scheduler_proxy = SchedulerProxy(host, port, limits=self._proxy_limits())
        await self.scheduler_proxy.start()

        agent_ca = b""
        if self.agent_ca_file:
            agent_ca = await loop.run_in_executor(None, Path(self.agent_ca_file).read_bytes)
        if not hasattr(self, "backend"):  # made by check_settings when initialized
            self.backend = self.backend_class(parent=self, log=self.log)
        # uids of their own for users without system accounts, kept in our database
        self.backend.uid_allocator = self.store
        try:
            await self.backend.setup()
        except BackendError as exc:
            self.log.critical("The backend cannot start: %s", exc)
            raise SystemExit(1) from None
        self.manager = ClusterManager(
            backend=self.backend,
            store=self.store,
            routes=self.scheduler_proxy,
            settings=ManagerSettings(
                service_prefix=self.service_prefix,
                agent_url=self.agent_url,
                agent_ca=agent_ca,
                python=self.python,
                cluster_start_timeout=self.cluster_start_timeout,
                worker_start_timeout=self.worker_start_timeout,
                worker_start_failure_limit=self.worker_start_failure_limit,
                poll_interval=self.poll_interval,
                stopped_cluster_retention=self.stopped_cluster_retention,
                finished_workers_kept=self.finished_workers_kept,
                limits_for=self.limits_for,
                max_workers_per_cluster=self.max_workers_per_cluster,
                max_clusters_per_user=self.max_clusters_per_user,
            ),
        )
        await self.manager.start()
        if self.stop_clusters_with_server:
            await self._watch_servers()

        self.dashboard_sessions = DashboardSessions(session_lifetime=self.dashboard_session_max_age)
        self.web_app = self._make_web_app()
        url = urlparse(self.service_url)
        self.http_server = HTTPServer(self.web_app, xheaders=True, max_body_size=self.max_body_size)
        self.http_server.listen(url.port or 80, url.hostname or "127.0.0.1")
        self._start_dashboard_listener()
        # Everything made so far (modules, configuration, the clusters taken over) lives
        # as long as the service: out of the collector's sight, full collections while
        # serving scan only what came later, which keeps their pauses short.
        gc.freeze()
        self.log.info(
            "hubgate %s: service at %s%s, scheduler proxy at %s, backend %s",
            __version__,
            self.service_url.rstrip("/"),
            self.service_prefix,
            self.scheduler_proxy.address,
            type(self.backend).__name__,
        )

    async def _watch_servers(self) -> None:
        """Stop clusters with the server they were created from (server_watch.py)."""
        auth = self.hub_auth
        internal_ssl = (
            make_ssl_context(auth.keyfile, auth.certfile, cafile=auth.client_ca)
            if auth.certfile or auth.keyfile
            else None
        )
        self.server_watch = ServerWatch(
            HubServers(auth.api_url, auth.api_token, ssl_context=internal_ssl),
            clusters=lambda: list(self.manager.clusters.values()),
            stop=self.manager.stop_cluster,
            interval=self.server_poll_interval,
        )
        try:
            await self.server_watch.start()
        except HubRefused as exc:
            self.log.critical(
                "HubgateService.stop_clusters_with_server is on, but %s. Add them to the "
                "role of the service %r in jupyterhub_config.py (see "
                "config/jupyterhub_config.py), or turn the option off.",
                exc,
                self.service_name,
            )
            raise SystemExit(1) from None
        self.log.info(
            "Clusters stop with the server they were created from (the hub's servers "
            "are checked every %g s)",
            self.server_poll_interval,
        )

    def _proxy_limits(self) -> ProxyLimits:
        return ProxyLimits(
            max_connections=self.scheduler_proxy_max_connections,
            max_connections_per_address=self.scheduler_proxy_max_connections_per_address,
            max_handshakes=self.scheduler_proxy_max_handshakes,
            max_handshakes_per_address=self.scheduler_proxy_max_handshakes_per_address,
            hello_timeout=self.scheduler_proxy_hello_timeout,
            connect_timeout=self.scheduler_proxy_connect_timeout,
            idle_timeout=self.scheduler_proxy_idle_timeout,
            relay_threads=self.scheduler_proxy_relay_threads,
        )

    def _make_web_app(self) -> TornadoApplication:
        prefix = self.service_prefix
        handlers: list[Any] = []
        handlers += entry_routes(prefix)
        handlers += api_v1.routes(prefix)
        handlers += api_hubgate.routes(prefix)
        handlers += [
            (prefix + "api/agent/ws", AgentSocket),
            (prefix + "oauth_callback", OAuthCallbackHandler),
        ]
        handlers += page_routes(prefix)
        handlers += [(prefix + ".*", NotFoundHandler)]
        return TornadoApplication(
            handlers,
            hubgate_service=self,
            hub_auth=self.hub_auth,
            cookie_secret=self._cookie_secret(),
            login_url=self.hub_auth.login_url,
            **{ENTRY_SETTING: self._dashboard_entry()},
            websocket_ping_interval=30,
        )

    # --- dashboards ----------------------------------------------------------------------

    def _dashboard_origin(self) -> DashboardOrigin | None:
        return DashboardOrigin.parse(self.dashboard_url) if self.dashboard_url else None

    def _dashboard_entry(self) -> DashboardEntry:
        return DashboardEntry(
            origin=self._dashboard_origin(),
            sessions=self.dashboard_sessions,
            authenticate=self.authenticator.authenticate,
            owner_of=self._running_owner,
            came_over_https=self.authenticator.came_over_https,
        )

    def _start_dashboard_listener(self) -> None:
        origin = self._dashboard_origin()
        if origin is None:
            self.log.warning(
                "No dashboard origin (HubgateService.dashboard_url): dashboards are off"
            )
            return
        access = DashboardAccess(
            target=self._dashboard_target,
            secret=self._dashboard_secret,
            recheck=self._recheck_dashboard_grant,
        )
        app = make_dashboard_app(origin, self.dashboard_sessions, access)
        self.dashboard_server = HTTPServer(app, xheaders=True, max_body_size=self.max_body_size)
        host, port = parse_target(self.dashboard_bind_address)
        self.dashboard_server.listen(port, host)
        self.log.info(
            "Dashboards at %s, listening on %s", self.dashboard_url, self.dashboard_bind_address
        )

    def _running_owner(self, name: str) -> str | None:
        cluster = self.manager.clusters.get(name)
        return cluster.username if cluster and cluster.status is ClusterStatus.RUNNING else None

    def _dashboard_secret(self, name: str) -> str | None:
        cluster = self.manager.clusters.get(name)
        return cluster.dashboard_secret if cluster else None

    async def _recheck_dashboard_grant(self, grant: DashboardGrant) -> None:
        """A dashboard session holds only while the cluster runs and its viewer's hub
        login is valid and, unless the viewer owns the cluster, an admin's."""
        owner = self._running_owner(grant.cluster)
        check_dashboard_access(grant.cluster, owner, grant.viewer, grant.admin)
        if grant.token is None:
            if grant.viewer == owner:
                return  # came with the service's own session: nothing more to ask the hub
            raise HTTPError(403, "%s", "Open this dashboard again from JupyterHub.")
        try:
            user = await self.authenticator.user_for_token(grant.token)
        except ServiceError as exc:
            raise HTTPError(exc.status_code, "%s", exc.message) from None
        if user is None or user.name != grant.viewer:
            raise HTTPError(
                403, "%s", "Your JupyterHub login has ended: open the dashboard from the hub again."
            )
        check_dashboard_access(grant.cluster, owner, user.name, user.admin)

    def _dashboard_target(self, name: str) -> str | None:
        cluster = self.manager.clusters.get(name)
        if cluster is None or cluster.status is not ClusterStatus.RUNNING:
            return None
        return cluster.dashboard_address or None

    async def stop_service(self) -> None:
        self.log.info("hubgate stopping")
        if hasattr(self, "http_server"):
            self.http_server.stop()
        if hasattr(self, "dashboard_server"):
            self.dashboard_server.stop()
        if hasattr(self, "server_watch"):
            await self.server_watch.close()
        if hasattr(self, "manager"):
            if self.stop_clusters_on_shutdown:
                await asyncio.gather(
                    *(
                        self.manager.stop_cluster(c, "stopped because the service stopped")
                        for c in list(self.manager.clusters.values())
                        if c.status.active
                    )
                )
            await self.manager.close()
        if hasattr(self, "backend"):
            await self.backend.cleanup()
        if hasattr(self, "scheduler_proxy"):
            await self.scheduler_proxy.stop()
        if hasattr(self, "store"):
            await self.store.close()

    async def run(self) -> None:
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        await self.start_service()
        try:
            await stop.wait()
        finally:
            await self.stop_service()

    def start(self) -> None:
        asyncio.run(self.run())


def _private_folder(path: Path) -> None:
    """The service's own folder (keys, database, cookie secret): nobody else's
    processes, users' clusters included, may look inside."""
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    path.chmod(0o700)


def main(argv: list[str] | None = None) -> None:
    app = HubgateService.instance()
    app.initialize(argv)
    app.start()


if __name__ == "__main__":
    main()
