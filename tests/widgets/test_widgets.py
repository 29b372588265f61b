"""The widgets' logic, driven through ipywidgets in Python (no browser)."""

from __future__ import annotations

import time
from typing import Any

import pytest

from hubgate.options import (
    Bool,
    Float,
    Integer,
    Mapping,
    Options,
    Select,
    String,
    environment_variables_field,
    idle_timeout_field,
    resources_per_worker_field,
)
from hubgate.widgets import (
    ClusterState,
    cluster_html,
    cluster_text,
    cluster_widget,
    gateway_widget,
    options_html,
    options_widget,
)


def make_options() -> Options:
    return Options(
        Integer("worker_cores", 1, min=1, max=4, label="Worker cores", help="Threads per worker."),
        Float("worker_memory", 2.0, min=0.5, max=16, label="Worker memory (GiB)"),
        String("image", "python:3.11", label="Image"),
        Bool("debug", False, label="Debug"),
        resources_per_worker_field(),
        environment_variables_field({"A": "1"}),
        idle_timeout_field(),
    )


def wait_for(condition: Any, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError("condition not met in time")
        time.sleep(0.05)


# -- options form ------------------------------------------------------------------------


def test_form_has_one_input_per_field_of_the_right_kind() -> None:
    import ipywidgets as ipw

    form = options_widget(make_options())
    kinds = {name: type(w) for name, w in form.inputs.items()}
    assert kinds == {
        "worker_cores": ipw.Text,
        "worker_memory": ipw.Text,
        "image": ipw.Text,
        "debug": ipw.Checkbox,
        "resources_per_worker": ipw.Dropdown,
        "environment": ipw.Textarea,
        "idle_timeout_minutes": ipw.Text,
    }
    assert form.inputs["worker_cores"].value == "1"
    assert form.inputs["environment"].value == "A: '1'\n"
    assert list(form.inputs["resources_per_worker"].options)[0] == "1 CPU, 4 GiB"


def test_out_of_bounds_number_is_rejected_inline_and_not_stored() -> None:
    options = make_options()
    form = options_widget(options)
    form.inputs["worker_cores"].value = "10"
    assert form.errors == {"worker_cores": "worker_cores must be at most 4, got 10"}
    assert "must be at most 4" in form.messages["worker_cores"].value
    assert options.worker_cores == 1
    assert not form.valid

    form.inputs["worker_cores"].value = "3"
    assert form.errors == {}
    assert form.messages["worker_cores"].value == ""
    assert options.worker_cores == 3


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("worker_cores", "2.5", "worker_cores must be an integer, got 2.5"),
        ("worker_cores", "two", "worker_cores must be an integer, got 'two'"),
        ("worker_cores", "", "worker_cores needs a number"),
        ("worker_memory", "0.1", "worker_memory must be at least 0.5, got 0.1"),
        ("worker_memory", "lots", "worker_memory must be a number, got 'lots'"),
    ],
)
def test_number_messages_come_from_the_shared_field(name: str, text: str, message: str) -> None:
    form = options_widget(make_options())
    form.inputs[name].value = text
    assert form.errors[name] == message


def test_float_accepts_integer_text() -> None:
    options = make_options()
    form = options_widget(options)
    form.inputs["worker_memory"].value = "4"
    assert form.valid
    assert options.worker_memory == 4.0


def test_mapping_yaml_is_parsed_and_bad_yaml_explained() -> None:
    options = make_options()
    form = options_widget(options)
    form.inputs["environment"].value = "FOO: bar\nN: 3"
    assert form.valid
    assert options.environment == {"FOO": "bar", "N": 3}

    form.inputs["environment"].value = "FOO: [unclosed"
    assert "environment is not valid YAML" in form.errors["environment"]
    assert options.environment == {"FOO": "bar", "N": 3}

    form.inputs["environment"].value = "- a list"
    assert form.errors["environment"] == (
        "environment must be a mapping of names to values, got a list"
    )

    form.inputs["environment"].value = ""
    assert form.valid
    assert options.environment == {}


def test_select_string_and_bool_write_through() -> None:
    options = make_options()
    form = options_widget(options)
    form.inputs["resources_per_worker"].value = "4 CPU, 16 GiB"
    form.inputs["image"].value = "ghcr.io/me/image:1"
    form.inputs["debug"].value = True
    assert form.valid
    assert options.resources_per_worker == "4 CPU, 16 GiB"
    assert options.image == "ghcr.io/me/image:1"
    assert options.debug is True


def test_values_set_in_code_show_in_the_form() -> None:
    options = make_options()
    form = options_widget(options)
    options.worker_cores = 2
    options.environment = {"X": "y"}
    assert form.inputs["worker_cores"].value == "2"
    assert form.inputs["environment"].value == "X: y\n"
    assert form.valid


def test_form_falls_back_to_escaped_html_and_text() -> None:
    options = Options(
        String("image", "<script>alert(1)</script>", label="Image <b>", help="a & b"),
        Mapping("env", {}),
    )
    form = options_widget(options)
    bundle = form._repr_mimebundle_()
    assert "<script>" not in bundle["text/html"]
    assert "&lt;script&gt;" in bundle["text/html"]
    assert "Image &lt;b&gt;" in bundle["text/html"]
    assert "a &amp; b" in bundle["text/html"]
    assert "Image <b>: '<script>alert(1)</script>'" in bundle["text/plain"]
    assert options_html(options) == bundle["text/html"]


def test_select_field_label_and_help_are_escaped_in_the_widget() -> None:
    options = Options(
        Select("profile", options=["small", "large"], label="<i>Profile</i>", help="<b>x</b>")
    )
    form = options_widget(options)
    html_parts = [
        w.value
        for box in form.children[1:]
        for w in _walk(box)
        if hasattr(w, "value") and isinstance(w.value, str)
    ]
    assert any("&lt;i&gt;Profile&lt;/i&gt;" in v for v in html_parts)
    assert any("&lt;b&gt;x&lt;/b&gt;" in v for v in html_parts)


def _walk(widget: Any) -> list[Any]:
    out = [widget]
    for child in getattr(widget, "children", ()):
        out += _walk(child)
    return out


# -- cluster widget --------------------------------------------------------------------


def record(name: str = "abc", status: str = "RUNNING", **extra: Any) -> dict[str, Any]:
    base = {
        "name": name,
        "owner": "alice",
        "status": status,
        "reason": None,
        "workers": {"requested": 2, "running": 2, "pending": 0},
        "adaptive": {"active": False, "minimum": None, "maximum": None},
        "threads": 4,
        "memory": 4 * 2**30,
        "cores": 4,
        "dashboard_url": f"/services/dask-gateway/clusters/{name}/status",
        "events": [],
    }
    base.update(extra)
    return base


class RecordingCluster:
    """A cluster-like object that records calls and reports a settable record."""

    def __init__(self, name: str = "abc", **record_extra: Any) -> None:
        self.name = name
        self.calls: list[tuple[Any, ...]] = []
        self.record = record(name, **record_extra)
        self.fail_with: Exception | None = None

    def report(self) -> dict[str, Any]:
        self.calls.append(("report",))
        return self.record

    def scale(self, n: int) -> None:
        if self.fail_with:
            raise self.fail_with
        self.calls.append(("scale", n))

    def adapt(self, minimum: int | None = None, maximum: int | None = None) -> None:
        self.calls.append(("adapt", minimum, maximum))

    def shutdown(self) -> None:
        self.calls.append(("shutdown",))
        self.record = record(self.name, status="STOPPED")


def test_cluster_widget_shows_counts_and_scales() -> None:
    cluster = RecordingCluster()
    widget = cluster_widget(cluster, refresh_interval=None)
    try:
        assert "RUNNING" in widget.summary.value
        assert "4.00 GiB" in widget.summary.value
        assert "/services/dask-gateway/clusters/abc/status" in widget.dashboard.value
        widget.workers.value = 3
        widget.scale_button.click()
        assert ("scale", 3) in cluster.calls
        widget.minimum.value, widget.maximum.value = 1, 5
        widget.adapt_button.click()
        assert ("adapt", 1, 5) in cluster.calls
        assert widget.message.value == ""
    finally:
        widget.close()


def test_button_errors_are_logged_and_shown(caplog: pytest.LogCaptureFixture) -> None:
    cluster = RecordingCluster()
    cluster.fail_with = RuntimeError("cluster abc is not running")
    widget = cluster_widget(cluster, refresh_interval=None)
    try:
        widget.workers.value = 2
        widget.scale_button.click()
        assert "Scale failed: cluster abc is not running" in widget.message.value
        assert "Scale failed" in caplog.text

        widget.minimum.value, widget.maximum.value = 5, 1
        widget.adapt_button.click()
        assert "Adapt failed: enter 0 &lt;= minimum &lt;= maximum" in widget.message.value
        assert not any(c[0] == "adapt" for c in cluster.calls)
    finally:
        widget.close()


def test_failed_cluster_shows_its_reason_escaped_and_disables_controls() -> None:
    cluster = RecordingCluster(status="FAILED", reason="worker <exited> with code 1")
    widget = cluster_widget(cluster, refresh_interval=0.05)
    try:
        assert "worker &lt;exited&gt; with code 1" in widget.failure.value
        assert widget.scale_button.disabled and widget.shutdown_button.disabled
        widget.set_state({"_view_count": 1})  # displayed
        assert not widget.refreshing  # no refreshing of a final state
        assert "Failed: worker <exited> with code 1" in cluster_text(widget.state)
    finally:
        widget.close()


def test_pending_cluster_shows_progress_until_running() -> None:
    cluster = RecordingCluster(
        status="PENDING", workers={"requested": 2, "running": 0, "pending": 2}
    )
    widget = cluster_widget(cluster, refresh_interval=None)
    try:
        assert widget.progress.layout.display == ""
        assert widget.progress.description == "Starting"
        cluster.record = record("abc")
        widget.refresh()
        assert widget.state.status == "RUNNING"
        assert widget.progress.layout.display == "none"
    finally:
        widget.close()


def test_shutdown_shows_the_stopped_cluster() -> None:
    # An object without an event loop is read when the widget acts (test_refresh.py
    # covers the refresh loop of gateway and distributed clusters).
    cluster = RecordingCluster()
    widget = cluster_widget(cluster)
    try:
        widget.shutdown_button.click()
        assert ("shutdown",) in cluster.calls
        assert widget.state.status == "STOPPED"
        assert widget.scale_button.disabled and widget.shutdown_button.disabled
    finally:
        widget.close()


def test_cluster_fallback_html_is_escaped() -> None:
    state = ClusterState.from_report(record("<b>x</b>", dashboard_url="/x?a=1&b='2'"))
    out = cluster_html(state)
    assert "<b>x</b>" not in out and "&lt;b&gt;x&lt;/b&gt;" in out
    assert "a=1&amp;b=&#x27;2&#x27;" in out


def test_cluster_widget_with_a_real_local_cluster() -> None:
    from distributed import LocalCluster

    with LocalCluster(n_workers=0, processes=False, dashboard_address=":0") as cluster:
        widget = cluster_widget(cluster, refresh_interval=0.2)
        try:
            widget.set_state({"_view_count": 1})  # displayed: refreshes on the cluster's loop
            assert widget.refreshing
            assert widget.state.status == "RUNNING"
            widget.workers.value = 2
            widget.scale_button.click()
            wait_for(lambda: widget.state.workers_running == 2)
            assert "2" in widget.summary.value
            assert cluster.dashboard_link in widget.dashboard.value
            widget.shutdown_button.click()
            wait_for(lambda: widget.state.final)
        finally:
            widget.close()


# -- gateway widget --------------------------------------------------------------------


class RecordingGateway:
    def __init__(self, records: list[dict[str, Any]]) -> None:
        self.records = {r["name"]: r for r in records}
        self.calls: list[tuple[Any, ...]] = []

    def list_clusters(self) -> list[dict[str, Any]]:
        return list(self.records.values())

    def get_cluster(self, name: str) -> dict[str, Any]:
        return self.records[name]

    def scale_cluster(self, name: str, n: int) -> None:
        self.calls.append(("scale", name, n))

    def adapt_cluster(
        self, name: str, minimum: int | None = None, maximum: int | None = None
    ) -> None:
        self.calls.append(("adapt", name, minimum, maximum))

    def stop_cluster(self, name: str) -> None:
        self.calls.append(("stop", name))
        self.records[name] = record(name, status="STOPPING")


def test_gateway_widget_lists_clusters_with_controls() -> None:
    gateway = RecordingGateway([record("one"), record("two")])
    widget = gateway_widget(gateway, refresh_interval=None)
    try:
        assert list(widget.cards) == ["one", "two"]
        card = widget.cards["two"]
        card.workers.value = 4
        card.scale_button.click()
        card.minimum.value, card.maximum.value = 0, 3
        card.adapt_button.click()
        card.shutdown_button.click()
        assert gateway.calls == [("scale", "two", 4), ("adapt", "two", 0, 3), ("stop", "two")]

        del gateway.records["one"]
        gateway.records["three"] = record("three", status="PENDING")
        widget.refresh_button.click()
        assert list(widget.cards) == ["two", "three"]
        assert widget.cards["two"].state.status == "STOPPING"
        assert "two" in widget._repr_mimebundle_()["text/plain"]
    finally:
        widget.close()


def test_gateway_widget_shows_listing_errors() -> None:
    class Broken:
        def list_clusters(self) -> list[Any]:
            raise ConnectionError("service unreachable")

    widget = gateway_widget(Broken(), refresh_interval=None)
    try:
        assert "Could not list your clusters: service unreachable" in widget.message.value
    finally:
        widget.close()
