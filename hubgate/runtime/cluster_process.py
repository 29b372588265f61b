"""The process every scheduler and worker runs, whatever the backend.

    python -m hubgate.runtime.cluster_process scheduler
    python -m hubgate.runtime.cluster_process worker

is configured only by the ``HUBGATE_*`` environment variables of ``docs/internals.md``.
It exits 0 when closed normally (also on SIGTERM/SIGINT); when it cannot start it prints
one readable reason as the last line of stderr and exits non-zero. Either way it records
its exit code and reason in ``$HUBGATE_EXIT_FILE`` (when set), so a backend that is not
its parent, such as one in a restarted service, can still say why it ended.

:func:`main` is also what the local backend's fork server runs in a forked child, so this
module imports ``distributed`` only inside the functions that need it: the service can
import the exit-file helpers without paying for it.
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import signal
import socket
import stat
import sys
from collections.abc import Mapping
from contextlib import suppress
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = [
    "ConfigError",
    "ExitRecord",
    "ProcessConfig",
    "describe_exit",
    "freeze_start_up_objects",
    "main",
    "read_exit_file",
    "read_own_file",
    "space_out_collections",
    "write_exit_file",
]

ROLES = ("scheduler", "worker")
# beside the TLS credentials: the CA bundle a scheduler trusts for a wss:// agent URL
AGENT_CA_FILE = "agent-ca.pem"
EXIT_USAGE = 2  # bad configuration: nothing was started
EXIT_START_FAILED = 3  # the scheduler or worker did not come up
# An exit record is a few hundred bytes; anything longer is not one.
MAX_EXIT_FILE = 64 * 1024
# How long a closing scheduler or worker may take before we give up waiting for it.
CLOSE_TIMEOUT = 10.0
# How long a worker keeps trying to reach its scheduler before it gives up.
DEFAULT_WORKER_CONNECT_TIMEOUT = 60.0
# distributed checks its event loop's health every 20 ms ("tick"): most of an idle
# scheduler's CPU (about 1 % of a core each), and one host may run hundreds of idle
# schedulers (200 of them took every core of a 2-core machine). Once a second still
# notices a blocked loop: it warns only after distributed.admin.tick.limit (3 s).
DISTRIBUTED_TICK_DEFAULT = "20ms"
# How much rarer than Python's default the garbage collector runs (space_out_collections)
GC_THRESHOLD_FACTOR = 3
SCHEDULER_TICK_INTERVAL = "1s"


class ConfigError(Exception):
    """The environment does not describe a process we can start (a message for humans)."""


class StartError(Exception):
    """The scheduler or worker could not start (a message for humans)."""


# -- exit records ----------------------------------------------------------------------


@dataclass(frozen=True)
class ExitRecord:
    """Why a process ended: an exit code or a signal, and a reason in words."""

    exit_code: int | None = None
    signal: int | None = None
    reason: str = ""

    def describe(self) -> str:
        return describe_exit(self.exit_code, self.signal, self.reason)


def describe_exit(exit_code: int | None, signum: int | None, reason: str = "") -> str:
    """Say in words how a process ended: ``exited with code 1: <reason>``,
    ``killed by signal 9 (SIGKILL)``, ``exited normally``."""
    if signum is not None:
        try:
            name = f" ({signal.Signals(signum).name})"
        except ValueError:
            name = ""
        text = f"killed by signal {signum}{name}"
    elif exit_code == 0:
        text = "exited normally"
    elif exit_code is None:
        text = "ended (exit status unknown)"
    else:
        text = f"exited with code {exit_code}"
    return f"{text}: {reason}" if reason else text


def write_exit_file(path: str | os.PathLike[str], record: ExitRecord) -> None:
    """Record ``record`` at ``path`` atomically (a reader sees all of it or nothing)."""
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    data = {"exit_code": record.exit_code, "signal": record.signal, "reason": record.reason}
    # The folder may belong to the process's user and this may run as root: never
    # follow a link planted there, always write a file of our own.
    with suppress(FileNotFoundError):
        os.unlink(tmp)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(data, f)
    os.replace(tmp, path)


def read_exit_file(path: str | os.PathLike[str]) -> ExitRecord | None:
    """The record at ``path``, or ``None`` when there is none (yet) or it is unreadable."""
    try:
        data = json.loads(read_own_file(path, MAX_EXIT_FILE))
        return ExitRecord(
            exit_code=data.get("exit_code"),
            signal=data.get("signal"),
            reason=str(data.get("reason") or ""),
        )
    except (OSError, ValueError, AttributeError):
        return None


def read_own_file(path: str | os.PathLike[str], limit: int) -> bytes:
    """At most ``limit`` bytes of the regular file ``path``, not following a symbolic
    link at its end (a root reader of a user's folder must not read what the user
    links to), nor a file with other hard links (where fs.protected_hardlinks is off, a
    user may link a file they cannot read), and not blocking on a FIFO. Raises
    ``OSError`` otherwise."""
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    with os.fdopen(fd, "rb") as f:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode) or info.st_nlink != 1:
            raise OSError(f"{path} is not a regular file of its own")
        return f.read(limit)


def exit_record_from_status(status: int, reason: str = "") -> ExitRecord:
    """Turn a ``waitpid`` status into an :class:`ExitRecord`."""
    if os.WIFSIGNALED(status):
        return ExitRecord(signal=os.WTERMSIG(status), reason=reason)
    return ExitRecord(exit_code=os.waitstatus_to_exitcode(status), reason=reason)


# -- configuration ---------------------------------------------------------------------


@dataclass(frozen=True)
class ProcessConfig:
    """The ``HUBGATE_*`` environment of one scheduler or worker, checked."""

    role: str
    cluster_name: str
    credentials_dir: Path
    listen_host: str
    advertise_host: str
    exit_file: str | None = None
    # scheduler
    agent_url: str | None = None
    dashboard_prefix: str = "/"
    # fixed ports (pods behind a Service); 0 picks free ones
    scheduler_port: int = 0
    dashboard_port: int = 0
    # worker
    scheduler_address: str | None = None
    worker_name: str | None = None
    worker_threads: int = 1
    worker_memory: int = 0
    worker_nanny: bool = False
    worker_connect_timeout: float = DEFAULT_WORKER_CONNECT_TIMEOUT

    @classmethod
    def from_env(cls, role: str, env: Mapping[str, str]) -> ProcessConfig:
        if role not in ROLES:
            raise ConfigError(f"unknown role {role!r}: expected 'scheduler' or 'worker'")

        def need(name: str) -> str:
            value = env.get(name, "").strip()
            if not value:
                raise ConfigError(f"{name} is not set: the backend must set it for a {role}")
            return value

        def integer(name: str, minimum: int) -> int:
            text = need(name)
            try:
                value = int(text)
            except ValueError:
                raise ConfigError(f"{name}={text!r} is not a whole number") from None
            if value < minimum:
                raise ConfigError(f"{name}={value} must be at least {minimum}")
            return value

        credentials_dir = Path(need("HUBGATE_CREDENTIALS_DIR"))
        if not credentials_dir.is_dir():
            raise ConfigError(f"HUBGATE_CREDENTIALS_DIR={credentials_dir} is not a folder")
        for file in ("ca.crt", f"{role}.crt", f"{role}.key"):
            if not (credentials_dir / file).is_file():
                raise ConfigError(f"the credentials folder {credentials_dir} has no {file}")
        listen_host = env.get("HUBGATE_LISTEN_HOST", "").strip() or "127.0.0.1"
        advertise_host = env.get("HUBGATE_ADVERTISE_HOST", "").strip()
        if not advertise_host:
            advertise_host = socket.getfqdn() if listen_host == "0.0.0.0" else listen_host
        common: dict[str, Any] = {
            "role": role,
            "cluster_name": need("HUBGATE_CLUSTER_NAME"),
            "credentials_dir": credentials_dir,
            "listen_host": listen_host,
            "advertise_host": advertise_host,
            "exit_file": env.get("HUBGATE_EXIT_FILE") or None,
        }
        if role == "scheduler":
            return cls(
                **common,
                agent_url=env.get("HUBGATE_AGENT_URL") or None,
                dashboard_prefix=env.get("HUBGATE_DASHBOARD_PREFIX") or "/",
                scheduler_port=integer("HUBGATE_SCHEDULER_PORT", 0)
                if env.get("HUBGATE_SCHEDULER_PORT")
                else 0,
                dashboard_port=integer("HUBGATE_DASHBOARD_PORT", 0)
                if env.get("HUBGATE_DASHBOARD_PORT")
                else 0,
            )
        connect_timeout = env.get("HUBGATE_WORKER_CONNECT_TIMEOUT", "")
        try:
            timeout = float(connect_timeout) if connect_timeout else DEFAULT_WORKER_CONNECT_TIMEOUT
        except ValueError:
            raise ConfigError(
                f"HUBGATE_WORKER_CONNECT_TIMEOUT={connect_timeout!r} is not a number"
            ) from None
        return cls(
            **common,
            scheduler_address=need("HUBGATE_SCHEDULER_ADDRESS"),
            worker_name=need("HUBGATE_WORKER_NAME"),
            worker_threads=integer("HUBGATE_WORKER_THREADS", 1),
            worker_memory=integer("HUBGATE_WORKER_MEMORY", 0),
            worker_nanny=env.get("HUBGATE_WORKER_NANNY", "") in ("1", "true", "True", "yes"),
            worker_connect_timeout=timeout,
        )

    def credential(self, name: str) -> str:
        return str(self.credentials_dir / name)

    def agent_ca_file(self) -> str | None:
        """The CA bundle the service sent for a wss:// agent URL, if it sent one."""
        path = self.credentials_dir / AGENT_CA_FILE
        return str(path) if path.is_file() else None

    def read_dashboard_secret(self) -> str | None:
        """The secret the dashboard requires of every request, or ``None`` when the
        service gave none (a scheduler started by hand or by an older service)."""
        from .dashboard_guard import DASHBOARD_SECRET_FILE

        path = self.credentials_dir / DASHBOARD_SECRET_FILE
        try:
            return path.read_text().strip() or None
        except FileNotFoundError:
            return None
        except OSError as exc:
            raise ConfigError(f"cannot read the dashboard secret {path}: {exc.strerror}") from None

    def read_token(self) -> str:
        try:
            return (self.credentials_dir / "token").read_text().strip()
        except OSError as exc:
            raise ConfigError(
                f"cannot read the agent token {self.credentials_dir / 'token'}: {exc.strerror}"
            ) from None


def _free_port(host: str) -> int:
    # Only used when the advertised host differs from the bound one: distributed then
    # needs the full contact address, port included, before it binds.
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def _addresses(config: ProcessConfig, fixed_port: int = 0) -> tuple[int, str | None]:
    """The port to bind and the contact address to advertise (``None``: the bound one)."""
    if config.advertise_host == config.listen_host:
        return fixed_port, None
    port = fixed_port or _free_port(config.listen_host)
    return port, f"tls://{config.advertise_host}:{port}"


# -- running ---------------------------------------------------------------------------


def scheduler_dask_config() -> dict[str, Any]:
    """Dask settings a scheduler runs with where its environment (``DASK_*`` variables,
    a config file) left distributed's defaults."""
    import dask.config

    if dask.config.get("distributed.admin.tick.interval") == DISTRIBUTED_TICK_DEFAULT:
        return {"distributed.admin.tick.interval": SCHEDULER_TICK_INTERVAL}
    return {}


def skip_bokeh_route_listing() -> bool:
    """bokeh's server pretty-prints its whole route table for a debug log line whether
    or not debug logging is on: half of a forked scheduler's start-up CPU (about 20 of
    40 ms), which bounds how fast a 2-core host starts clusters. Skip the formatting
    while nobody would see it; True when skipped."""
    import logging

    try:
        import bokeh.server.tornado as bokeh_tornado
    except ImportError:
        return False
    logger = getattr(bokeh_tornado, "log", None)
    if not hasattr(bokeh_tornado, "pformat") or logger is None:
        return False
    if logger.isEnabledFor(logging.DEBUG):
        return False
    bokeh_tornado.pformat = _no_pformat
    return True


def _no_pformat(obj: object, *args: Any, **kwargs: Any) -> str:
    return ""


async def _run_scheduler(config: ProcessConfig, stop: asyncio.Event) -> str:
    import dask.config
    from distributed import Scheduler
    from distributed.security import Security

    from .deferred_dashboard import defer_dashboard
    from .scheduler_agent import SchedulerAgent

    dask.config.set(scheduler_dask_config())
    skip_bokeh_route_listing()
    defer_dashboard()

    security = Security(
        require_encryption=True,
        tls_ca_file=config.credential("ca.crt"),
        tls_scheduler_cert=config.credential("scheduler.crt"),
        tls_scheduler_key=config.credential("scheduler.key"),
    )
    plugins = []
    if config.agent_url:
        plugins.append(
            SchedulerAgent(
                cluster_name=config.cluster_name,
                url=config.agent_url,
                token=config.read_token(),
                advertise_host=config.advertise_host,
                ca_file=config.agent_ca_file(),
            )
        )
    port, contact_address = _addresses(config, config.scheduler_port)
    scheduler = Scheduler(
        host=config.listen_host,
        port=port,
        protocol="tls",
        contact_address=contact_address,
        security=security,
        dashboard_address=f"{config.listen_host}:{config.dashboard_port}",
        http_prefix=config.dashboard_prefix,
        plugins=plugins,
    )
    secret = config.read_dashboard_secret()
    if secret:
        # Before the first await: no request is served without the check.
        from .dashboard_guard import require_dashboard_secret

        require_dashboard_secret(scheduler.http_application, secret)
    return await _serve(scheduler, stop, "scheduler")


async def _run_worker(config: ProcessConfig, stop: asyncio.Event) -> str:
    import dask.config
    from distributed import Nanny, Worker
    from distributed.security import Security

    # A worker's HTTP server (metrics, health) has no authentication and listens where
    # other users' processes (loopback, the batch node) can reach it: serve nothing.
    dask.config.set({"distributed.worker.http.routes": []})

    security = Security(
        require_encryption=True,
        tls_ca_file=config.credential("ca.crt"),
        tls_worker_cert=config.credential("worker.crt"),
        tls_worker_key=config.credential("worker.key"),
    )
    port, contact_address = _addresses(config)
    kwargs: dict[str, Any] = {
        "security": security,
        "name": config.worker_name,
        "nthreads": config.worker_threads,
        "memory_limit": config.worker_memory or "auto",
        "host": config.listen_host,
        "protocol": "tls",
        "contact_address": contact_address,
        "dashboard": False,
        "death_timeout": config.worker_connect_timeout,
    }
    if config.worker_nanny:
        server: Any = Nanny(config.scheduler_address, worker_port=port, **kwargs)
    else:
        server = Worker(config.scheduler_address, port=port, **kwargs)
    return await _serve(server, stop, "worker")


async def _serve(server: Any, stop: asyncio.Event, what: str) -> str:
    """Start ``server``, run it until it finishes or ``stop`` is set, close it."""
    try:
        await server
    except Exception as exc:
        with suppress(Exception):
            await asyncio.wait_for(server.close(), CLOSE_TIMEOUT)
        raise StartError(f"the {what} failed to start: {_short(exc)}") from exc
    freeze_start_up_objects()
    finished = asyncio.ensure_future(server.finished())
    stopped = asyncio.ensure_future(stop.wait())
    await asyncio.wait({finished, stopped}, return_when=asyncio.FIRST_COMPLETED)
    stopped.cancel()
    if finished.done():
        return f"the {what} closed"
    finished.cancel()
    with suppress(Exception, asyncio.TimeoutError):
        await asyncio.wait_for(server.close(reason="hubgate-stop"), CLOSE_TIMEOUT)
    return f"the {what} was stopped"


def space_out_collections() -> None:
    """Collect garbage a third as often as Python's default, as ``dask scheduler`` and
    ``dask worker`` do (distributed's CLI; dask/distributed#1653): a scheduler allocates
    thousands of objects per task, and the default threshold (700) ran a collection
    several times per task round trip."""
    gen0, gen1, gen2 = gc.get_threshold()
    gc.set_threshold(
        gen0 * GC_THRESHOLD_FACTOR, gen1 * GC_THRESHOLD_FACTOR, gen2 * GC_THRESHOLD_FACTOR
    )


def freeze_start_up_objects() -> None:
    """Exempt everything alive now (modules, the server's own objects) from the cyclic
    garbage collector. A full collection walks every tracked object: ~150,000 after
    the imports, about 65 ms on a 2-core host, paid by whichever task round trip or
    transfer it interrupts (the p99). Frozen objects are still freed by reference
    counting; only cycles among them are never collected. No collection first: in a
    child of the fork server that would cost the start-up what freezing saves."""
    gc.freeze()


def _short(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    if isinstance(exc, asyncio.TimeoutError | TimeoutError) and not text:
        return "timed out"
    return text[-1] if text else type(exc).__name__


async def _amain(config: ProcessConfig) -> str:
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    space_out_collections()
    if config.role == "scheduler":
        return await _run_scheduler(config, stop)
    return await _run_worker(config, stop)


def main(argv: list[str] | None = None) -> int:
    """Run a scheduler or worker as ``argv`` (``["scheduler"]`` or ``["worker"]``) and
    the environment say; return the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    exit_file = os.environ.get("HUBGATE_EXIT_FILE") or None
    code, reason = _main(argv)
    if code != 0:
        # The contract: the reason is the last line of stderr.
        print(f"hubgate: {reason}", file=sys.stderr, flush=True)
    if exit_file:
        with suppress(OSError):
            write_exit_file(exit_file, ExitRecord(exit_code=code, reason=reason))
    with suppress(Exception):
        sys.stdout.flush()
        sys.stderr.flush()
    return code


def _main(argv: list[str]) -> tuple[int, str]:
    if len(argv) != 1 or argv[0] not in ROLES:
        return EXIT_USAGE, "usage: python -m hubgate.runtime.cluster_process scheduler|worker"
    try:
        config = ProcessConfig.from_env(argv[0], os.environ)
        return 0, asyncio.run(_amain(config))
    except ConfigError as exc:
        return EXIT_USAGE, str(exc)
    except StartError as exc:
        return EXIT_START_FAILED, str(exc)
    except ImportError as exc:
        return EXIT_START_FAILED, f"cannot import {exc.name or exc}: is distributed installed?"
    except Exception as exc:  # the reason must reach the user, not a traceback
        import traceback

        traceback.print_exc()
        return 1, f"unexpected error: {_short(exc)}"


if __name__ == "__main__":
    sys.exit(main())
