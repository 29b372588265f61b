"""Job scripts rendered by the pure builders, compared with literal text; checked values."""

from __future__ import annotations

import sys

import pytest
from traitlets.config import Config

from hubgate.spawners.base import BackendError, ProcessSpec
from hubgate.spawners.batch.base import SystemAccount
from hubgate.spawners.batch.command import CommandError, run_command
from hubgate.spawners.batch.htcondor import HTCondorBackend
from hubgate.spawners.batch.lsf import LSFBackend
from hubgate.spawners.batch.pbs import PBSBackend
from hubgate.spawners.batch.script import JobRequest, format_walltime, parse_walltime
from hubgate.spawners.batch.sge import SGEBackend
from hubgate.spawners.batch.slurm import SlurmBackend

ACCOUNT = SystemAccount(name="alice", uid=1000, home="/home/users/alice")
STAGING = "/home/users/alice/.hubgate/c1/w1"


def worker_spec(**kwargs) -> ProcessSpec:
    values = {
        "cluster_name": "c1",
        "role": "worker",
        "name": "w1",
        "username": "alice",
        "argv": ["/opt/venv/bin/python", "-m", "hubgate.runtime.cluster_process", "worker"],
        "env": {"HUBGATE_WORKER_NAME": "w1", "MY_OPTION": "it's $HOME"},
        "cores": 2,
        "memory": 4 * 2**30,
        "setup": "source /home/users/alice/env/bin/activate",
    }
    values.update(kwargs)
    return ProcessSpec(**values)


def rendered(backend, spec: ProcessSpec) -> str:
    request = backend.job_request(spec, ACCOUNT, STAGING, f"{STAGING}/job.out")
    return backend.render_submission(request).text


SLURM_SCRIPT = """\
#!/bin/bash
#SBATCH --job-name=hubgate-c1-w1
#SBATCH --output=/home/users/alice/.hubgate/c1/w1/job.out
#SBATCH --chdir=/home/users/alice
#SBATCH --nodes=1
#SBATCH --ntasks=1
#SBATCH --cpus-per-task=2
#SBATCH --mem=4096M
#SBATCH --partition=par-single
#SBATCH --account=ceda
#SBATCH --qos=high
#SBATCH --time=02:00:00
#SBATCH --constraint=amd

# Written by hubgate: one Dask process per batch job.
umask 077
export HUBGATE_WORKER_NAME=w1
export MY_OPTION='it'"'"'s $HOME'
export HUBGATE_LISTEN_HOST=0.0.0.0
export HUBGATE_EXIT_FILE=/home/users/alice/.hubgate/c1/w1/exit.json
export HUBGATE_CREDENTIALS_DIR=/home/users/alice/.hubgate/c1/w1
HUBGATE_ADVERTISE_HOST="$(hostname)"
export HUBGATE_ADVERTISE_HOST

# --- setup (from the cluster options) ---
source /home/users/alice/env/bin/activate
hubgate_setup_status=$?
# --- end of setup ---
if [ "$hubgate_setup_status" -ne 0 ]; then
    echo "hubgate: the setup commands failed with exit code $hubgate_setup_status" >&2
    exit "$hubgate_setup_status"
fi

exec /opt/venv/bin/python -m hubgate.runtime.cluster_process worker
"""


def test_slurm_script():
    backend = SlurmBackend(
        partition="short-serial", account="ceda", qos="high", extra_directives=["--constraint=amd"]
    )
    spec = worker_spec(resources={"partition": "par-single", "walltime": "120"})
    assert rendered(backend, spec) == SLURM_SCRIPT


def test_script_without_setup_or_advertise_command():
    backend = SlurmBackend(advertise_host_command=[])
    text = rendered(backend, worker_spec(setup=None, argv=["python", "a b", "$(id)"]))
    assert "setup" not in text and "ADVERTISE" not in text
    assert text.endswith("\nexec python 'a b' '$(id)'\n")


def test_pbs_directives():
    backend = PBSBackend(queue="workq", account="acct1", project="proj", walltime="1-00:00:00")
    text = rendered(backend, worker_spec())
    assert text.splitlines()[:9] == [
        "#!/bin/bash",
        "#PBS -N hubgate-c1-w1",
        "#PBS -o /home/users/alice/.hubgate/c1/w1/job.out",
        "#PBS -j oe",
        "#PBS -l select=1:ncpus=2:mem=4096mb",
        "#PBS -q workq",
        "#PBS -A acct1",
        "#PBS -P proj",
        "#PBS -l walltime=24:00:00",
    ]
    torque = rendered(PBSBackend(torque=True), worker_spec())
    assert "#PBS -l nodes=1:ppn=2\n#PBS -l mem=4096mb\n" in torque
    assert "#PBS -d /home/users/alice\n" in torque


def test_sge_directives():
    backend = SGEBackend(queue="all.q", project="dask", walltime="90")
    text = rendered(backend, worker_spec())
    assert text.splitlines()[:11] == [
        "#!/bin/bash",
        "#$ -N hubgate-c1-w1",
        "#$ -o /home/users/alice/.hubgate/c1/w1/job.out",
        "#$ -j y",
        "#$ -S /bin/bash",
        "#$ -wd /home/users/alice",
        "#$ -pe smp 2",
        "#$ -l h_vmem=2048M",
        "#$ -q all.q",
        "#$ -P dask",
        "#$ -l h_rt=01:30:00",
    ]


def test_lsf_directives():
    backend = LSFBackend(queue="normal", walltime="00:30:30")
    text = rendered(backend, worker_spec())
    assert text.splitlines()[:10] == [
        "#!/bin/bash",
        "#BSUB -J hubgate-c1-w1",
        "#BSUB -o /home/users/alice/.hubgate/c1/w1/job.out",
        "#BSUB -cwd /home/users/alice",
        "#BSUB -n 2",
        '#BSUB -R "span[hosts=1]"',
        '#BSUB -R "rusage[mem=4096MB]"',
        "#BSUB -M 4096MB",
        "#BSUB -q normal",
        "#BSUB -W 00:31",
    ]


@pytest.mark.parametrize(
    ("resources", "message"),
    [
        ({"partition": "debug --uid=0"}, "queue 'debug --uid=0' is not allowed"),
        ({"account": "a\n#SBATCH --uid=0"}, "account"),
        ({"qos": "high;rm"}, "project 'high;rm' is not allowed"),
        ({"directives": ["--gres=gpu:1\n--uid=0"]}, "extra directive"),
        ({"directives": ["rm -rf /"]}, "extra directive"),
        ({"walltime": "tomorrow"}, "walltime 'tomorrow' is not valid"),
    ],
)
def test_unsafe_values_are_refused(resources, message):
    with pytest.raises(BackendError, match=message):
        rendered(SlurmBackend(), worker_spec(resources=resources))


def test_bad_environment_name_is_refused():
    with pytest.raises(BackendError, match="environment variable name"):
        rendered(SlurmBackend(), worker_spec(env={"A=B; rm": "x"}))


def test_directives_from_resources_as_text():
    spec = worker_spec(resources={"directives": "--gres=gpu:1\n\n--exclusive\n"})
    text = rendered(SlurmBackend(), spec)
    assert "#SBATCH --gres=gpu:1\n#SBATCH --exclusive\n" in text


def test_walltime_formats():
    assert parse_walltime("90") == 5400
    assert parse_walltime("01:02:03") == 3723
    assert parse_walltime("2-00:00:00") == 2 * 86400
    for bad in ("1:61:00", "", "1h", "-5"):
        with pytest.raises(BackendError):
            parse_walltime(bad)
    assert format_walltime(3723) == "01:02:03"
    assert format_walltime(90000) == "25:00:00"
    assert format_walltime(61, with_seconds=False) == "00:02"


def test_request_needs_cores_and_memory():
    with pytest.raises(BackendError, match="at least 1 core"):
        JobRequest(job_name="x", output="/o", workdir="/", cores=0, memory_mib=1, argv=("a",))


def test_system_username_template_and_callable():
    assert SlurmBackend(system_username="hub-{username}")._system_username("bob") == "hub-bob"
    assert SlurmBackend(system_username=str.lower)._system_username("Bob") == "bob"
    with pytest.raises(BackendError, match="no valid system account name"):
        SlurmBackend()._system_username("bob/../root")


def test_staging_path_refuses_odd_names():
    backend = SlurmBackend()
    assert backend._staging_path(ACCOUNT, worker_spec()) == STAGING
    with pytest.raises(BackendError, match="cannot be used in a file name"):
        backend._staging_path(ACCOUNT, worker_spec(name="../../etc"))


def test_configured_from_a_parent_config():
    config = Config()
    config.SlurmBackend.partition = "par-multi"
    config.SlurmBackend.submit_as_user = ["sudo", "-n", "-u", "{username}", "--"]
    backend = SlurmBackend(config=config)
    assert backend.partition == "par-multi"
    assert backend._prefix(ACCOUNT) == ["sudo", "-n", "-u", "alice", "--"]
    # Defaults come from batchspawner's commands.
    assert backend.submit_command == ["sbatch", "--parsable"]
    assert backend.cancel_command == ["scancel", "{job_id}"]
    assert LSFBackend().cancel_command == ["bkill", "{job_id}"]


@pytest.mark.parametrize("cls", [SlurmBackend, PBSBackend, SGEBackend, LSFBackend, HTCondorBackend])
def test_every_option_has_help(cls):
    for name, trait in cls.class_traits(config=True).items():
        assert trait.help and trait.help.strip(), f"{cls.__name__}.{name} has no help"


async def test_failing_command_names_the_command_and_its_stderr():
    with pytest.raises(CommandError) as info:
        await run_command(
            [sys.executable, "-c", "import sys; sys.exit('no such partition: debug')", "x y"],
            limit_seconds=60,
        )
    message = str(info.value)
    assert f"{sys.executable} -c" in message and "'x y'" in message
    assert "exit code 1: no such partition: debug" in message


async def test_hanging_command_is_killed():
    with pytest.raises(CommandError, match="did not finish within 0.5 s"):
        await run_command(["sleep", "30"], limit_seconds=0.5)


async def test_missing_command():
    with pytest.raises(CommandError, match="cannot run no-such-sbatch"):
        await run_command(["no-such-sbatch"], limit_seconds=5)


def test_example_site_config_loads():
    from pathlib import Path

    from traitlets.config import PyFileConfigLoader

    folder = Path(__file__).parents[2] / "config" / "slurm"
    config = PyFileConfigLoader("hubgate_config.py", path=str(folder)).load_config()
    backend = SlurmBackend(config=config)
    assert backend.partition == "par-single"
    assert backend._prefix(ACCOUNT) == ["runuser", "-u", "alice", "--"]
    assert config.HubgateService.backend_class == "slurm"
