"""A batch job queued by an older hubgate runs ``python -m hubgate.cluster_process`` when
it starts, possibly after an upgrade: that command must still reach the runtime."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest


@pytest.mark.parametrize("module", ["hubgate.cluster_process", "hubgate.runtime.cluster_process"])
def test_the_old_and_new_commands_run_the_runtime(module: str, tmp_path: Path) -> None:
    exit_file = tmp_path / "exit"
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HUBGATE_EXIT_FILE": str(exit_file)}
    result = subprocess.run(
        [sys.executable, "-m", module, "scheduler"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    # The runtime's own answer: a usage error (no credentials folder), recorded in the
    # exit file as the backends expect.
    assert result.returncode == 2, result.stderr
    assert result.stderr.strip().splitlines()[-1] == (
        "hubgate: HUBGATE_CREDENTIALS_DIR is not set: the backend must set it for a scheduler"
    )
    assert '"exit_code": 2' in exit_file.read_text()
