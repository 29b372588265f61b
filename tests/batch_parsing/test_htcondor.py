"""HTCondor: its submit description, its commands' output parsed, and a job's life.

No HTCondor runs here, so there is no end-to-end test like ``tests/slurm/``: Debian 12
(bookworm), this machine's system, has no ``htcondor`` package (``apt-cache policy
htcondor``: no candidate; Debian dropped it after buster), HTCondor's own package
repositories cannot be reached from here, and PyPI's ``htcondor`` distribution holds the
Python bindings, not the daemons (``condor_master``, ``condor_schedd``). The samples
below are written from the formats the HTCondor manual documents: ``condor_submit``'s
summary line, ``-af:jt`` (autoformat: the job id, then tab-separated values, ``undefined``
for a missing attribute) and the ``JobStatus`` codes 1-7 of the job ClassAd. The job's
life runs the backend's real code against stand-in ``condor_*`` commands (scripts on
PATH that print such samples and record how they were called).
"""

from __future__ import annotations

import json
import os
import pwd
import stat
import sys
from pathlib import Path

import pytest

from hubgate.spawners.base import BackendError, Phase, ProcessSpec
from hubgate.spawners.batch.base import BatchBackend
from hubgate.spawners.batch.htcondor import (
    HTCondorBackend,
    check_submit_line,
    parse_condor_history,
    parse_condor_job_id,
    parse_condor_q,
)
from hubgate.spawners.batch.parsing import JobInfo, JobParseError
from tests.batch_parsing.test_batch_scripts import ACCOUNT, STAGING, rendered, worker_spec

# -- condor_submit ---------------------------------------------------------------------


def test_condor_submit_job_id():
    out = "Submitting job(s).\n1 job(s) submitted to cluster 1234.\n"
    assert parse_condor_job_id(out) == "1234"
    assert parse_condor_job_id("1234.0 - 1234.0\n") == "1234"  # condor_submit -terse
    with pytest.raises(JobParseError, match="condor_submit"):
        parse_condor_job_id("ERROR: on Line 4 of submit file: Submit file error\n")


# -- condor_q -allusers -af:jt JobStatus RemoteHost HoldReason <ids> --------------------

CONDOR_Q = (
    "101.0\t1\tundefined\tundefined\n"
    "102.0\t2\tslot1_3@node07.example.org\tundefined\n"
    "103.0\t5\tundefined\tError from slot1@node07.example.org: Job has gone over memory "
    "limit of 4096 megabytes. Peak usage: 5012 megabytes.\n"
    "104.0\t3\tundefined\tundefined\n"
    "105.0\t4\tundefined\tundefined\n"
    "106.0\t6\tslot2@node08\tundefined\n"
    "107.0\t7\tslot1@node09\tundefined\n"
    "108.0\t5\tundefined\tundefined\n"
)


def test_condor_q_states():
    assert parse_condor_q(CONDOR_Q) == {
        "101": JobInfo(Phase.PENDING, "idle"),
        "102": JobInfo(Phase.RUNNING, "running", node="node07.example.org"),
        "103": JobInfo(
            Phase.GONE,
            "held",
            "Error from slot1@node07.example.org: Job has gone over memory limit of 4096 "
            "megabytes. Peak usage: 5012 megabytes.",
            stuck=True,
        ),
        "104": JobInfo(Phase.GONE, "removed"),
        "105": JobInfo(Phase.GONE, "completed"),
        "106": JobInfo(Phase.RUNNING, "transferring output", node="node08"),
        "107": JobInfo(Phase.PENDING, "suspended"),
        "108": JobInfo(Phase.GONE, "held", stuck=True),
    }


def test_condor_q_skips_what_is_not_a_job_line():
    # An empty queue prints nothing; schedd warnings are not job lines.
    assert parse_condor_q("") == {}
    assert parse_condor_q("-- Schedd: submit.example.org : <10.0.0.1:9618?...\n") == {}


# -- condor_history -af:jt JobStatus ExitBySignal ExitCode ExitSignal LastRemoteHost
#    RemoveReason -limit 1 <id>


def test_condor_history_exit_code_signal_and_removal():
    done = parse_condor_history("105.0\t4\tfalse\t3\tundefined\tslot1@node07\tundefined\n")
    assert done == JobInfo(Phase.GONE, "completed", exit_code=3, node="node07")
    killed = parse_condor_history("106.0\t4\ttrue\tundefined\t9\tslot2@node08\tundefined\n")
    assert killed == JobInfo(Phase.GONE, "completed", signal=9, node="node08")
    removed = parse_condor_history(
        "104.0\t3\tfalse\tundefined\tundefined\tundefined\tvia condor_rm (by user alice)\n"
    )
    assert removed == JobInfo(Phase.GONE, "removed", "via condor_rm (by user alice)")
    assert parse_condor_history("") is None


# -- the submit description ------------------------------------------------------------

DESCRIPTION = f"""\
# Written by hubgate: one Dask process per batch job.
universe = vanilla
batch_name = hubgate-c1-w1
executable = /bin/bash
arguments = "{STAGING}/job.sh"
transfer_executable = false
should_transfer_files = NO
initialdir = /home/users/alice
getenv = false
output = {STAGING}/job.out
error = {STAGING}/job.err
log = {STAGING}/job.log
request_cpus = 2
request_memory = 4096M
notification = never
accounting_group = group_physics
accounting_group_user = alice
allowed_job_duration = 7200
requirements = (OpSys == "LINUX")
+ProjectName = "dask"
queue 1
"""


def test_submit_description():
    backend = HTCondorBackend(
        account="group_physics", extra_directives=['requirements = (OpSys == "LINUX")']
    )
    spec = worker_spec(resources={"walltime": "120", "directives": ['+ProjectName = "dask"']})
    assert rendered(backend, spec) == DESCRIPTION


def test_the_environment_is_in_the_staged_script_not_the_description():
    backend = HTCondorBackend()
    request = backend.job_request(worker_spec(), ACCOUNT, STAGING, f"{STAGING}/job.out")
    submission = backend.render_submission(request)
    script = submission.files["job.sh"].decode()
    assert script.startswith("#!/bin/bash\n\n# Written by hubgate")
    # HTCondor writes stderr to a file of its own; the service reads job.out.
    assert "\numask 077\nexec 2>&1\nexport HUBGATE_WORKER_NAME=w1\n" in script
    assert "export MY_OPTION='it'\"'\"'s $HOME'\n" in script
    assert script.endswith(
        "\nexec /opt/venv/bin/python -m hubgate.runtime.cluster_process worker\n"
    )
    assert "MY_OPTION" not in submission.text and "HUBGATE_" not in submission.text
    assert "accounting_group" not in submission.text  # no account: the pool's default


@pytest.mark.parametrize(
    ("line", "message"),
    [
        ("executable = /bin/sh", "hubgate sets executable"),
        ("Output = /tmp/x", "hubgate sets Output"),
        ("queue = 5", "hubgate sets queue"),
        ("queue 100", "give one 'name = value' line"),
        ("accounting_group_user = bob", "hubgate sets accounting_group_user"),
        ('+Owner = "root"', "hubgate sets \\+Owner"),
        ("include : /etc/passwd", "give one 'name = value' line"),
        ("request_gpus = 1\nqueue 50", "give one 'name = value' line"),
    ],
)
def test_extra_lines_cannot_replace_hubgate_s_commands(line, message):
    with pytest.raises(BackendError, match=message):
        check_submit_line(line)
    with pytest.raises(BackendError, match=message):
        rendered(HTCondorBackend(), worker_spec(resources={"directives": [line]}))


def test_unsafe_account_is_refused():
    with pytest.raises(BackendError, match="account 'a b' is not allowed"):
        rendered(HTCondorBackend(), worker_spec(resources={"account": "a b"}))


def test_the_whole_submission_comes_from_one_hook():
    # A system with a submit description needs no start() of its own.
    assert HTCondorBackend.start is BatchBackend.start
    assert HTCondorBackend.poll is BatchBackend.poll


def test_defaults_come_from_batchspawner():
    backend = HTCondorBackend()
    assert backend.submit_command == ["condor_submit"]
    assert backend.cancel_command == ["condor_rm", "{job_id}"]
    assert set(HTCondorBackend.accepted_resources) == {"account", "walltime", "directives"}


# -- a job's life against stand-in commands --------------------------------------------

STAND_IN = """\
import json, os, sys
here = os.path.dirname(os.path.abspath(__file__))
name = os.path.basename(sys.argv[0])
stdin = sys.stdin.read() if name == "condor_submit" else ""
with open(os.path.join(here, "calls.jsonl"), "a") as calls:
    calls.write(json.dumps([name, sys.argv[1:], stdin]) + "\\n")
reply = os.path.join(here, name + ".out")
if os.path.exists(reply):
    sys.stdout.write(open(reply).read())
"""


@pytest.fixture
def condor_bin(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Stand-in condor_submit/condor_q/condor_rm/condor_history: each records its call
    in calls.jsonl and prints <name>.out if the test wrote one."""
    folder = tmp_path / "bin"
    folder.mkdir()
    for name in ("condor_submit", "condor_q", "condor_rm", "condor_history"):
        path = folder / name
        path.write_text(f"#!{sys.executable}\n{STAND_IN}")
        path.chmod(path.stat().st_mode | stat.S_IXUSR)
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    (folder / "condor_submit.out").write_text(
        "Submitting job(s).\n1 job(s) submitted to cluster 77.\n"
    )
    return folder


def calls(folder: Path) -> list[list]:
    lines = (folder / "calls.jsonl").read_text().splitlines()
    return [json.loads(line) for line in lines]


def backend_in(tmp_path: Path) -> HTCondorBackend:
    return HTCondorBackend(
        submit_as_user=[],  # the staging helper and the stand-ins run as the test
        staging_dir=str(tmp_path / "staging" / "{cluster}" / "{name}"),
        system_uid_ranges=[],  # nobody stands for an ordinary account
        account="group_physics",
    )


def nobody_spec() -> ProcessSpec:
    return ProcessSpec(
        cluster_name="c1",
        role="worker",
        name="w1",
        username=pwd.getpwnam("nobody").pw_name,
        argv=["python", "-m", "hubgate.runtime.cluster_process", "worker"],
        env={"MY_OPTION": "x"},
        files={"worker.key": b"secret"},
    )


async def test_a_held_job_is_reported_with_its_reason_and_removed(
    tmp_path: Path, condor_bin: Path
) -> None:
    nobody = pwd.getpwnam("nobody")
    backend = backend_in(tmp_path)
    state = await backend.start(nobody_spec())
    staging = tmp_path / "staging" / "c1" / "w1"
    assert state == {
        "job_id": "77",
        "staging_dir": str(staging),
        "output": str(staging / "job.out"),
        "username": nobody.pw_name,
    }
    [(name, args, description)] = calls(condor_bin)
    assert (name, args) == ("condor_submit", [])
    assert f'arguments = "{staging}/job.sh"' in description
    assert f"accounting_group_user = {nobody.pw_name}" in description
    assert "export MY_OPTION=x\n" in (staging / "job.sh").read_text()
    assert stat.S_IMODE((staging / "job.sh").stat().st_mode) == 0o600

    (condor_bin / "condor_q.out").write_text("77.0\t1\tundefined\tundefined\n")
    [status] = await backend.poll([state])
    assert (status.phase, status.reason) == (Phase.PENDING, "queued")
    assert calls(condor_bin)[-1][:2] == [
        "condor_q",
        ["-allusers", "-af:jt", "JobStatus", "RemoteHost", "HoldReason", "77"],
    ]

    (condor_bin / "condor_q.out").write_text("77.0\t2\tslot1_1@node07.example.org\tundefined\n")
    [status] = await backend.poll([state])
    assert status.phase is Phase.RUNNING
    assert await backend.route_host(state) == "node07.example.org"

    hold = (
        "Error from slot1_1@node07.example.org: Job has gone over memory limit of 2048 megabytes."
    )
    (condor_bin / "condor_q.out").write_text(f"77.0\t5\tundefined\t{hold}\n")
    [status] = await backend.poll([state])
    assert status.phase is Phase.GONE
    assert status.reason == f"HTCondor job 77 was put on hold, and removed: {hold}"
    assert ["condor_rm", ["77"], ""] in calls(condor_bin)
    assert not [c for c in calls(condor_bin) if c[0] == "condor_history"]  # still queued

    # Once removed it has left the queue: stop finds it gone and removes the keys.
    (condor_bin / "condor_q.out").write_text("")
    await backend.stop(state)
    assert not (staging / "worker.key").exists()


async def test_a_job_that_left_the_queue_is_described_by_condor_history(
    tmp_path: Path, condor_bin: Path
) -> None:
    backend = backend_in(tmp_path)
    state = await backend.start(nobody_spec())
    (condor_bin / "condor_history.out").write_text(
        "77.0\t4\tfalse\t1\tundefined\tslot1@node07\tundefined\n"
    )
    [status] = await backend.poll([state])  # condor_q prints nothing: not in the queue
    assert (status.phase, status.exit_code) == (Phase.GONE, 1)
    assert status.reason == "HTCondor job 77 ended (completed) with exit code 1"
    assert calls(condor_bin)[-1][:2] == [
        "condor_history",
        [
            "-af:jt",
            "JobStatus",
            "ExitBySignal",
            "ExitCode",
            "ExitSignal",
            "LastRemoteHost",
            "RemoveReason",
            "-limit",
            "1",
            "77",
        ],
    ]
    assert not [c for c in calls(condor_bin) if c[0] == "condor_rm"]  # nothing to remove
    await backend.stop(state)
