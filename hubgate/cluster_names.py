"""Display names of clusters: the rule, shared by the service and the client.

A cluster's ``name`` on the wire is its id (32 hex digits, what dask-gateway's client
expects); its display name is what people read and type: 1-30 characters of lowercase
letters, digits and ``-``, starting with a letter and not ending with ``-``. At most 30
characters, so a display name is never mistaken for an id.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = [
    "DISPLAY_NAME_OPTION",
    "DISPLAY_NAME_RULE",
    "MAX_DISPLAY_NAME",
    "check_display_name",
    "is_cluster_id",
]

MAX_DISPLAY_NAME = 30
# The key under which dask-gateway's v1 API shows the display name among a cluster's
# options (and a v1 create may set it); OptionSet refuses a field of this name.
DISPLAY_NAME_OPTION = "hubgate:display_name"
DISPLAY_NAME_RULE = (
    f"use 1-{MAX_DISPLAY_NAME} characters of lowercase letters, digits and '-', "
    "starting with a letter and not ending with '-'"
)
_VALID = re.compile(rf"[a-z](?:[a-z0-9-]{{0,{MAX_DISPLAY_NAME - 2}}}[a-z0-9])?")
_CLUSTER_ID = re.compile(r"[0-9a-f]{32}")


def is_cluster_id(text: str) -> bool:
    """Whether ``text`` has the shape of a cluster id (the service's uuid4 hex)."""
    return _CLUSTER_ID.fullmatch(text) is not None


def _suggestion(text: str) -> str:
    """A valid name close to ``text`` ("My Analysis" -> "my-analysis"), else an example."""
    slug = re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")
    slug = slug[:MAX_DISPLAY_NAME].rstrip("-")
    return slug if _VALID.fullmatch(slug) else "my-analysis"


def check_display_name(value: Any) -> str | None:
    """``value`` if it is an acceptable display name; None for "none given" (None or
    ""); ``ValueError`` whose text says what to type otherwise."""
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        kind = "a number" if isinstance(value, int | float) else f"a {type(value).__name__}"
        if isinstance(value, bool):
            kind = "a boolean"
        raise ValueError(f"display_name must be a string like 'my-analysis', got {kind}")
    if _VALID.fullmatch(value) is None:
        shown = value if len(value) <= 60 else value[:57] + "..."
        raise ValueError(
            f"display_name {shown!r} is not allowed: {DISPLAY_NAME_RULE} "
            f"(for example {_suggestion(value)!r})"
        )
    return value
