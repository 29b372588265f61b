"""A typo in any of the service's dict settings stops ``hubgate service`` at start, with
one message that names the setting, the bad key, the closest valid key and every valid
one: run for real, as an operator runs it, with a configuration file.

The service stops in ``initialize``, before it opens its database or listens anywhere:
each test checks that no database was written, so the refusal is not a failure later
on."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

HUBGATE = Path(sys.executable).parent / "hubgate"

# The setting as the operator wrote it (with a typo), and what the message must say.
CASES = {
    "user_limits": (
        'c.HubgateService.user_limits = {"max_cluster": 2, "max_cores": 16}',
        "HubgateService.user_limits: unknown key 'max_cluster' (did you mean "
        "'max_clusters'?); valid keys: max_clusters, max_cores, max_memory",
    ),
    "group_limits": (
        'c.HubgateService.group_limits = {"staff": {"max_clusters": 5, "max_memroy": "8G"}}',
        "HubgateService.group_limits['staff']: unknown key 'max_memroy' (did you mean "
        "'max_memory'?); valid keys: max_clusters, max_cores, max_memory",
    ),
    "per_user_limits": (
        'c.HubgateService.per_user_limits = {"alice": {"max_clusters": "two"}}',
        "HubgateService.per_user_limits['alice']: max_clusters must be a whole number >= 0",
    ),
    "cluster_config": (
        'c.HubgateService.cluster_config = {"max_worker": 8, "scheduler_memory": "1G"}',
        "HubgateService.cluster_config (with the local backend): unknown key 'max_worker' "
        "(did you mean 'max_workers'?); valid keys: worker_cores, worker_memory",
    ),
    "cluster_options": (
        textwrap.dedent(
            """
            from hubgate.options import OptionSet, profile_field, standard_handler
            c.HubgateService.cluster_options = OptionSet(
                profile_field([("small", {"worker_cores": 1}), ("gpu", {"partiton": "gpu"})]),
                handler=standard_handler,
            )
            c.HubgateService.backend_class = "slurm"
            """
        ),
        "HubgateService.cluster_options: its handler would give clusters settings the "
        "slurm backend does not take: unknown key 'partiton' (did you mean 'partition'?)",
    ),
    "instance_types": (
        textwrap.dedent(
            """
            c.HubgateService.backend_class = "kubernetes"
            c.KubernetesBackend.instance_types = {
                "n2-highmem-16": {"node_selectr": {"node.kubernetes.io/instance-type": "n2"}},
            }
            """
        ),
        "KubernetesBackend.instance_types['n2-highmem-16']: unknown key 'node_selectr' "
        "(did you mean 'node_selector'?); valid keys: node_selector, tolerations",
    ),
    "encryption_keys": (
        'c.HubgateService.encryption_keys = ["not-a-fernet-key"]',
        "HubgateService.encryption_keys: key 1 of 1: An encryption key is not a valid Fernet key",
    ),
}


def run_service(args: list[str], tmp_path: Path, **environ: str) -> tuple[int, str]:
    data_dir = tmp_path / "data"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("JUPYTERHUB_", "HUBGATE_"))}
    env["HUBGATE_DATA_DIR"] = str(data_dir)
    env.update(environ)
    proc = subprocess.run(
        [str(HUBGATE), "service", *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc.returncode, proc.stdout + proc.stderr


def assert_refused_before_start(
    returncode: int, output: str, expected: str, data_dir: Path
) -> None:
    assert returncode != 0, output
    assert expected in output, output
    # one clear message, not a traceback
    assert "Traceback" not in output, output
    # stopped before anything started: no database, no key
    assert not data_dir.exists() or not any(data_dir.iterdir()), list(data_dir.iterdir())


@pytest.mark.parametrize("setting", sorted(CASES))
def test_a_typo_stops_the_service_at_start_naming_the_setting(setting: str, tmp_path: Path) -> None:
    config, expected = CASES[setting]
    config_file = tmp_path / "hubgate_config.py"
    config_file.write_text(config)
    returncode, output = run_service(["--config", str(config_file)], tmp_path)
    assert_refused_before_start(returncode, output, expected, tmp_path / "data")


def test_a_bad_key_in_the_environment_stops_the_service_naming_the_variable(
    tmp_path: Path,
) -> None:
    returncode, output = run_service([], tmp_path, HUBGATE_ENCRYPTION_KEYS="short;")
    expected = "$HUBGATE_ENCRYPTION_KEYS: key 1 of 1: An encryption key is not a valid"
    assert_refused_before_start(returncode, output, expected, tmp_path / "data")


def test_a_named_config_file_that_is_missing_stops_the_service(tmp_path: Path) -> None:
    returncode, output = run_service(["--config", "hubgate_confg.py"], tmp_path)
    expected = "HubgateService.config_file: 'hubgate_confg.py' is not a file"
    assert_refused_before_start(returncode, output, expected, tmp_path / "data")
