"""Browser tests of the lab extension against the real hub (tests/fixtures/hub.py).

The single-user servers the hub spawns must find the server extension
(``hubgate.labextension``) and the built lab extension. An installed wheel provides both;
in a source checkout whose editable install predates them, this file points the spawned
servers at the checkout through environment variables they inherit (set before the
session's hub starts), instead of changing the virtualenv.
"""

from __future__ import annotations

import os
import subprocess
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


def _importable_by_servers(module: str) -> bool:
    # Asked of a fresh interpreter: other test folders may have loaded it in this one.
    probe = subprocess.run([sys.executable, "-c", f"import {module}"], capture_output=True)
    return probe.returncode == 0


def _point_servers_at_the_checkout() -> None:
    # The hub passes PYTHONPATH to single-user servers (Spawner.env_keep) but not the
    # JUPYTER_* variables, so a sitecustomize module on PYTHONPATH sets those too.
    shim = Path(tempfile.mkdtemp(prefix="hubgate-lab-shim-"))
    lines = ["import importlib.util, os, sys"]
    if not _importable_by_servers("hubgate.labextension"):
        # A finder that maps the package to its folder when (and only when) imported.
        server = ROOT / "labextension" / "server"
        lines += [
            "class _HubgateLabFinder:",
            "    @staticmethod",
            "    def find_spec(name, path=None, target=None):",
            "        if name != 'hubgate.labextension':",
            "            return None",
            "        return importlib.util.spec_from_file_location(",
            f"            name, {str(server / '__init__.py')!r},",
            f"            submodule_search_locations=[{str(server)!r}])",
            "sys.meta_path.append(_HubgateLabFinder)",
        ]
    enable = Path(sys.prefix) / "etc" / "jupyter" / "jupyter_server_config.d" / "hubgate.json"
    if not enable.exists():
        lines.append(f"os.environ['JUPYTER_CONFIG_PATH'] = {str(ROOT / 'jupyter-config')!r}")
    installed = Path(sys.prefix) / "share" / "jupyter" / "labextensions" / LABEXTENSION
    if not installed.exists():
        (shim / "labextensions").mkdir()
        (shim / "labextensions" / LABEXTENSION).symlink_to(STATIC)
        lines.append(f"os.environ['JUPYTER_PATH'] = {str(shim)!r}")
    if len(lines) > 1:
        (shim / "sitecustomize.py").write_text("\n".join(lines) + "\n")
        _prepend("PYTHONPATH", str(shim))


_point_servers_at_the_checkout()


@pytest.fixture(scope="session", autouse=True)
def built_extension() -> None:
    if not (STATIC / "package.json").exists():
        pytest.fail(
            f"The lab extension is not built ({STATIC} is missing): run `jlpm install && jlpm build`",
            pytrace=False,
        )
