"""Ready-made fields for operators (worker cores and memory, profiles, image,
environment, idle timeout, worker setup) and ``standard_handler``, which turns their
values into a flat cluster configuration."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from .field_types import Float, Integer, Mapping, Select, String
from .fields import Field, number_text

__all__ = [
    "GiB",
    "environment_variables_field",
    "idle_timeout_field",
    "image_field",
    "profile_field",
    "resources_per_worker_field",
    "standard_handler",
    "standard_handler_keys",
    "worker_cores_field",
    "worker_memory_field",
    "worker_setup_field",
]

GiB = 2**30


def worker_cores_field(
    default: int = 1, *, min: int = 1, max: int | None = 4, field: str = "worker_cores"
) -> Integer:
    """Threads (and CPU cores requested) per worker."""
    return Integer(
        field,
        default,
        min=min,
        max=max,
        label="Worker cores",
        help="CPU cores (threads) for each worker.",
    )


def worker_memory_field(
    default: float = 2, *, min: float = 0.5, max: float | None = 16, field: str = "worker_memory"
) -> Float:
    """Memory per worker, in GiB."""
    return Float(
        field,
        default,
        min=min,
        max=max,
        label="Worker memory (GiB)",
        help="Memory limit for each worker, in GiB. A worker that exceeds it is restarted.",
    )


# 2i2c's choices: whole fractions of a 16-CPU node, with memory in proportion.
DEFAULT_RESOURCES_PER_WORKER = (1, 2, 4, 8, 16)


def resources_per_worker_field(
    cpus: Sequence[int] = DEFAULT_RESOURCES_PER_WORKER,
    *,
    gib_per_cpu: float = 4,
    default: str | None = None,
    field: str = "resources_per_worker",
) -> Select:
    """Whole-CPU worker sizes with memory in proportion; the handler sees
    ``{"worker_cores": n, "worker_memory": bytes}``."""
    choices = []
    for n in cpus:
        memory = n * gib_per_cpu
        key = f"{n} CPU, {number_text(float(memory))} GiB"
        choices.append((key, {"worker_cores": n, "worker_memory": int(memory * GiB)}))
    return Select(
        field,
        default,
        options=choices,
        label="Resources per worker",
        help="CPU and memory for each worker; sizes fit the nodes without waste.",
    )


def profile_field(
    profiles: Sequence[str | tuple[str, Any]], *, default: str | None = None, field: str = "profile"
) -> Select:
    """A named profile; give ``(name, config_dict)`` pairs to map names to settings."""
    return Select(
        field,
        default,
        options=profiles,
        label="Profile",
        help="A preset chosen by your administrators (size, image, queue...).",
    )


def image_field(default: str = "", *, field: str = "image", label: str = "Image") -> String:
    """The container image or software environment workers run in."""
    return String(
        field,
        default,
        label=label,
        help="The software environment of the scheduler and workers. Its dask, "
        "distributed and Python versions should match your notebook's.",
    )


def environment_variables_field(
    default: dict[str, str] | None = None, *, field: str = "environment"
) -> Mapping:
    """Environment variables for the scheduler and workers (YAML in forms)."""
    return Mapping(
        field,
        default,
        label="Environment variables (YAML)",
        help="Set for the scheduler and every worker, one `NAME: value` per line.",
    )


def idle_timeout_field(
    default: int = 30, *, min: int = 0, max: int | None = None, field: str = "idle_timeout_minutes"
) -> Integer:
    """Minutes without work after which the cluster is shut down (0: never)."""
    return Integer(
        field,
        default,
        min=min,
        max=max,
        label="Idle cluster terminated after (minutes)",
        help="The cluster shuts down after this many minutes with no tasks. 0 keeps it.",
    )


def worker_setup_field(default: str = "", *, field: str = "worker_setup") -> String:
    """Shell commands run before each worker starts (e.g. activating an environment)."""
    return String(
        field,
        default,
        label="Worker setup",
        help="Shell commands run before each worker starts, e.g. `source activate myenv`.",
    )


def standard_handler_keys(fields: Sequence[Field]) -> set[str]:
    """The keys ``standard_handler`` can return for these fields (mirrors it)."""
    keys: set[str] = set()
    for f in fields:
        if f.target in _MERGED_OPTIONS and isinstance(f, Select):
            for value in f.choices.values():
                keys.update(value if isinstance(value, dict) else [f.target])
        else:
            keys.add(_RENAMED_OPTIONS.get(f.target, f.target))
    return keys


# standard_handler merges these options' dict values into the config...
_MERGED_OPTIONS = ("resources_per_worker", "profile")
# ...and renames this one (minutes become seconds).
_RENAMED_OPTIONS = {"idle_timeout_minutes": "idle_timeout"}


def standard_handler(options: dict[str, Any]) -> dict[str, Any]:
    """Turn the ready-made fields' values into a flat cluster config.

    ``worker_memory`` (GiB) becomes bytes, ``idle_timeout_minutes`` becomes
    ``idle_timeout`` seconds, a ``resources_per_worker`` or ``profile`` whose value is
    a dict is merged in; every other option passes through under its own name.
    """
    config: dict[str, Any] = {}
    for key, value in options.items():
        if key in _MERGED_OPTIONS and isinstance(value, dict):
            config.update(value)
        elif key == "worker_memory":
            config["worker_memory"] = int(value * GiB)
        elif key == "idle_timeout_minutes":
            config["idle_timeout"] = int(value) * 60
        else:
            config[key] = value
    return config
