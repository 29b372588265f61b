"""hubgate's jupyter-server extension: the lab sidebar's only way to the hubgate service.

It forwards ``<base_url>/hubgate/<path>`` to the service's ``api/hubgate/<path>`` with the
single-user server's hub token, so the browser never holds a token.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from .handlers import setup_handlers

# Where the built JupyterLab extension lives in a source checkout (the wheel also installs
# it into share/jupyter/labextensions/hubgate-labextension).
LABEXTENSION_NAME = "hubgate-labextension"
_STATIC = Path(__file__).resolve().parent.parent.parent / "hubgate" / "labextension_static"


def _jupyter_labextension_paths() -> list[dict[str, str]]:
    return [{"src": str(_STATIC), "dest": LABEXTENSION_NAME}]


def _jupyter_server_extension_points() -> list[dict[str, str]]:
    return [{"module": "hubgate.labextension"}]


def _load_jupyter_server_extension(server_app: Any) -> None:
    setup_handlers(server_app)
    server_app.log.info("hubgate: sidebar API at %shubgate/", server_app.base_url)


# jupyter_server < 2 looked for this name.
load_jupyter_server_extension = _load_jupyter_server_extension
