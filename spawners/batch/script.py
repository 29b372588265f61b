"""Pure builders for batch job scripts: a :class:`JobRequest` in, the script text out.

Each system renders its whole submission from a request (its own module's
``render_submission``); what they share is here: the request, the checks and the job
script's body, which exports the environment, runs the setup and ``exec``s the process.
Systems with directive lines (``#SBATCH``, ``#PBS``) put them above that body with
:func:`directive_lines`; HTCondor submits a description that runs the body as a file.

Every value that reaches a script is checked or quoted here:

- directive values (queue, account, project, walltime, paths, names) must match a
  conservative pattern: a directive line is parsed by the batch system, not by a
  shell, and a space or a newline in it would add options;
- environment values, the process's argv and paths used in the body are quoted with
  :func:`shlex.quote`;
- the ``setup`` snippet is the user's own shell code and runs as the user, by design.

The body is POSIX sh (LSF may run a script with ``/bin/sh``); the shebang is bash by
default because users' setup snippets use ``source``.
"""

from __future__ import annotations

import math
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..base import BackendError

__all__ = [
    "JobRequest",
    "check_directive",
    "check_directive_value",
    "common_walltime",
    "directive_lines",
    "format_walltime",
    "parse_walltime",
    "render_script",
]

# Letters, digits and the punctuation queue, account and host names and paths use.
_DIRECTIVE_VALUE = re.compile(r"[A-Za-z0-9_.:@+=,/%~-]*")
_ENV_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")


def check_directive_value(what: str, value: str) -> str:
    """Return ``value`` if it is safe in a directive line, else raise BackendError."""
    if not _DIRECTIVE_VALUE.fullmatch(value):
        raise BackendError(
            f"{what} {value!r} is not allowed: use only letters, digits and . _ - : / @ + = , %"
        )
    return value


def check_directive(line: str) -> str:
    """An extra directive (``--gres=gpu:1``, ``-l gpu=1``): one line, an option."""
    line = line.strip()
    if not line.startswith("-") or any(c in line for c in "\n\r\0"):
        raise BackendError(
            f"extra directive {line!r} is not allowed: give one option per line, "
            "starting with '-' (for example --gres=gpu:1)"
        )
    return line


def parse_walltime(text: str) -> int:
    """Seconds in a walltime written ``D-HH:MM:SS``, ``HH:MM:SS`` or whole minutes."""
    text = text.strip()
    match = re.fullmatch(r"(?:(\d+)-)?(\d+):(\d{1,2}):(\d{1,2})", text)
    if match:
        days, hours, minutes, seconds = (int(g) if g else 0 for g in match.groups())
        if minutes < 60 and seconds < 60:
            return ((days * 24 + hours) * 60 + minutes) * 60 + seconds
    elif text.isdigit():
        return int(text) * 60
    raise BackendError(
        f"walltime {text!r} is not valid: write HH:MM:SS, D-HH:MM:SS or whole minutes"
    )


def format_walltime(seconds: int, *, with_seconds: bool = True) -> str:
    """``HH:MM:SS`` (hours may pass 24), or ``HH:MM`` rounded up for LSF."""
    if not with_seconds:
        minutes = math.ceil(seconds / 60)
        return f"{minutes // 60:02d}:{minutes % 60:02d}"
    return f"{seconds // 3600:02d}:{seconds // 60 % 60:02d}:{seconds % 60:02d}"


@dataclass(frozen=True)
class JobRequest:
    """One scheduler or worker as a batch job. Build it with checked values."""

    job_name: str
    output: str  # the job's output file (stdout and stderr together)
    workdir: str  # the folder the job starts in
    cores: int
    memory_mib: int
    argv: tuple[str, ...]
    env: tuple[tuple[str, str], ...] = ()
    setup: str | None = None
    queue: str = ""  # Slurm partition, PBS/SGE/LSF queue
    account: str = ""
    project: str = ""  # Slurm QOS, SGE/LSF/PBS project
    walltime_seconds: int | None = None
    # Site and cluster extra lines in the system's own syntax, checked by its renderer.
    extra_directives: tuple[str, ...] = ()
    # Shell command whose output the job exports as HUBGATE_ADVERTISE_HOST, e.g.
    # ("hostname",); empty: leave the choice to the process runtime.
    advertise_host_command: tuple[str, ...] = field(default=())
    shell: str = "/bin/bash"  # runs the script; the body is POSIX sh, the setup may not be
    user: str = ""  # the system account the job runs as (HTCondor's accounting user)
    folder: str = ""  # the job's staging folder (credentials, output, a staged script)

    def __post_init__(self) -> None:
        for what, value in (
            ("job name", self.job_name),
            ("output file", self.output),
            ("working folder", self.workdir),
            ("queue", self.queue),
            ("account", self.account),
            ("project", self.project),
            ("job shell", self.shell),
            ("user", self.user),
            ("staging folder", self.folder),
        ):
            check_directive_value(what, value)
        for name, _ in self.env:
            if not _ENV_NAME.fullmatch(name):
                raise BackendError(
                    f"environment variable name {name!r} is not valid: use letters, "
                    "digits and _ , not starting with a digit"
                )
        if self.cores < 1 or self.memory_mib < 1:
            raise BackendError("a batch job needs at least 1 core and 1 MiB of memory")


def directive_lines(prefix: str, directives: Sequence[str]) -> list[str]:
    """``#SBATCH --mem=4096M``-style header lines. Each is checked (one option, one
    line), so a request built by hand cannot smuggle in a second directive."""
    return [f"{prefix} {check_directive(d)}" for d in directives]


def render_script(
    request: JobRequest, header: Sequence[str] = (), *, merge_stderr: bool = False
) -> str:
    """The whole job script: shebang, ``header`` lines (a system's directives),
    environment, setup, ``exec argv``. ``merge_stderr`` sends the script's stderr to its
    stdout, for systems that write them to two files (the service reads one)."""
    lines = [f"#!{request.shell}", *header]
    lines += ["", "# Written by hubgate: one Dask process per batch job.", "umask 077"]
    if merge_stderr:
        lines.append("exec 2>&1")
    lines += [f"export {name}={shlex.quote(value)}" for name, value in request.env]
    if request.advertise_host_command:
        lines.append(f'HUBGATE_ADVERTISE_HOST="$({shlex.join(request.advertise_host_command)})"')
        lines.append("export HUBGATE_ADVERTISE_HOST")
    if request.setup and request.setup.strip():
        lines += [
            "",
            "# --- setup (from the cluster options) ---",
            request.setup.rstrip("\n"),
            "hubgate_setup_status=$?",
            "# --- end of setup ---",
            'if [ "$hubgate_setup_status" -ne 0 ]; then',
            '    echo "hubgate: the setup commands failed with exit code'
            ' $hubgate_setup_status" >&2',
            '    exit "$hubgate_setup_status"',
            "fi",
        ]
    lines += ["", f"exec {shlex.join(request.argv)}", ""]
    return "\n".join(lines)


def common_walltime(request: JobRequest, *, with_seconds: bool = True) -> str:
    """The request's walltime as ``HH:MM:SS`` (or ``HH:MM``); the request must have one."""
    assert request.walltime_seconds is not None
    return format_walltime(request.walltime_seconds, with_seconds=with_seconds)
