"""Clusters as batch jobs, one module per batch system.

``base.py`` holds what they share (submit, poll, cancel, state, staging, running
commands), ``script.py`` the job request and the job script's body, ``parsing.py`` what
every parser returns; ``slurm.py``, ``pbs.py``, ``sge.py``, ``lsf.py`` and
``htcondor.py`` each own their submit file, commands and output parsers. A new system is
one more such module and an entry point in ``pyproject.toml``.

The backends are loaded on first use: ``python -m hubgate.spawners.batch.staging``, which
runs once per job as the job's user, imports this package and must stay cheap.
"""

from __future__ import annotations

import importlib
from typing import Any

_LAZY = {
    "BatchBackend": "base",
    "QueueBackend": "base",
    "Submission": "base",
    "SystemAccount": "base",
    "SlurmBackend": "slurm",
    "PBSBackend": "pbs",
    "SGEBackend": "sge",
    "LSFBackend": "lsf",
    "HTCondorBackend": "htcondor",
}

__all__ = list(_LAZY)


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(f".{module}", __name__), name)
