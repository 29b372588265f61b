"""Without ipywidgets, ``hubgate.widgets`` still imports: its factories return None (the
client then shows its HTML repr) and the text and HTML fallbacks render.

The package is imported afresh while ``import ipywidgets`` fails, so a module that
imported ipywidgets at its top on this path would fail the import here."""

from __future__ import annotations

import importlib
import sys
from types import ModuleType

import pytest

import hubgate
import hubgate.widgets
from tests.widgets.test_widgets import RecordingCluster, RecordingGateway, make_options, record

PACKAGE = "hubgate.widgets"
WIDGET_MODULES = [f"{PACKAGE}.{name}" for name in ("cluster_view", "gateway_view", "options_form")]


def _modules(prefix: str) -> list[str]:
    return [name for name in sys.modules if name == prefix or name.startswith(prefix + ".")]


@pytest.fixture
def widgets_without_ipywidgets(monkeypatch: pytest.MonkeyPatch) -> ModuleType:
    """``hubgate.widgets`` imported anew as if ipywidgets were not installed; the
    modules as they were come back after the test."""
    # None in sys.modules makes `import ipywidgets` (and its submodules) raise ImportError.
    for name in {*_modules("ipywidgets"), "ipywidgets"}:
        monkeypatch.setitem(sys.modules, name, None)
    for name in _modules(PACKAGE):
        monkeypatch.delitem(sys.modules, name)
    monkeypatch.setattr(hubgate, "widgets", hubgate.widgets)  # restored after the test
    return importlib.import_module(PACKAGE)


def test_the_simulation_blocks_ipywidgets(widgets_without_ipywidgets: ModuleType) -> None:
    # The widget modules need ipywidgets, so importing one fails here.
    for name in WIDGET_MODULES:
        with pytest.raises(ImportError):
            importlib.import_module(name)


def test_factories_return_none(widgets_without_ipywidgets: ModuleType) -> None:
    widgets = widgets_without_ipywidgets
    assert widgets.cluster_widget(RecordingCluster()) is None
    assert widgets.gateway_widget(RecordingGateway([record("one")])) is None
    assert widgets.options_widget(make_options()) is None
    # Asked for a widget, nothing tried to import a widget module.
    assert not [name for name in WIDGET_MODULES if name in sys.modules]


def test_fallbacks_render(widgets_without_ipywidgets: ModuleType) -> None:
    widgets = widgets_without_ipywidgets
    options = make_options()
    assert "<th style='text-align:left'>Worker cores</th>" in widgets.options_html(options)
    assert "  Worker cores: 1  (Threads per worker.)" in widgets.options_text(options)

    state = widgets.ClusterState.from_report(record("<b>x</b>"))
    assert "&lt;b&gt;x&lt;/b&gt;" in widgets.cluster_html(state)
    assert widgets.cluster_text(state).startswith("Cluster <b>x</b>\n")
    assert widgets.read_state(RecordingCluster("abc")).status == "RUNNING"

    states = widgets.list_states(RecordingGateway([record("one"), record("two")]))
    assert [s.name for s in states] == ["one", "two"]
    assert "one" in widgets.gateway_html(states) and "two" in widgets.gateway_text(states)
