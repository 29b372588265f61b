"""Browser tests of the lab extension against the real hub (tests/fixtures/hub.py).

The single-user servers the hub spawns must find the server extension
(``hubgate.labextension``) and the built lab extension. An installed wheel provides both;
in a source checkout whose editable install predates them, this file points the spawned
servers at the checkout through environment variables they inherit (set before the
session's hub starts), instead of changing the virtualenv.
"""

from __future__ import annotations

import importlib.util
import os
import sys
import tempfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
STATIC = ROOT / "hubgate" / "labextension_static"
LABEXTENSION = "hubgate-labextension"


def _prepend(name: str, value: str) -> None:
    current = os.environ.get(name)
    os.environ[name] = value if not current else f"{value}{os.pathsep}{current}"


def _point_servers_at_the_checkout() -> None:
    shim = Path(tempfile.mkdtemp(prefix="hubgate-lab-shim-"))
    if importlib.util.find_spec("hubgate.labextension") is None:
        # sitecustomize runs at every interpreter start: map the package to its folder.
        # sitecustomize runs at every interpreter start: a finder that maps the package
        # to its folder when (and only when) something imports it.
        server = ROOT / "labextension" / "server"
        (shim / "sitecustomize.py").write_text(
            "import importlib.util, sys\n"
            "class _HubgateLabFinder:\n"
            "    @staticmethod\n"
            "    def find_spec(name, path=None, target=None):\n"
            "        if name != 'hubgate.labextension':\n"
            "            return None\n"
            "        return importlib.util.spec_from_file_location(\n"
            f"            name, {str(server / '__init__.py')!r},\n"
            f"            submodule_search_locations=[{str(server)!r}])\n"
            "sys.meta_path.append(_HubgateLabFinder)\n"
        )
        _prepend("PYTHONPATH", str(shim))
    enable = Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d" / "hubgate.json"
    if not enable.exists():
        _prepend("JUPYTER_CONFIG_PATH", str(ROOT / "jupyter-config"))
    installed = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / LABEXTENSION
    if not installed.exists():
        (shim / "labextensions").mkdir()
        (shim / "labextensions" / LABEXTENSION).symlink_to(STATIC)
        _prepend("JUPYTER_PATH", str(shim))


_point_servers_at_the_checkout()


@pytest.fixture(scope="session", autouse=True)
def built_extension() -> None:
    if not (STATIC / "package.json").exists():
        pytest.fail(
            f"The lab extension is not built ({STATIC} is missing): run `jlpm install && jlpm build`",
            pytrace=False,
        )
