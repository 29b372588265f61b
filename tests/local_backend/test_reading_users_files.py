"""The service reads logs and exit records in users' folders as root: it must never
read what a user links there (a symbolic link, another hard link to a file the user
cannot read) nor block on a FIFO a user put in place of a file."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from hubgate.runtime.cluster_process import read_own_file
from hubgate.spawners.forkserver import last_line
from hubgate.spawners.local import _tail

SECRET = "the service's secret\n"


@pytest.fixture
def secret(tmp_path: Path) -> Path:
    path = tmp_path / "secret"
    path.write_text(SECRET)
    path.chmod(0o600)
    return path


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    path = tmp_path / "users-folder"
    path.mkdir()
    return path


def planted(kind: str, folder: Path, secret: Path) -> Path:
    path = folder / "scheduler.log"
    if kind == "symlink":
        path.symlink_to(secret)
    elif kind == "hardlink":
        os.link(secret, path)
    else:
        os.mkfifo(path)
    return path


@pytest.mark.parametrize("kind", ["symlink", "hardlink", "fifo"])
def test_planted_files_are_not_read(kind: str, folder: Path, secret: Path) -> None:
    path = planted(kind, folder, secret)
    assert SECRET.strip() not in (_tail(str(path), 10) or "")
    assert last_line(str(path)) == ""
    with pytest.raises(OSError):
        read_own_file(path, 1024)


def test_a_plain_log_is_read(folder: Path) -> None:
    path = folder / "scheduler.log"
    path.write_text("first\nlast words\n")
    assert _tail(str(path), 10) == "first\nlast words"
    assert last_line(str(path)) == "last words"
    assert read_own_file(path, 1024) == b"first\nlast words\n"
