"""Prepare or clean a job's staging folder, run *as the job's user*.

The batch backend runs this through its submit prefix (``runuser -u alice --``), so the
folder and files belong to the user even where root cannot write into home folders
(NFS with root squash, as on JASMIN):

    python -I -m hubgate.spawners.batch.staging prepare <folder>   (stdin: JSON)
    python -I -m hubgate.spawners.batch.staging clean <folder> <file>...

``prepare`` reads ``{"files": {"<name>": "<base64>"}, "remove": ["<name>"]}`` from stdin
(secrets never appear on a command line), creates ``<folder>`` and its missing parents
with mode 0700, removes the ``remove`` files (a previous job's output) and writes each
file with mode 0600. ``clean`` removes the named files if present.

Only the standard library: this starts once per job.
"""

from __future__ import annotations

import base64
import json
import os
import stat
import sys

__all__ = ["main"]


class StagingError(Exception):
    pass


def _safe_name(name: str) -> str:
    if not name or "/" in name or name in (".", "..") or "\0" in name:
        raise StagingError(f"refusing the file name {name!r}")
    return name


def prepare(folder: str, files: dict[str, bytes], remove: list[str]) -> None:
    os.umask(0o077)
    os.makedirs(folder, mode=0o700, exist_ok=True)
    info = os.lstat(folder)
    if not stat.S_ISDIR(info.st_mode):
        raise StagingError(f"{folder} exists and is not a folder")
    if info.st_uid != os.getuid():
        raise StagingError(f"{folder} belongs to uid {info.st_uid}, not to this user")
    os.chmod(folder, 0o700)
    # Output and exit files of an earlier process of the same name: the batch system must
    # create them afresh (a leftover symlink there would make the job fail to start).
    clean(folder, remove)
    for name, data in files.items():
        path = os.path.join(folder, _safe_name(name))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600)
        try:
            os.fchmod(fd, 0o600)
            os.write(fd, data)
        finally:
            os.close(fd)


def clean(folder: str, names: list[str]) -> None:
    for name in names:
        try:
            os.unlink(os.path.join(folder, _safe_name(name)))
        except FileNotFoundError:
            pass


def main(argv: list[str]) -> int:
    try:
        if len(argv) >= 2 and argv[0] == "prepare":
            request = json.load(sys.stdin)
            files = {k: base64.b64decode(v) for k, v in request.get("files", {}).items()}
            prepare(argv[1], files, [str(n) for n in request.get("remove", [])])
        elif len(argv) >= 2 and argv[0] == "clean":
            clean(argv[1], argv[2:])
        else:
            raise StagingError("usage: staging prepare <folder> | clean <folder> <file>...")
    except (OSError, ValueError, StagingError) as exc:
        print(f"hubgate staging: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
