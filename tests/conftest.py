"""Shared pytest set-up: the fixtures in ``tests/fixtures/`` are plugins, so every test
folder can use them without importing anything.

- ``tests.fixtures.postgres``: ``postgres_url`` (a real PostgreSQL server for the session)
  and ``postgres_db_url`` (a fresh empty database per test).
- ``tests.fixtures.browser``: ``browser`` (Debian's Chromium through playwright),
  ``new_page``/``page`` (a fresh browser context per page) and ``hub_login()``.
- ``tests.fixtures.hub`` (when present): the real JupyterHub.
- ``tests.fixtures.previous_release``: ``previous_release``, the release before schema
  migrations (a ``git archive`` of it) to run from this virtualenv with ``PYTHONPATH``.
- ``tests.fixtures.leaks``: fails a test that leaves a thread (an unclosed Gateway, cluster
  or Client), a child process or an unclosed resource behind.
"""

from __future__ import annotations

from pathlib import Path

_FIXTURES = Path(__file__).parent / "fixtures"

pytest_plugins = [
    "tests.fixtures.leaks",
    "tests.fixtures.postgres",
    "tests.fixtures.browser",
    "tests.fixtures.previous_release",
]
# The hub fixture is added by dropping tests/fixtures/hub.py in place.
if (_FIXTURES / "hub.py").exists():
    pytest_plugins.append("tests.fixtures.hub")
