"""A real single-node Slurm (munged + slurmctld + slurmd) in a fresh temporary folder.

Follows ``/work/shared/reference/slurm-in-tests.md``. Used by the session fixture in
``conftest.py``; runnable by hand for debugging: ``python tests/slurm/slurm_cluster.py``
starts one, prints its ``SLURM_CONF`` and stops it on Enter.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

MUNGE_RUN = Path("/run/munge")
MUNGE_PIDFILE = MUNGE_RUN / "munged.pid"


def slurm_available() -> bool:
    return all(shutil.which(tool) for tool in ("slurmctld", "slurmd", "sbatch", "munged"))


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("", 0))
        return sock.getsockname()[1]


def _munge_works() -> bool:
    try:
        encoded = subprocess.run(["munge", "-n"], capture_output=True, timeout=10, check=True)
        subprocess.run(
            ["unmunge"], input=encoded.stdout, capture_output=True, timeout=10, check=True
        )
    except (subprocess.SubprocessError, OSError):
        return False
    return True


def _wait_for(condition, timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise RuntimeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(0.2)


def _node_figures() -> dict[str, str]:
    """``slurmd -C`` prints the node line Slurm would use: take CPUs, topology, memory."""
    out = subprocess.run(["slurmd", "-C"], capture_output=True, text=True, check=True).stdout
    first = out.splitlines()[0]
    figures = dict(item.split("=", 1) for item in first.split() if "=" in item)
    return figures


@dataclass
class SlurmCluster:
    root: Path
    conf: Path
    node: str
    cpus: int
    started_munged: bool = False
    procs: list[subprocess.Popen] = field(default_factory=list)

    @property
    def env(self) -> dict[str, str]:
        return {**os.environ, "SLURM_CONF": str(self.conf)}

    def run(self, *argv: str, check: bool = True) -> subprocess.CompletedProcess:
        return subprocess.run(
            list(argv), capture_output=True, text=True, env=self.env, timeout=60, check=check
        )

    def queue(self, fmt: str = "%i") -> list[str]:
        """What squeue shows by default (pending, running, completing jobs)."""
        return self.run("squeue", "-h", "-o", fmt).stdout.splitlines()

    def node_state(self) -> str:
        result = self.run("sinfo", "-h", "-o", "%T", check=False)
        return result.stdout.strip()

    @classmethod
    def start(cls) -> SlurmCluster:
        root = Path(tempfile.mkdtemp(prefix="hubgate-slurm-"))
        os.chmod(root, 0o755)
        node = socket.gethostname().split(".")[0]
        figures = _node_figures()
        cpus = int(figures["CPUs"])
        sockets = figures.get("SocketsPerBoard", "1")
        conf = root / "slurm.conf"
        lines = [
            "ClusterName=hubgatetest",
            f"SlurmctldHost={node}",
            "SlurmUser=root",
            "AuthType=auth/munge",
            f"SlurmctldPort={_free_port()}",
            f"SlurmdPort={_free_port()}",
            f"StateSaveLocation={root}/state",
            f"SlurmdSpoolDir={root}/spool",
            f"SlurmctldPidFile={root}/slurmctld.pid",
            f"SlurmdPidFile={root}/slurmd.pid",
            f"SlurmctldLogFile={root}/slurmctld.log",
            f"SlurmdLogFile={root}/slurmd.log",
            "ProctrackType=proctrack/linuxproc",
            "TaskPlugin=task/none",
            "JobAcctGatherType=jobacct_gather/none",
            "AccountingStorageType=accounting_storage/none",
            "JobCompType=jobcomp/none",
            "SelectType=select/cons_tres",
            "SelectTypeParameters=CR_Core_Memory",
            "DefMemPerCPU=1000",
            "ReturnToService=2",
            "MpiDefault=none",
            "SchedulerType=sched/backfill",
            "SchedulerParameters=batch_sched_delay=0,bf_interval=1",
            "MailProg=/bin/true",
            # A short KillWait: cancelled jobs leave squeue quickly.
            "KillWait=5",
            f"NodeName={node} CPUs={cpus} Sockets={sockets}"
            f" CoresPerSocket={figures['CoresPerSocket']}"
            f" ThreadsPerCore={figures['ThreadsPerCore']}"
            f" RealMemory={figures['RealMemory']} State=UNKNOWN",
            "PartitionName=debug Nodes=ALL Default=YES MaxTime=INFINITE State=UP",
        ]
        conf.write_text("\n".join(lines) + "\n")
        for sub in ("state", "spool"):
            (root / sub).mkdir()
        cluster = cls(root=root, conf=conf, node=node, cpus=cpus)
        try:
            cluster._start_daemons()
        except BaseException:
            cluster.stop()
            raise
        return cluster

    def _start_daemons(self) -> None:
        if not _munge_works():
            if not Path("/etc/munge/munge.key").exists():
                subprocess.run(["mungekey", "--create"], check=True)
            subprocess.run(
                ["install", "-d", "-o", "munge", "-g", "munge", "-m", "0755", str(MUNGE_RUN)],
                check=True,
            )
            subprocess.run(["runuser", "-u", "munge", "--", "/usr/sbin/munged"], check=True)
            self.started_munged = True
            _wait_for(_munge_works, 30, "munged")
        for daemon in ("slurmctld", "slurmd"):
            log = open(self.root / f"{daemon}.stdout", "wb")
            self.procs.append(
                subprocess.Popen(
                    [daemon, "-D", "-f", str(self.conf)],
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,
                )
            )
            log.close()
        _wait_for(lambda: self.node_state() == "idle", 60, "the Slurm node to be idle")

    def _drain_jobs(self) -> None:
        """Cancel every job and wait until the queue is empty: a slurmstepd whose job is
        still ending when slurmd goes away lingers forever, retrying to report."""
        if self.run("squeue", "-h", "-o", "%i", check=False).stdout.strip():
            subprocess.run(
                ["scancel", "--full", "--partition=debug"], env=self.env, capture_output=True
            )
        try:
            _wait_for(lambda: not self.queue(), 60, "the queue to empty")
        except RuntimeError:
            pass

    def _step_daemons(self) -> list[int]:
        """slurmstepd processes started by our slurmd."""
        slurmd = next((p for p in self.procs if p.args[0] == "slurmd"), None)
        if slurmd is None or slurmd.poll() is not None:
            return []
        out = subprocess.run(
            ["ps", "--ppid", str(slurmd.pid), "-o", "pid=,comm="], capture_output=True, text=True
        ).stdout
        return [int(line.split()[0]) for line in out.splitlines() if "slurmstepd" in line]

    def stop(self) -> None:
        if self.procs and all(p.poll() is None for p in self.procs):
            self._drain_jobs()
        leftover_steps = self._step_daemons()
        for proc in reversed(self.procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        for proc in reversed(self.procs):
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        self.procs.clear()
        for pid in leftover_steps:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        if self.started_munged and MUNGE_PIDFILE.exists():
            try:
                os.kill(int(MUNGE_PIDFILE.read_text().strip()), signal.SIGTERM)
            except (ValueError, ProcessLookupError):
                pass
            self.started_munged = False
        shutil.rmtree(self.root, ignore_errors=True)


if __name__ == "__main__":
    started = SlurmCluster.start()
    print(f"export SLURM_CONF={started.conf}")
    try:
        input("Slurm is up; press Enter to stop it\n")
    finally:
        started.stop()
