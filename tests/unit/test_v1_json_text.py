"""The v1 JSON text of a cluster, kept between list calls (hub_service/model.py)."""

from __future__ import annotations

import json

import pytest

from hubgate.hub_service.cluster_config import ClusterConfig
from hubgate.hub_service.model import Cluster, ClusterStatus, to_v1_json, v1_json_text
from hubgate.hub_service.tls import generate_cluster_credentials

CREDENTIALS = generate_cluster_credentials("c0ffee")


def pending() -> Cluster:
    return Cluster(
        name="c0ffee",
        username="alice",
        options={"worker_cores": 1},
        config=ClusterConfig(),
        token="",
        credentials=CREDENTIALS,
        display_name="quiet-otter",
    )


@pytest.mark.parametrize("credentials", [True, False])
def test_text_is_the_json_of_the_v1_view(credentials: bool) -> None:
    cluster = pending()
    cluster.status = ClusterStatus.RUNNING
    cluster.dashboard_address = "127.0.0.1:8787"
    text = v1_json_text(cluster, credentials=credentials)
    assert json.loads(text) == to_v1_json(cluster, credentials=credentials)


def test_text_follows_every_change_it_shows() -> None:
    cluster = pending()
    seen = [v1_json_text(cluster)]

    cluster.status = ClusterStatus.RUNNING  # credentials appear
    seen.append(v1_json_text(cluster))
    cluster.dashboard_address = "127.0.0.1:8787"  # a dashboard route appears
    seen.append(v1_json_text(cluster))
    cluster.display_name = "loud-otter"
    seen.append(v1_json_text(cluster))
    seen.append(v1_json_text(cluster, credentials=False))  # an admin's view
    cluster.status = ClusterStatus.STOPPED
    cluster.stopped = 1_800_000_000.0
    seen.append(v1_json_text(cluster))

    assert len(set(seen)) == len(seen)
    assert json.loads(seen[-1]) == to_v1_json(cluster)


def test_unchanged_cluster_reuses_its_text() -> None:
    cluster = pending()
    cluster.status = ClusterStatus.RUNNING
    assert v1_json_text(cluster) is v1_json_text(cluster)


def test_texts_with_and_without_credentials_are_kept_apart() -> None:
    cluster = pending()
    cluster.status = ClusterStatus.RUNNING
    listed, connected = v1_json_text(cluster, credentials=False), v1_json_text(cluster)
    # a list and a connect in turn reuse their own texts
    assert v1_json_text(cluster, credentials=False) is listed
    assert v1_json_text(cluster) is connected
    assert "PRIVATE KEY" in connected and "PRIVATE KEY" not in listed
