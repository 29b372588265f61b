"""What a scheduler skips at start-up so that a host can start many clusters quickly."""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

bokeh_tornado = pytest.importorskip("bokeh.server.tornado")

from hubgate.runtime.cluster_process import skip_bokeh_route_listing  # noqa: E402


@pytest.fixture
def bokeh_module() -> Iterator[None]:
    original, level = bokeh_tornado.pformat, bokeh_tornado.log.level
    yield
    bokeh_tornado.pformat = original
    bokeh_tornado.log.setLevel(level)


def _formats_routes() -> bool:
    return bokeh_tornado.pformat([("/status", object)]) != ""


def test_route_table_is_not_formatted_for_a_log_nobody_reads(bokeh_module: None) -> None:
    bokeh_tornado.log.setLevel(logging.INFO)
    assert _formats_routes()
    assert skip_bokeh_route_listing()
    assert not _formats_routes()


def test_route_table_is_formatted_when_debug_logging_is_on(bokeh_module: None) -> None:
    bokeh_tornado.log.setLevel(logging.DEBUG)
    assert not skip_bokeh_route_listing()
    assert _formats_routes()
