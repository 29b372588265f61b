"""The batch systems' command output, parsed.

The Slurm samples were captured from Slurm 22.05 (Debian's slurm-wlm) in this repository's
test cluster. PBS, SGE and LSF do not run here: their samples are written from the
formats the systems document, as cited above each one.
"""

from __future__ import annotations

import pytest

from hubgate.spawners.base import Phase
from hubgate.spawners.batch.lsf import parse_bjobs, parse_lsf_job_id
from hubgate.spawners.batch.parsing import JobInfo, JobParseError
from hubgate.spawners.batch.pbs import parse_pbs_job_id, parse_qstat_full
from hubgate.spawners.batch.sge import parse_qacct, parse_qstat_xml, parse_sge_job_id
from hubgate.spawners.batch.slurm import parse_scontrol_job, parse_slurm_job_id, parse_squeue

# -- Slurm (captured) ------------------------------------------------------------------


def test_sbatch_parsable_job_id():
    assert parse_slurm_job_id("1234\n") == "1234"
    # With a federation/cluster suffix ("<id>;<cluster>").
    assert parse_slurm_job_id("1234;lotus\n") == "1234"
    with pytest.raises(JobParseError, match="sbatch"):
        parse_slurm_job_id("sbatch: error: Batch job submission failed\n")


# squeue -h --states=all -j 1,2,3,4,5 -o "%i %T %r"
SQUEUE = """\
2 FAILED NonZeroExitCode
1 RUNNING None
3 PENDING Resources
5 PENDING ReqNodeNotAvail,_UnavailableNodes:vm
4 CANCELLED None
6 COMPLETING None
7 PENDING None
"""


def test_squeue_states_and_reasons():
    jobs = parse_squeue(SQUEUE)
    assert jobs == {
        "1": JobInfo(Phase.RUNNING, "RUNNING"),
        "2": JobInfo(Phase.GONE, "FAILED", "NonZeroExitCode"),
        "3": JobInfo(Phase.PENDING, "PENDING", "Resources"),
        "4": JobInfo(Phase.GONE, "CANCELLED"),
        "5": JobInfo(Phase.PENDING, "PENDING", "ReqNodeNotAvail,_UnavailableNodes:vm"),
        "6": JobInfo(Phase.RUNNING, "COMPLETING"),
        "7": JobInfo(Phase.PENDING, "PENDING"),
    }
    assert parse_squeue("") == {}


SCONTROL_FAILED = (
    "JobId=2 JobName=wrap UserId=root(0) GroupId=root(0) MCS_label=N/A "
    "Priority=4294901758 Nice=0 Account=(null) QOS=(null) JobState=FAILED "
    "Reason=NonZeroExitCode Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 "
    "ExitCode=3:0 RunTime=00:00:00 TimeLimit=365-00:00:00 TimeMin=N/A "
    "SubmitTime=2026-11-23T18:19:24 EligibleTime=2026-11-23T18:19:24 "
    "Partition=debug AllocNode:Sid=localhost:7729 NodeList=vm BatchHost=vm "
    "TRES=cpu=1,mem=100M,node=1,billing=1 WorkDir=/work/main/tests/slurm "
    "StdErr=/work/main/tests/slurm/slurm-2.out StdIn=/dev/null Power= \n"
)
SCONTROL_CANCELLED = (
    "JobId=4 JobName=wrap UserId=root(0) GroupId=root(0) JobState=CANCELLED Reason=None "
    "Dependency=(null) Requeue=1 Restarts=0 BatchFlag=1 Reboot=0 ExitCode=0:15 "
    "RunTime=00:00:02 TimeLimit=365-00:00:00 Partition=debug NodeList=vm Power= \n"
)


def test_scontrol_show_job_exit_code_and_signal():
    assert parse_scontrol_job(SCONTROL_FAILED) == JobInfo(
        Phase.GONE, "FAILED", "NonZeroExitCode", exit_code=3, node="vm"
    )
    assert parse_scontrol_job(SCONTROL_CANCELLED) == JobInfo(Phase.GONE, "CANCELLED", signal=15)
    assert parse_scontrol_job("slurm_load_jobs error: Invalid job id specified\n") is None


# -- PBS Pro / Torque ------------------------------------------------------------------

# PBS Professional Reference Guide, "qstat": ``qstat -f`` prints "Job Id: <id>" followed
# by indented "attribute = value" lines; long values continue on tab-indented lines.
# With -x finished jobs are included with job_state F and Exit_status.
QSTAT_PBSPRO = """\
Job Id: 1234.pbs01
    Job_Name = hubgate-c1-w1
    Job_Owner = alice@login01
    job_state = Q
    queue = workq
    server = pbs01
    comment = Not Running: Insufficient amount of resource: ncpus (R: 4 A: 2 T
\t: 2)
    Resource_List.ncpus = 4

Job Id: 1235.pbs01
    Job_Name = hubgate-c1-w2
    job_state = R
    exec_host = node01/0*2
    comment = Job run at Wed Mar 06 at 12:32 on (node01:ncpus=2:mem=2097152kb)

Job Id: 1236.pbs01
    job_state = F
    Exit_status = 3
    comment = Job run at Wed Mar 06 at 12:33 on (node01:ncpus=1) and finished

Job Id: 1237.pbs01
    job_state = F
    Exit_status = 271

Job Id: 1238.pbs01
    job_state = H
    comment = job held, too many failed attempts to run

Job Id: 1239.pbs01
    job_state = E
"""

# Torque Administrator Guide, "qstat -f": same layout; completed jobs stay as job_state C
# with exit_status for keep_completed seconds.
QSTAT_TORQUE = """\
Job Id: 88.torque-server.example.org
    Job_Name = hubgate-c1-w1
    job_state = C
    exit_status = 0
Job Id: 89.torque-server.example.org
    job_state = W
"""


def test_qsub_job_id():
    assert parse_pbs_job_id("1234.pbs01\n") == "1234.pbs01"
    with pytest.raises(JobParseError):
        parse_pbs_job_id("")


def test_qstat_full_pbspro():
    jobs = parse_qstat_full(QSTAT_PBSPRO)
    assert jobs["1234.pbs01"] == JobInfo(
        Phase.PENDING,
        "Q",
        "Not Running: Insufficient amount of resource: ncpus (R: 4 A: 2 T: 2)",
    )
    assert jobs["1235.pbs01"].phase is Phase.RUNNING
    assert jobs["1235.pbs01"].node == "node01"  # from exec_host = node01/0*2
    assert jobs["1234.pbs01"].node == ""  # queued: no node yet
    assert jobs["1236.pbs01"] == JobInfo(
        Phase.GONE,
        "F",
        "Job run at Wed Mar 06 at 12:33 on (node01:ncpus=1) and finished",
        exit_code=3,
    )
    assert jobs["1237.pbs01"] == JobInfo(Phase.GONE, "F", signal=15)
    assert jobs["1238.pbs01"].phase is Phase.PENDING
    assert jobs["1239.pbs01"].phase is Phase.RUNNING  # exiting: still on its node


def test_qstat_full_torque():
    jobs = parse_qstat_full(QSTAT_TORQUE)
    assert jobs == {
        "88.torque-server.example.org": JobInfo(Phase.GONE, "C", exit_code=0),
        "89.torque-server.example.org": JobInfo(Phase.PENDING, "W"),
    }


# -- SGE -------------------------------------------------------------------------------


# Grid Engine qsub(1): "Your job <id> ("<name>") has been submitted".
def test_sge_qsub_job_id():
    assert parse_sge_job_id('Your job 101 ("hubgate-c1-w1") has been submitted\n') == "101"


# Grid Engine qstat(1) -xml: running jobs under <queue_info>, pending ones under
# <job_info>, each a <job_list state="running|pending"> with JB_job_number and the short
# state code in <state>.
QSTAT_XML = """<?xml version='1.0'?>
<job_info  xmlns:xsd="http://arc.liu.se/schemas/sge/qstat.xsd">
  <queue_info>
    <job_list state="running">
      <JB_job_number>101</JB_job_number>
      <JAT_prio>0.55500</JAT_prio>
      <JB_name>hubgate-c1-w1</JB_name>
      <JB_owner>alice</JB_owner>
      <state>r</state>
      <JAT_start_time>2024-03-06T12:32:37</JAT_start_time>
      <queue_name>all.q@node01</queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="running">
      <JB_job_number>105</JB_job_number>
      <state>dr</state>
      <queue_name>all.q@node02</queue_name>
      <slots>1</slots>
    </job_list>
  </queue_info>
  <job_info>
    <job_list state="pending">
      <JB_job_number>102</JB_job_number>
      <JB_name>hubgate-c1-w2</JB_name>
      <JB_owner>alice</JB_owner>
      <state>qw</state>
      <JB_submission_time>2024-03-06T12:32:40</JB_submission_time>
      <queue_name></queue_name>
      <slots>1</slots>
    </job_list>
    <job_list state="pending">
      <JB_job_number>103</JB_job_number>
      <state>hqw</state>
    </job_list>
    <job_list state="pending">
      <JB_job_number>104</JB_job_number>
      <state>Eqw</state>
    </job_list>
  </job_info>
</job_info>
"""


def test_qstat_xml():
    jobs = parse_qstat_xml(QSTAT_XML)
    assert jobs == {
        "101": JobInfo(Phase.RUNNING, "r", node="node01"),
        "105": JobInfo(Phase.RUNNING, "dr", node="node02"),
        "102": JobInfo(Phase.PENDING, "qw"),
        "103": JobInfo(Phase.PENDING, "hqw", "held"),
        "104": JobInfo(Phase.GONE, "Eqw", "in error state (see qstat -j)"),
    }
    with pytest.raises(JobParseError):
        parse_qstat_xml("error: commlib error: got select error (Connection refused)")


# Grid Engine accounting(5) / qacct(1) -j: "name value" lines after a line of "=".
QACCT = """\
==============================================================
qname        all.q
hostname     node01
group        users
owner        alice
project      NONE
jobname      hubgate-c1-w1
jobnumber    101
taskid       undefined
failed       0
exit_status  3
ru_wallclock 12s
"""


def test_qacct():
    assert parse_qacct(QACCT) == JobInfo(Phase.GONE, "finished", exit_code=3)
    killed = QACCT.replace("exit_status  3", "exit_status  137").replace(
        "failed       0", "failed       100 : assumedly after job"
    )
    assert parse_qacct(killed) == JobInfo(
        Phase.GONE, "finished", "failed: 100 : assumedly after job", signal=9
    )
    assert parse_qacct("error: job id 101 not found\n") is None


# -- LSF -------------------------------------------------------------------------------


# IBM Spectrum LSF bsub: "Job <id> is submitted to [default ]queue <name>."
def test_bsub_job_id():
    assert parse_lsf_job_id("Job <1815> is submitted to default queue <normal>.\n") == "1815"
    assert parse_lsf_job_id("Job <1816> is submitted to queue <short>.\n") == "1816"
    with pytest.raises(JobParseError, match="bsub"):
        parse_lsf_job_id("Bad resource requirement syntax. Job not submitted.\n")


# IBM Spectrum LSF bjobs -o "jobid stat exit_code exec_host pend_reason delimiter='|'"
# -noheader: one line per job, "-" for empty fields; unknown ids go to stderr. exec_host
# is "host" or "n*host:m*host2" for a job spread over hosts.
BJOBS = """\
1815|RUN|-|node07|-
1816|PEND|-|-|Job requirements for reserving resources (mem) not satisfied: 2 hosts;
1817|DONE|-|node07|-
1818|EXIT|3|2*node08:2*node09|-
1819|EXIT|130|-|-
1820|PSUSP|-|-|The job was suspended by user;
1821|UNKWN|-|-|-
"""


def test_bjobs():
    jobs = parse_bjobs(BJOBS)
    assert jobs == {
        "1815": JobInfo(Phase.RUNNING, "RUN", node="node07"),
        "1816": JobInfo(
            Phase.PENDING,
            "PEND",
            "Job requirements for reserving resources (mem) not satisfied: 2 hosts",
        ),
        "1817": JobInfo(Phase.GONE, "DONE", exit_code=0, node="node07"),
        "1818": JobInfo(Phase.GONE, "EXIT", exit_code=3, node="node08"),
        "1819": JobInfo(Phase.GONE, "EXIT", signal=2),
        "1820": JobInfo(Phase.PENDING, "PSUSP", "The job was suspended by user"),
        "1821": JobInfo(Phase.RUNNING, "UNKWN"),
    }
