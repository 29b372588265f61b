"""Dask configuration for the client: the ``gateway.*`` keys that dask-gateway uses.

The defaults are merged with ``dask.config.update_defaults``, which never overrides a
value that is already set, so importing both hubgate and dask_gateway is harmless and
user configuration (YAML files, ``DASK_GATEWAY__*`` variables) always wins.
"""

from __future__ import annotations

import os
import pathlib
from typing import Any

import dask.config
import yaml

__all__ = ["config_value", "format_template", "load_defaults"]

_DEFAULTS_FILE = pathlib.Path(__file__).with_name("gateway.yaml")


def load_defaults() -> None:
    """Register hubgate's ``gateway.*`` defaults with dask's configuration."""
    defaults = yaml.safe_load(_DEFAULTS_FILE.read_text())
    dask.config.update_defaults(defaults)


def format_template(value: Any, key: str = "value") -> Any:
    """Fill ``{NAME}`` placeholders of a string from the environment.

    Anything that is not a string is returned unchanged. ``key`` names the setting in
    the error raised when a variable is not set.
    """
    if not isinstance(value, str):
        return value
    try:
        return value.format(**os.environ)
    except KeyError as exc:
        name = exc.args[0]
        raise ValueError(
            f"{key} refers to the environment variable {name}, which is not set; "
            f"set {name} or change {key} in your dask configuration"
        ) from None
    except (IndexError, ValueError) as exc:
        raise ValueError(
            f"{key} is not a valid template ({exc}); use {{NAME}} for an environment "
            "variable and double braces for literal ones"
        ) from None


def config_value(key: str) -> Any:
    """The dask config value at ``key``, templated from the environment."""
    return format_template(dask.config.get(key, None), key)


load_defaults()
