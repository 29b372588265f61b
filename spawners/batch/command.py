"""Running batch-system commands: argument lists, asyncio subprocesses, timeouts.

Never a shell string: every command is an argv list, user data travels as separate
arguments or on stdin. A command that fails or hangs becomes a :class:`CommandError`
(a :class:`BackendError`) that names the command and quotes its stderr.
"""

from __future__ import annotations

import asyncio
import os
import shlex
import signal
from collections.abc import Mapping, Sequence
from contextlib import suppress
from dataclasses import dataclass

from .base import BackendError

__all__ = ["CommandError", "CommandResult", "describe", "failure", "run_command"]

# Enough of stderr to explain a failure without flooding an error message.
_STDERR_CHARS = 1000


def describe(argv: Sequence[str]) -> str:
    """The command as a user could paste it into a shell."""
    return shlex.join(argv)


@dataclass(frozen=True)
class CommandResult:
    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str


class CommandError(BackendError):
    """A command exited non-zero (``result`` is set) or could not run / timed out."""

    def __init__(self, message: str, result: CommandResult | None = None) -> None:
        super().__init__(message)
        self.result = result


def _kill_group(proc: asyncio.subprocess.Process) -> None:
    # Commands run in their own session so a prefix like runuser/sudo and the batch
    # command under it go together.
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)
    with suppress(ProcessLookupError):
        proc.kill()


async def run_command(
    argv: Sequence[str],
    *,
    limit_seconds: float,
    input: bytes | None = None,
    env: Mapping[str, str] | None = None,
    check: bool = True,
) -> CommandResult:
    """Run ``argv`` and return its result; raise :class:`CommandError` when it cannot be
    started, runs longer than ``limit_seconds`` or (with ``check``) exits non-zero."""
    argv = list(argv)
    try:
        proc = await asyncio.create_subprocess_exec(
            *argv,
            stdin=asyncio.subprocess.PIPE if input is not None else asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            env=dict(env) if env is not None else None,
            cwd="/",
            start_new_session=True,
        )
    except OSError as exc:
        raise CommandError(f"cannot run {describe(argv)}: {exc.strerror or exc}") from exc
    try:
        out, err = await asyncio.wait_for(proc.communicate(input), limit_seconds)
    except TimeoutError:
        _kill_group(proc)
        await proc.wait()
        raise CommandError(f"{describe(argv)} did not finish within {limit_seconds:g} s") from None
    except BaseException:
        # Cancelled: do not leave the command running behind us.
        _kill_group(proc)
        raise
    result = CommandResult(
        argv=tuple(argv),
        returncode=proc.returncode if proc.returncode is not None else -1,
        stdout=out.decode(errors="replace"),
        stderr=err.decode(errors="replace"),
    )
    if check and result.returncode != 0:
        raise failure(result)
    return result


def failure(result: CommandResult) -> CommandError:
    """The error for a command that exited non-zero."""
    stderr = result.stderr.strip()[-_STDERR_CHARS:] or "(no error output)"
    return CommandError(
        f"{describe(result.argv)} failed with exit code {result.returncode}: {stderr}",
        result,
    )
