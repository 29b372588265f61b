"""Which clusters stop with their server (hub_service/server_watch.py), and how the
service tells a server's token (hub_service/auth.py). The hub's side runs for real in
tests/e2e/test_server_stop.py; here the decisions, on every case the rule names."""

from __future__ import annotations

import pytest

from hubgate.hub_service.auth import token_server
from hubgate.hub_service.cluster_config import ClusterConfig
from hubgate.hub_service.hub_servers import HubRefused, HubUnavailable, ServerList
from hubgate.hub_service.model import Cluster, ClusterStatus
from hubgate.hub_service.server_watch import (
    ServerWatch,
    Sighting,
    server_stop_reasons,
    sightings,
)
from hubgate.hub_service.tls import generate_cluster_credentials

CREDENTIALS = generate_cluster_credentials("x")
T0 = 1_000_000.0
STARTED = "2026-01-01T00:00:00Z"
LATER = "2026-01-01T01:00:00Z"


def cluster(
    name: str, user: str = "alice", server: str | None = "", created: float = T0
) -> Cluster:
    return Cluster(
        name=name,
        username=user,
        options={},
        config=ClusterConfig(),
        token="",
        credentials=CREDENTIALS,
        status=ClusterStatus.RUNNING,
        created=created,
        server=server,
    )


def listing(sent_at: float, **servers: str | None) -> ServerList:
    """``alice=STARTED`` is alice's default server; ``alice__gpu=...`` her server gpu."""
    started = {}
    for key, when in servers.items():
        user, _, server = key.partition("__")
        started[(user, server)] = when
    return ServerList(sent_at, started)


def stopped(stops: list[tuple[Cluster, str]]) -> dict[str, str]:
    return {c.name: reason for c, reason in stops}


def test_a_cluster_stops_when_its_server_is_gone_and_says_which() -> None:
    made = cluster("made-in-server")
    stops = stopped(server_stop_reasons([made], listing(T0 + 10), {}))
    assert stops == {
        "made-in-server": "stopped because the JupyterHub server it was created from "
        "(alice's default server) stopped"
    }


def test_a_cluster_made_after_the_question_is_not_judged_by_the_answer() -> None:
    # its server started after the hub looked: the answer cannot show it
    young = cluster("young", created=T0 + 11)
    assert server_stop_reasons([young], listing(T0 + 10), {}) == []


def test_clusters_of_no_server_never_stop_here() -> None:
    # made with a /hub/token token: whether or not alice has a server running
    outside = cluster("outside", server=None)
    assert server_stop_reasons([outside], listing(T0 + 10), {}) == []
    assert server_stop_reasons([outside], listing(T0 + 10, alice=STARTED), {}) == []


def test_a_named_servers_clusters_go_with_that_server_only() -> None:
    default, gpu = cluster("default"), cluster("gpu", server="gpu")
    stops = stopped(server_stop_reasons([default, gpu], listing(T0 + 10, alice=STARTED), {}))
    assert stops == {
        "gpu": "stopped because the JupyterHub server it was created from "
        '(alice\'s server "gpu") stopped'
    }


def test_other_users_and_running_servers_are_left_alone() -> None:
    alices, bobs = cluster("a"), cluster("b", user="bob")
    stops = server_stop_reasons([alices, bobs], listing(T0 + 10, bob=STARTED), {})
    assert stopped(stops).keys() == {"a"}


def test_clusters_no_longer_active_are_skipped() -> None:
    done = cluster("done")
    done.status = ClusterStatus.STOPPING
    assert server_stop_reasons([done], listing(T0 + 10), {}) == []


def test_a_server_that_started_again_between_two_looks_takes_its_old_clusters() -> None:
    seen = sightings(listing(T0 + 10, alice=STARTED))
    old, new = cluster("old", created=T0), cluster("new", created=T0 + 20)
    stops = stopped(server_stop_reasons([old, new], listing(T0 + 30, alice=LATER), seen))
    assert stops == {
        "old": "stopped because the JupyterHub server it was created from "
        "(alice's default server) stopped and started again"
    }


def test_the_same_server_seen_again_stops_nothing() -> None:
    seen = {("alice", ""): Sighting(STARTED, T0 + 10)}
    made = cluster("made")
    assert server_stop_reasons([made], listing(T0 + 30, alice=STARTED), seen) == []
    # a start time the hub did not give is no evidence of a restart
    assert server_stop_reasons([made], listing(T0 + 30, alice=None), seen) == []


class FakeHub:
    """The hub's answers, as the watch reads them (the real reader is tested end to end)."""

    def __init__(self, listed: ServerList, direct: dict[str, dict[str, str | None]]):
        self.listed = listed
        self.direct = direct
        self.failure: Exception | None = None
        self.refusal: HubRefused | None = None
        self.asked: list[str] = []

    async def check_access(self) -> None:
        if self.refusal is not None:
            raise self.refusal

    async def active(self) -> ServerList:
        if self.failure is not None:
            raise self.failure
        return self.listed

    async def servers_of(self, user: str) -> dict[str, str | None]:
        self.asked.append(user)
        return self.direct.get(user, {})


def watch(hub: FakeHub, clusters: list[Cluster], stops: list[tuple[str, str]]) -> ServerWatch:
    async def stop(cluster: Cluster, reason: str) -> None:
        stops.append((cluster.name, reason))
        cluster.status = ClusterStatus.STOPPED

    return ServerWatch(hub, clusters=lambda: clusters, stop=stop, interval=3600)


async def test_a_server_missing_from_the_list_is_confirmed_with_its_user() -> None:
    # a list in pages skipped alice (a neighbour's server stopped between two pages)
    hub = FakeHub(listing(T0 + 10, bob=STARTED), {"alice": {"": STARTED}})
    stops: list[tuple[str, str]] = []
    w = watch(hub, [cluster("a"), cluster("b", user="bob")], stops)
    await w.check()
    await w.close()
    assert hub.asked == ["alice"]
    assert stops == []


async def test_a_confirmed_stop_stops_the_cluster() -> None:
    hub = FakeHub(listing(T0 + 10, bob=STARTED), {})
    stops: list[tuple[str, str]] = []
    w = watch(hub, [cluster("a")], stops)
    await w.check()
    await w.close()
    assert [name for name, _ in stops] == ["a"]


async def test_no_answer_from_the_hub_stops_nothing() -> None:
    hub = FakeHub(listing(T0 + 10), {})
    hub.failure = HubUnavailable("cannot reach the hub")
    stops: list[tuple[str, str]] = []
    w = watch(hub, [cluster("a")], stops)
    await w.start()  # a hub not up yet is no reason not to start
    await w.close()
    assert stops == []
    with pytest.raises(HubUnavailable):
        await w.check()


@pytest.mark.parametrize("when", ["checking the token", "listing"])
async def test_a_hub_that_refuses_stops_the_service_at_start(when: str) -> None:
    hub = FakeHub(listing(T0 + 10), {})
    refusal = HubRefused("the service's role needs the scopes list:users, read:servers")
    if when == "listing":
        hub.failure = refusal
    else:
        hub.refusal = refusal
    stops: list[tuple[str, str]] = []
    w = watch(hub, [cluster("a")], stops)
    with pytest.raises(HubRefused):
        await w.start()
    await w.close()
    assert stops == []


@pytest.mark.parametrize(
    ("scopes", "server"),
    [
        # a server's own token: its role's access:servers!server, resolved by the hub
        (["users:activity!user=alice", "access:servers!server=alice/"], ""),
        (["access:servers!server=alice/gpu", "access:services!service=dask-gateway"], "gpu"),
        # /hub/token tokens: every server of the user, none in particular
        (["access:servers!user=alice", "read:users!user=alice"], None),
        # a server shared with alice is not hers
        (["access:servers!user=alice", "access:servers!server=bob/"], None),
        # naming two of her servers: neither
        (["access:servers!server=alice/", "access:servers!server=alice/gpu"], None),
        ([], None),
    ],
)
def test_a_servers_token_is_told_by_its_access_scope(scopes: list[str], server: str | None) -> None:
    assert token_server({"kind": "user", "name": "alice", "scopes": scopes}) == server


def test_a_service_token_belongs_to_no_server() -> None:
    model = {"kind": "service", "name": "alice", "scopes": ["access:servers!server=alice/"]}
    assert token_server(model) is None
