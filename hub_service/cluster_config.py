"""The resolved configuration of one cluster: what the options handler produced.

The handler (or, without one, the options themselves) returns a plain dict; this module
turns it into a typed object and says clearly what is wrong with it. Keys that are not
hubgate's own go to ``resources``, which the backend reads (partition, account, instance
type...), but only those the backend declares (``Backend.accepted_resources``): any other
key is an operator's typo (``max_worker``) and is refused, never silently passed on.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Collection
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..config_keys import unknown_keys_message

GIB = 2**30
_UNITS = {
    "": 1,
    "b": 1,
    "k": 2**10,
    "kb": 10**3,
    "kib": 2**10,
    "m": 2**20,
    "mb": 10**6,
    "mib": 2**20,
    "g": GIB,
    "gb": 10**9,
    "gib": GIB,
    "t": 2**40,
    "tb": 10**12,
    "tib": 2**40,
}


class ConfigError(ValueError):
    """The options handler produced something hubgate cannot run."""


class UnknownConfigKey(ConfigError):
    """A key that neither hubgate nor the backend knows: the operator's mistake (a typo
    in cluster_config, an options handler or a profile), never the user's."""

    def __init__(self, message: str, keys: list[str]) -> None:
        super().__init__(message)
        self.keys = keys


def parse_memory(value: Any, what: str) -> int:
    """Bytes from a number of bytes or a string with a unit (``"2G"``, ``"512 MiB"``), as
    in dask-gateway's ``ClusterConfig``."""
    if isinstance(value, bool):
        raise ConfigError(f"{what} must be a number of bytes or a size like '2G', got {value!r}")
    if isinstance(value, int | float):
        if value < 2**20:
            raise ConfigError(
                f"{what} is in bytes and must be at least 1 MiB, got {value!r} "
                "(write '2G' for 2 GiB)"
            )
        return int(value)
    if isinstance(value, str):
        m = re.fullmatch(r"\s*([0-9]*\.?[0-9]+)\s*([a-zA-Z]*)\s*", value)
        if m and m.group(2).lower() in _UNITS:
            size = int(float(m.group(1)) * _UNITS[m.group(2).lower()])
            if size > 0:
                return size
    raise ConfigError(f"{what} must be a number of bytes or a size like '2G', got {value!r}")


def _positive_number(value: Any, what: str) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise ConfigError(f"{what} must be a positive number, got {value!r}")
    return value


def _environment(value: dict[Any, Any]) -> dict[str, str]:
    env = {str(k): str(v) for k, v in value.items()}
    reserved = sorted(k for k in env if k.upper().startswith("HUBGATE_"))
    if reserved:
        raise ConfigError(
            f"environment may not set {', '.join(reserved)}: hubgate sets the HUBGATE_* "
            "variables itself; remove them from the environment option"
        )
    return env


@dataclass
class ClusterConfig:
    worker_cores: float = 1
    worker_memory: int = 2 * GIB
    scheduler_cores: float = 1
    scheduler_memory: int = 2 * GIB
    environment: dict[str, str] = field(default_factory=dict)
    # shell snippets run just before each worker / the scheduler starts
    worker_setup: str | None = None
    scheduler_setup: str | None = None
    # the interpreter to run (local and batch backends): a Python environment's python
    python: str | None = None
    image: str | None = None
    # seconds without tasks or requests before the cluster is stopped; 0 = never
    idle_timeout: float = 0
    max_workers: int | None = None
    max_cores: float | None = None
    max_memory: int | None = None
    resources: dict[str, Any] = field(default_factory=dict)

    @property
    def worker_threads(self) -> int:
        return max(1, int(self.worker_cores))

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, data: dict[str, Any]) -> ClusterConfig:
        return cls(**data)

    @classmethod
    def from_handler_output(
        cls,
        data: Any,
        base: ClusterConfig | None = None,
        *,
        accepted_resources: Collection[str],
        where: str = "the options handler's result",
    ) -> ClusterConfig:
        """Validate the dict an options handler returned, on top of ``base`` (the
        service's cluster_config, parsed once). Keys beyond hubgate's own must be in
        ``accepted_resources`` (the backend's), else :class:`UnknownConfigKey`."""
        if not isinstance(data, dict):
            raise ConfigError(f"{where} must be a mapping, got {type(data).__name__}")
        cfg = copy.deepcopy(base) if base is not None else cls()
        extra: dict[str, Any] = {}
        for key, value in data.items():
            if value is None:
                continue
            if key in ("worker_cores", "scheduler_cores"):
                setattr(cfg, key, _positive_number(value, key))
            elif key in ("worker_memory", "scheduler_memory"):
                setattr(cfg, key, parse_memory(value, key))
            elif key == "environment":
                if not isinstance(value, dict):
                    raise ConfigError(f"environment must be a mapping, got {type(value).__name__}")
                cfg.environment = _environment(value)
            elif key in ("worker_setup", "scheduler_setup", "python", "image"):
                if not isinstance(value, str):
                    raise ConfigError(f"{key} must be a string, got {value!r}")
                setattr(cfg, key, value or None)
            elif key == "idle_timeout":
                if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
                    raise ConfigError(f"idle_timeout must be seconds >= 0, got {value!r}")
                cfg.idle_timeout = float(value)
            elif key == "max_workers":
                if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                    raise ConfigError(f"max_workers must be an integer >= 0, got {value!r}")
                cfg.max_workers = value
            elif key == "max_cores":
                cfg.max_cores = _positive_number(value, key)
            elif key == "max_memory":
                cfg.max_memory = parse_memory(value, key)
            elif key == "resources":
                if not isinstance(value, dict):
                    raise ConfigError(
                        f"{where}: resources must be a mapping, got {type(value).__name__}"
                    )
                extra.update(value)
            else:
                extra[key] = value
        unknown = [key for key in extra if key not in accepted_resources]
        if unknown:
            valid = [*CONFIG_KEYS, "resources", *sorted(accepted_resources)]
            raise UnknownConfigKey(
                unknown_keys_message(where, unknown, valid), [str(k) for k in unknown]
            )
        cfg.resources = {**cfg.resources, **extra}
        return cfg


#: The keys of a cluster's configuration that hubgate itself reads (every backend).
CONFIG_KEYS = tuple(f.name for f in fields(ClusterConfig) if f.name != "resources")
