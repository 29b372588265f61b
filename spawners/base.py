"""The backend contract: how hubgate starts, watches and stops cluster processes.

A backend knows how to run one *process* of a cluster (its scheduler, or one of its
workers) somewhere: a local process, a batch job, a pod. It knows nothing about Dask
clusters, users' limits or the database; the cluster manager in ``hub_service`` decides
what should run and calls the backend to make it so.

The contract, modelled on JupyterHub's ``Spawner``:

``check_user(username)``
    Refuse (``AccountRefused``) a hub user whose processes would run under no account
    of their own: a missing account, a system account (below ``min_uid``) or the
    service's. Called when a cluster is created, so the user gets a 403, not a failed
    cluster.
``start(spec) -> state``
    Launch the process described by ``spec`` and return a small JSON-able dict from which
    ``poll``/``stop``/``read_log`` can find it again, also after a service restart (a pid
    and its start time, a job id, a pod name). Raise :class:`BackendError` with a message
    for the user if the process cannot be launched.
``poll(states) -> [ProcessStatus]``
    For many processes at once (one ``squeue`` call, one pod list), say whether each is
    pending, running or gone. Must work right after a restart, from stored state only.
``stop(state)``
    Stop the process and wait until it is gone. Idempotent: stopping a process that is
    already gone is not an error.
``read_log(state, max_lines)``
    The last lines of the process's output, or ``None`` when the backend has none (any
    more).
``route_host(state)``
    The host at which the service (its scheduler and dashboard proxies) and the
    cluster's workers reach the running scheduler described by ``state``, from what the
    backend itself knows: never from anything the process reports, since the process
    runs the user's code. The default fits processes on the service's own host: the
    ``listen_host``, or this host's name when that is a wildcard. A backend that runs
    processes elsewhere must override it (the job's node, the pod's IP). Raise
    :class:`BackendError` when the backend cannot tell (yet).
``fixed_ports``
    Ports every scheduler of this backend listens on (``{"scheduler": 8786,
    "dashboard": 8787}`` for pods), or empty when schedulers pick free ports and report
    them. A scheduler reporting other ports is refused.

Every method is ``async`` and must not block the event loop: run subprocess waits and
slow calls in a thread or with asyncio's subprocess support.

The hooks a backend must write are marked ``@abstractmethod`` (here ``start``, ``poll``,
``stop`` and ``read_log``; a base class may add its own, as the batch base adds the
per-system commands and parsers). Every class is checked when it is defined: one that
leaves a hook out raises ``TypeError`` naming the class and the missing hooks, so a
broken backend fails at import, not at its first poll. Only a class that itself says
``__abstract__ = True`` in its body is exempt (a base meant to be subclassed); the flag
is not inherited, so its subclasses are checked again.

Errors whose text reaches users: :class:`BackendError` (and its subclasses, such as
``AccountRefused``). Its message becomes a FAILED cluster's reason or a 4xx body as it
is, so write it for the user and keep out what is not theirs to see: secrets, other
users' files and paths, and raw output of commands run as the service or about other
users' jobs (log those, and say in the message what the user can do). Any other
exception a backend raises is an unexpected one: the user gets a sentence with an error
id and the traceback goes to the service log under that id (``hub_service/errors.py``).
"""

from __future__ import annotations

import asyncio
import enum
import socket
from abc import abstractmethod
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar

from traitlets import Integer, List, Unicode
from traitlets.config import LoggingConfigurable

if TYPE_CHECKING:
    from .accounts import UidAllocator

__all__ = [
    "Backend",
    "BackendError",
    "ProcessSpec",
    "ProcessState",
    "ProcessStatus",
    "missing_hooks",
]

WILDCARD_HOSTS = ("", "0.0.0.0", "::", "[::]")


class BackendError(Exception):
    """A failure whose text is meant for the user (it ends up in a 4xx body or a
    FAILED cluster's reason). Put the operator's detail in the log and chain the cause
    with ``raise BackendError(...) from exc``."""


@dataclass(frozen=True)
class ProcessSpec:
    """Everything a backend needs to launch one scheduler or worker.

    ``argv`` is the command to run, as a list (never a shell string), already complete:
    the backend may prefix it (``sudo -u``, ``srun``) but must not change it.
    ``env`` is the environment the process needs on top of the backend's base
    environment. ``files`` are secrets and settings the process reads from
    ``$HUBGATE_CREDENTIALS_DIR``: the backend must create that directory readable only by
    the process's user (mode 0700, files 0600), write the files there and set the
    variable. ``setup`` is a shell snippet that the backend runs in the same shell just
    before ``argv`` (JASMIN's ``worker_setup``: ``source env/bin/activate``); ``None`` for
    none. ``resources`` is backend-specific configuration from the cluster options
    (image, partition, account, walltime, extra directives...).
    """

    cluster_name: str
    role: str  # "scheduler" or "worker"
    name: str  # "scheduler" or the worker's name, unique within the cluster
    username: str
    argv: list[str]
    env: dict[str, str] = field(default_factory=dict)
    files: dict[str, bytes] = field(default_factory=dict)
    cores: float = 1
    memory: int = 2**30  # bytes
    setup: str | None = None
    resources: dict[str, Any] = field(default_factory=dict)


ProcessState = dict[str, Any]


class Phase(enum.StrEnum):
    PENDING = "pending"  # accepted but not started yet (queued batch job, pulling image)
    RUNNING = "running"
    GONE = "gone"  # exited, cancelled, or never found


@dataclass(frozen=True)
class ProcessStatus:
    """What ``poll`` knows about one process. ``reason`` says why it is pending or gone
    in words for the user ("queued: Resources", "exited with code 1", "killed by
    signal 9"); ``exit_code`` is set when known."""

    phase: Phase
    reason: str = ""
    exit_code: int | None = None

    @property
    def alive(self) -> bool:
        return self.phase is not Phase.GONE


class Backend(LoggingConfigurable):
    """Base class of every backend. See the module docstring for the contract."""

    #: Name used in configuration and logs ("local", "slurm", "kubernetes", ...).
    backend_name: ClassVar[str] = ""
    #: Ports every scheduler listens on, by "scheduler"/"dashboard"; empty: reported.
    fixed_ports: ClassVar[dict[str, int]] = {}
    #: The keys of ``ProcessSpec.resources`` this backend reads beyond hubgate's own
    #: cluster settings (``python`` and ``image`` reach every backend), each with what
    #: it means. The service refuses any other key, in ``cluster_config`` at start and
    #: from an options handler per request: a typo never becomes a silent resource.
    accepted_resources: ClassVar[dict[str, str]] = {}

    listen_host = Unicode(
        "127.0.0.1",
        config=True,
        help="""Address schedulers and workers listen on.

        127.0.0.1 is right when every process runs on the service's host (local
        backend); a batch or Kubernetes backend needs an address reachable from the
        service and from the other nodes, such as 0.0.0.0.
        """,
    )

    min_uid = Integer(
        1000,
        config=True,
        help="""The lowest uid a user's processes may run as. A hub user whose account
        has a lower uid (root, slurm, daemon and the other system accounts) or is the
        service's own cannot create clusters (403), and nothing is started for them.
        Applies to the local and batch backends; on Kubernetes, KubernetesBackend's
        run_as_user must be at least this.""",
    )

    system_uid_ranges = List(
        List(Integer(), minlen=2, maxlen=2),
        default_value=[[60000, 64999], [65534, 65535]],
        config=True,
        help="""Ranges of uids ([first, last], inclusive) above min_uid that belong to the
        system, refused like those below it: by default Debian's range for accounts that
        packages create with fixed uids (60000-64999: slurm is 64030 on Debian) and
        nobody/nogroup (65534). Set [] where real users have uids there (some LDAP
        sites).""",
    )

    #: Set by the service before ``setup``: hands hub users uids of their own, kept in
    #: its database (the local backend's "uid-range" mode). None outside the service.
    uid_allocator: UidAllocator | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        # Only the class's own body can exempt it: an inherited flag would let every
        # subclass of an abstract base skip the check.
        if cls.__dict__.get("__abstract__", False):
            return
        missing = missing_hooks(cls)
        if missing:
            raise TypeError(
                f"Backend {cls.__module__}.{cls.__qualname__} does not implement "
                f"{', '.join(missing)}: every backend must define these hooks (or say "
                "__abstract__ = True in its own body if it is a base for other backends)"
            )

    async def setup(self) -> None:
        """Called once when the service starts, before any other method."""

    async def cleanup(self) -> None:
        """Called once when the service stops. Must not stop running clusters: they
        outlive a service restart."""

    async def check_user(self, username: str) -> None:
        """Raise ``AccountRefused`` (from ``accounts.py``) when the hub user
        ``username`` may not run processes with this backend: no account, or a system
        account or the service's own. Called when a cluster is created, before anything
        starts; ``start`` checks again. The default accepts everyone."""

    @abstractmethod
    async def start(self, spec: ProcessSpec) -> ProcessState:
        raise NotImplementedError

    @abstractmethod
    async def poll(self, states: list[ProcessState]) -> list[ProcessStatus]:
        raise NotImplementedError

    @abstractmethod
    async def stop(self, state: ProcessState) -> None:
        raise NotImplementedError

    @abstractmethod
    async def read_log(self, state: ProcessState, max_lines: int = 50) -> str | None:
        raise NotImplementedError

    async def route_host(self, state: ProcessState) -> str:
        """Where the scheduler of ``state`` is reached (see the module docstring)."""
        if self.listen_host not in WILDCARD_HOSTS:
            return self.listen_host
        # Bound to every interface of this host: its name, as the process runtime
        # advertises it to workers (getfqdn may ask DNS: not on the event loop).
        return await asyncio.get_running_loop().run_in_executor(None, socket.getfqdn)


def missing_hooks(cls: type) -> list[str]:
    """The abstract hooks (``@abstractmethod``, from any base) that ``cls`` leaves
    without an implementation, sorted by name."""
    declared = {
        name
        for klass in cls.__mro__
        for name, value in vars(klass).items()
        if getattr(value, "__isabstractmethod__", False)
    }
    return sorted(
        name
        for name in declared
        if getattr(getattr(cls, name, None), "__isabstractmethod__", False)
    )
