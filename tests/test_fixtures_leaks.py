"""The leak check (tests/fixtures/leaks.py) fails the test that leaks, and only that one.

The checked tests run in a pytest of their own, with the plugin and the suite's warning
filters, so that their failures are what is asserted here.
"""

from __future__ import annotations

import re
import subprocess
import sys
import textwrap
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHECKED = """
import subprocess
import threading

import pytest
from dask_gateway import Gateway as OfficialGateway
from distributed import Client

import hubgate

KEPT = []


def test_closed_official_gateway_is_fine():
    gateway = OfficialGateway("http://127.0.0.1:9")
    gateway.close()


def test_unclosed_official_gateway():
    KEPT.append(OfficialGateway("http://127.0.0.1:9"))


def test_the_next_test_is_not_blamed():
    KEPT.pop().close()


def test_unclosed_hubgate_gateway():
    KEPT.append(hubgate.Gateway("http://127.0.0.1:9"))


def test_closing_it_later_is_fine():
    KEPT.pop().close()


def test_non_daemon_thread():
    stop = threading.Event()
    KEPT.append(stop)
    threading.Thread(target=stop.wait, name="forgotten").start()


def test_stopping_it_later_is_fine():
    KEPT.pop().set()


def test_child_never_waited_for():
    proc = subprocess.Popen(["sleep", "30"])
    KEPT.append(proc)


def test_reaping_it_later_is_fine():
    proc = KEPT.pop()
    proc.kill()
    proc.wait()


def test_popen_dropped_while_running():
    subprocess.Popen(["true"])


async def test_async_client_not_closed():
    client = Client(asynchronous=True, processes=False, dashboard_address=":0")
    KEPT.append(await client)


async def test_closing_the_async_client_later_is_fine():
    client = KEPT.pop()
    cluster = client.cluster
    await client.close()
    await cluster.close()


@pytest.fixture(scope="module")
def module_thread():
    stop = threading.Event()
    thread = threading.Thread(target=stop.wait, name="module-owned")
    thread.start()
    yield thread
    stop.set()
    thread.join()


def test_uses_a_module_fixture_thread(module_thread):
    assert module_thread.is_alive()


def test_uses_it_again(module_thread):
    assert module_thread.is_alive()
"""

# In a module of its own: a module fixture is torn down after its module's last test.
LEAKY_MODULE_FIXTURE = """
import threading

import pytest


@pytest.fixture(scope="module")
def leaky_module_fixture():
    stop = threading.Event()  # never set: the thread ends on its own, after the run
    threading.Thread(target=stop.wait, args=(60,), name="outlives-its-fixture", daemon=True).start()
    yield


def test_first_user_of_a_leaky_module_fixture(leaky_module_fixture):
    pass


def test_last_user_of_a_leaky_module_fixture(leaky_module_fixture):
    pass
"""

EXPECTED = {
    "test_closed_official_gateway_is_fine": "PASSED",
    "test_unclosed_official_gateway": "ERROR, PASSED",
    "test_the_next_test_is_not_blamed": "PASSED",
    "test_unclosed_hubgate_gateway": "ERROR, PASSED",
    "test_closing_it_later_is_fine": "PASSED",
    "test_non_daemon_thread": "ERROR, PASSED",
    "test_stopping_it_later_is_fine": "PASSED",
    "test_child_never_waited_for": "ERROR, PASSED",
    "test_reaping_it_later_is_fine": "PASSED",
    "test_popen_dropped_while_running": "ERROR, FAILED",
    "test_async_client_not_closed": "ERROR, PASSED",
    "test_closing_the_async_client_later_is_fine": "PASSED",
    "test_uses_a_module_fixture_thread": "PASSED",
    "test_uses_it_again": "PASSED",
    "test_first_user_of_a_leaky_module_fixture": "PASSED",
    "test_last_user_of_a_leaky_module_fixture": "ERROR, PASSED",
}


def test_the_leaking_test_fails_and_no_other(tmp_path: Path) -> None:
    (tmp_path / "test_checked.py").write_text(CHECKED)
    (tmp_path / "test_checked_fixture.py").write_text(LEAKY_MODULE_FIXTURE)
    proc = subprocess.run(
        [
            *(sys.executable, "-m", "pytest", "-q", "-rA", "-p", "no:cacheprovider"),
            *("-p", "tests.fixtures.leaks", "--rootdir", str(tmp_path), "-c", "/dev/null"),
            *("-o", "asyncio_mode=auto", "-o", "asyncio_default_fixture_loop_scope=session"),
            *("-o", "asyncio_default_test_loop_scope=session"),
            *("-W", "error::pytest.PytestUnraisableExceptionWarning"),
            *("-W", "error::ResourceWarning"),
            *("test_checked.py", "test_checked_fixture.py"),
        ],
        cwd=tmp_path,
        # each leaked thread waits out the grace period; 2 s is enough for the threads
        # of the tests that close things late
        env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin", "HUBGATE_LEAK_CHECK_GRACE": "2"},
        capture_output=True,
        text=True,
        timeout=240,
    )
    outcomes: dict[str, set[str]] = {}
    for outcome, name in re.findall(
        r"^(PASSED|FAILED|ERROR) test_checked\w*\.py::(\w+)", proc.stdout, re.M
    ):
        outcomes.setdefault(name, set()).add(outcome)
    # A test whose call passed (or failed) and whose teardown found a leak is listed twice.
    seen = {name: ", ".join(sorted(found)) for name, found in outcomes.items()}
    assert seen == EXPECTED, textwrap.shorten(proc.stdout, 20000)
    report = proc.stdout
    assert "the event loop of: dask_gateway.client.Gateway" in report
    assert "the event loop of: hubgate.client.gateway.Gateway" in report
    assert "thread 'forgotten' (daemon=False" in report
    assert "still running): sleep 30" in report
    assert "made by fixture 'leaky_module_fixture'" in report
