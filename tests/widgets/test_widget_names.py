"""The widgets call clusters by their display names (with the id beside them), read
from hubgate's records, hubgate's ClusterReports and the official client's reports."""

from __future__ import annotations

from dask_gateway.client import ClusterReport as OfficialReport

from hubgate.client import ClusterReport
from hubgate.widgets import ClusterState, cluster_html, cluster_text, cluster_widget, gateway_widget
from tests.widgets.test_widgets import RecordingCluster, RecordingGateway, record

ID = "0123456789abcdef0123456789abcdef"
V1 = {
    "name": ID,
    "dashboard_route": None,
    "status": "RUNNING",
    "start_time": 1_700_000_000_000,
    "stop_time": None,
    "options": {"worker_cores": 2, "hubgate:display_name": "my-analysis"},
    "tls_cert": None,
    "tls_key": None,
}


def test_cluster_widget_title_is_the_display_name_with_the_id() -> None:
    cluster = RecordingCluster(ID, display_name="<b>odd</b>")
    widget = cluster_widget(cluster, refresh_interval=None)
    try:
        assert widget.state.display_name == "<b>odd</b>"
        assert "Cluster &lt;b&gt;odd&lt;/b&gt;" in widget.title.value
        assert ID in widget.title.value and "<b>odd" not in widget.title.value
        text = widget._repr_mimebundle_()["text/plain"]
        assert text.startswith(f"Cluster <b>odd</b> ({ID})")
    finally:
        widget.close()


def test_without_a_display_name_the_id_is_the_title() -> None:
    state = ClusterState.from_report(record(ID))
    assert state.display_name is None and state.title == ID
    assert cluster_text(state).startswith(f"Cluster {ID}\n")
    assert f"<h4>Cluster {ID}</h4>" in cluster_html(state)


def test_display_name_from_either_clients_v1_report() -> None:
    ours = ClusterReport._from_json("http://h", "gateway://h:8786", V1)
    assert ours.display_name == "my-analysis" and ours.options == {"worker_cores": 2}
    assert ClusterState.from_report(ours).display_name == "my-analysis"
    official = OfficialReport._from_json("http://h", "gateway://h:8786", dict(V1))
    assert official.name == ID
    assert ClusterState.from_report(official).display_name == "my-analysis"


def test_gateway_widget_cards_show_display_names() -> None:
    gateway = RecordingGateway(
        [record("one", display_name="etl-nightly"), record("two", display_name="brisk-otter")]
    )
    widget = gateway_widget(gateway, refresh_interval=None)
    try:
        assert list(widget.cards) == ["one", "two"]  # still keyed and acted on by id
        assert "Cluster etl-nightly" in widget.cards["one"].title.value
        assert "Cluster brisk-otter" in widget.cards["two"].title.value
        widget.cards["two"].shutdown_button.click()
        assert gateway.calls == [("stop", "two")]
        assert "Cluster etl-nightly (one)" in widget._repr_mimebundle_()["text/plain"]
    finally:
        widget.close()
