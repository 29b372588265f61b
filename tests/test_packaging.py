"""The distribution: a wheel of ``hubgate.*`` import packages only, and documented config.

The wheel is built for real (``pip wheel``, no build isolation: the test extra brings
setuptools) from a copy of the source tree, so the build leaves nothing in the checkout.
"""

from __future__ import annotations

import ast
import importlib
import importlib.util
import inspect
import os
import pkgutil
import re
import shutil
import subprocess
import sys
import tomllib
import zipfile
from pathlib import Path

import pytest
from traitlets.config import Configurable
from traitlets.config.loader import PyFileConfigLoader

ROOT = Path(__file__).resolve().parents[1]
NAMESPACED_PACKAGES = [
    "hubgate.hub_service",
    "hubgate.spawners",
    "hubgate.widgets",
    "hubgate.config",
]
# Not worth copying into the build folder; none of it belongs in the wheel.
_COPY_IGNORE = shutil.ignore_patterns(
    ".git",
    ".venv",
    "node_modules",
    "build",
    "dist",
    "*.egg-info",
    "__pycache__",
    ".work",
    ".ruff_cache",
    ".pytest_cache",
    ".yarn",
)


@pytest.fixture(scope="module")
def wheel_path(tmp_path_factory: pytest.TempPathFactory) -> Path:
    work = tmp_path_factory.mktemp("wheel")
    source = work / "src"
    shutil.copytree(ROOT, source, ignore=_COPY_IGNORE, symlinks=True)
    out = work / "out"
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--no-deps",
            "--no-build-isolation",
            "--wheel-dir",
            str(out),
            str(source),
        ],
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
    )
    assert result.returncode == 0, f"pip wheel failed:\n{result.stdout}\n{result.stderr}"
    wheels = list(out.glob("hubgate-*.whl"))
    assert len(wheels) == 1, f"expected one hubgate wheel, got {wheels}"
    return wheels[0]


@pytest.fixture(scope="module")
def wheel_names(wheel_path: Path) -> list[str]:
    with zipfile.ZipFile(wheel_path) as archive:
        return archive.namelist()


def test_pip_install_of_the_wheel_enables_the_lab_extension(
    wheel_path: Path, tmp_path: Path
) -> None:
    """The prebuilt lab extension and the server extension's enable file are data files
    of the wheel: installed under a prefix, JupyterLab lists both as enabled."""
    prefix = tmp_path / "prefix"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "install",
            "--no-deps",
            # never uninstall the hubgate of the running environment
            "--ignore-installed",
            "--prefix",
            str(prefix),
            str(wheel_path),
        ],
        check=True,
        capture_output=True,
        timeout=300,
    )
    env = dict(
        os.environ,
        JUPYTER_PATH=str(prefix / "share" / "jupyter"),
        JUPYTER_CONFIG_PATH=str(prefix / "etc" / "jupyter"),
    )
    jupyter = str(Path(sys.executable).parent / "jupyter")
    labext = subprocess.run(
        [jupyter, "labextension", "list"], env=env, capture_output=True, text=True, timeout=120
    )
    listing = labext.stdout + labext.stderr
    assert re.search(rf"hubgate-labextension.*enabled.*{re.escape('OK')}", listing), listing
    assert str(prefix) in listing, listing
    server = subprocess.run(
        [jupyter, "server", "extension", "list"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert re.search(r"hubgate\.labextension.*enabled", server.stdout + server.stderr)


def test_wheel_holds_the_schema_migrations(wheel_names: list[str]) -> None:
    """alembic reads the migrations as files, not as an imported package: each one must
    be package data of the wheel, or an installed service cannot create or upgrade its
    database."""
    source = ROOT / "hub_service" / "migrations"
    expected = {
        f"hubgate/hub_service/migrations/{path.relative_to(source).as_posix()}"
        for path in source.rglob("*.py")
    }
    assert "hubgate/hub_service/migrations/env.py" in expected
    assert len(expected) >= 3  # env.py, the baseline and at least one revision
    missing = sorted(expected - set(wheel_names))
    assert not missing, f"migrations missing from the wheel: {missing}"


def test_wheel_holds_only_hubgate_packages(wheel_names: list[str]) -> None:
    tops = {name.split("/", 1)[0] for name in wheel_names}
    metadata = {t for t in tops if t.startswith("hubgate-") and t.endswith((".dist-info", ".data"))}
    assert tops - metadata == {"hubgate"}, f"unexpected top-level entries: {tops - metadata}"

    packages = {
        name.rsplit("/", 1)[0].replace("/", ".")
        for name in wheel_names
        if name.endswith("/__init__.py")
    }
    for package in ["hubgate", *NAMESPACED_PACKAGES]:
        assert package in packages, f"{package} is missing from the wheel"
    # ``hubgate/config.py`` beside ``hubgate/config/`` would make one of them unimportable.
    modules = {
        name[: -len(".py")].replace("/", ".") for name in wheel_names if name.endswith(".py")
    }
    clashes = sorted(packages & modules)
    assert not clashes, f"modules with the same name as a package: {clashes}"
    stray = sorted(p for p in packages if p != "hubgate" and not p.startswith("hubgate."))
    assert not stray, f"generic top-level packages in the wheel: {stray}"
    # The root folders are mapped into the namespace, not copied beside it.
    assert "hubgate/spawners/base.py" in wheel_names


def _hubgate_modules() -> tuple[list[str], dict[str, str]]:
    """Every module of the packages pyproject.toml declares: (imported, {failed: reason})."""
    declared = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"][
        "packages"
    ]
    names: set[str] = set()
    failed: dict[str, str] = {}
    for package_name in declared:
        try:
            package = importlib.import_module(package_name)
        except Exception as exc:
            failed[package_name] = f"{type(exc).__name__}: {exc}"
            continue
        names.add(package_name)
        if not hasattr(package, "__path__"):
            failed[package_name] = f"is the module {package.__file__}, not the declared package"
            continue
        for info in pkgutil.walk_packages(
            package.__path__,
            prefix=f"{package_name}.",
            onerror=lambda name: failed.setdefault(name, "its package does not import"),
        ):
            names.add(info.name)
    imported = []
    for name in sorted(names):
        if name.rsplit(".", 1)[-1] == "__main__":  # importing it would run the program
            continue
        config_file = _config_file(name)
        if config_file is not None:
            _load_config_file(config_file, failed, name)
            continue
        try:
            importlib.import_module(name)
        except BaseException as exc:  # SystemExit from a script-like module counts too
            failed[name] = f"{type(exc).__name__}: {exc}"
        else:
            imported.append(name)
    return imported, failed


def _config_file(name: str) -> Path | None:
    """The file of ``name`` if it is a traitlets config file (it calls ``get_config()``,
    which only exists while traitlets executes the file), else None."""
    spec = importlib.util.find_spec(name)
    if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
        return None
    path = Path(spec.origin)
    calls = (
        node.value.func.id
        for node in ast.parse(path.read_text()).body
        if isinstance(node, ast.Assign)
        and isinstance(node.value, ast.Call)
        and isinstance(node.value.func, ast.Name)
    )
    return path if "get_config" in calls else None


def _load_config_file(path: Path, failed: dict[str, str], name: str) -> None:
    """Load a config file the way jupyterhub and ``hubgate service`` do (it defines no
    classes to check, but it must load)."""
    try:
        PyFileConfigLoader(path.name, path=str(path.parent)).load_config()
    except BaseException as exc:
        failed[name] = f"{type(exc).__name__} while loading it as a config file: {exc}"


def test_every_config_trait_has_help() -> None:
    imported, failed = _hubgate_modules()
    assert not failed, "hubgate modules that do not import (or config files that do not " + (
        "load): " + "; ".join(f"{name} ({reason})" for name, reason in sorted(failed.items()))
    )
    checked: list[str] = []
    missing: list[str] = []
    for name in imported:
        module = sys.modules[name]
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if cls.__module__ != name or not issubclass(cls, Configurable):
                continue
            checked.append(f"{name}.{cls.__name__}")
            for trait_name, trait in cls.class_own_traits(config=True).items():
                if not (trait.help or "").strip():
                    missing.append(f"{name}.{cls.__name__}.{trait_name}")
    assert checked, "found no Configurable classes in hubgate: the module walk is broken"
    assert not missing, "config traits without help=: " + ", ".join(missing)
