"""Batch backends never submit as root, a system account or the service's own account.

SlurmBackend with a stand-in ``sbatch`` (a script that records that it ran): a hub user
named root, daemon, slurm, nobody or one with no system account is refused before
anything is submitted; an ordinary account is submitted (``nobody`` stands for one, with
the system's uid ranges emptied).
"""

from __future__ import annotations

import pwd
import sys
from pathlib import Path

import pytest

from hubgate.spawners.accounts import AccountRefused
from hubgate.spawners.base import ProcessSpec
from hubgate.spawners.batch import SlurmBackend


def backend_recording_to(marker: Path, staging: Path, **kwargs: object) -> SlurmBackend:
    fake_sbatch = f"open({str(marker)!r}, 'a').write('submitted\\n'); print('4242')"
    return SlurmBackend(
        submit_command=[sys.executable, "-c", fake_sbatch],
        # the staging helper and the stand-in run as the test (root): no runuser here
        submit_as_user=[],
        staging_dir=str(staging / "{username}" / "{cluster}" / "{name}"),
        scheduler_on_service_host=False,
        **kwargs,
    )


def spec(username: str) -> ProcessSpec:
    return ProcessSpec(
        cluster_name="c1", role="worker", name="w1", username=username, argv=["true"]
    )


@pytest.mark.parametrize(
    ("username", "message"),
    [
        ("root", "'root', which is the service's own account"),
        ("daemon", r"'daemon' \(uid 1\), a system account \(uids below 1000 are refused\)"),
        ("slurm-or-none-xyz", "there is no system account 'slurm-or-none-xyz'"),
        # above min_uid, in the system's ranges (Debian's slurm-wlm makes slurm 64030)
        ("slurm", r"'slurm' \(uid \d+\), a system account"),
        ("nobody", r"'nobody' \(uid 65534\), a system account \(uids 65534\.\.65535"),
    ],
)
async def test_refused_accounts_get_no_job(tmp_path: Path, username: str, message: str) -> None:
    if username == "slurm":
        try:
            pwd.getpwnam("slurm")
        except KeyError:
            pytest.skip("no slurm account on this machine (Debian's slurm-wlm makes one)")
    marker = tmp_path / "sbatch-ran"
    backend = backend_recording_to(marker, tmp_path)
    with pytest.raises(AccountRefused, match=message):
        await backend.check_user(username)
    with pytest.raises(AccountRefused, match=message):
        await backend.start(spec(username))
    assert not marker.exists()
    assert not (tmp_path / username).exists()


async def test_min_uid_is_configurable_and_ordinary_accounts_are_submitted(
    tmp_path: Path,
) -> None:
    marker = tmp_path / "sbatch-ran"
    nobody = pwd.getpwnam("nobody").pw_uid
    strict = backend_recording_to(marker, tmp_path, min_uid=nobody + 1, system_uid_ranges=[])
    with pytest.raises(AccountRefused, match=f"below {nobody + 1} are refused"):
        await strict.start(spec("nobody"))
    assert not marker.exists()

    backend = backend_recording_to(marker, tmp_path, system_uid_ranges=[])
    await backend.check_user("nobody")
    state = await backend.start(spec("nobody"))
    assert state["job_id"] == "4242" and state["username"] == "nobody"
    assert marker.read_text() == "submitted\n"
