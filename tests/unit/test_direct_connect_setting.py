"""The direct-connect settings: the client's ``gateway.direct-connect`` (and its
timeout), and the service's ``direct_connect_host`` template and who gets the address."""

from __future__ import annotations

import dask.config
import pytest

from hubgate import Gateway
from hubgate.client.direct_connect import direct_connect_timeout, parse_direct_connect
from hubgate.hub_service.direct_address import check_host_template, direct_scheduler_address
from hubgate.hub_service.model import ClusterStatus

ADDRESS = "http://127.0.0.1:1/services/dask-gateway"


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        (None, "auto"),
        ("auto", "auto"),
        (" Always ", "always"),
        ("NEVER", "never"),
        (True, "auto"),
        (False, "never"),
    ],
)
def test_direct_connect_values(value: object, mode: str) -> None:
    assert parse_direct_connect(value) == mode


@pytest.mark.parametrize("value", ["sometimes", "", "true", 1, 0, ["auto"]])
def test_a_bad_direct_connect_value_says_what_to_write(value: object) -> None:
    with pytest.raises(ValueError) as info:
        parse_direct_connect(value)
    message = str(info.value)
    assert message.startswith("gateway.direct-connect must be one of 'auto'")
    assert "'always'" in message and "'never'" in message and repr(value) in message


def test_the_gateway_refuses_a_bad_setting_before_doing_anything() -> None:
    with pytest.raises(ValueError, match=r"^direct_connect must be one of 'auto'.*'maybe'"):
        Gateway(ADDRESS, direct_connect="maybe")
    with dask.config.set({"gateway.direct-connect": "maybe"}):
        with pytest.raises(ValueError, match=r"^gateway.direct-connect must be one of"):
            Gateway(ADDRESS)
    with dask.config.set({"gateway.direct-connect-timeout": "soon"}):
        with pytest.raises(ValueError, match=r"^gateway.direct-connect-timeout must be a number"):
            Gateway(ADDRESS)


def test_the_keyword_wins_over_the_config_and_the_default_is_auto() -> None:
    assert dask.config.get("gateway.direct-connect") == "auto"
    assert direct_connect_timeout() == 2.0
    with dask.config.set({"gateway.direct-connect": "never", "gateway.direct-connect-timeout": 5}):
        assert direct_connect_timeout() == 5.0
        gateway = Gateway(ADDRESS, direct_connect="always")
        try:
            assert gateway.direct_connect == "always"
            assert gateway._cluster_kwargs()["direct_connect"] == "always"
        finally:
            gateway.close()


@pytest.mark.parametrize("timeout", [0, -1, 301, True])
def test_a_bad_timeout_is_refused(timeout: object) -> None:
    with dask.config.set({"gateway.direct-connect-timeout": timeout}):
        with pytest.raises(ValueError, match="above 0"):
            direct_connect_timeout()


@pytest.mark.parametrize("template", ["{host}", "{host}-ib", "{host}.ib.example.org", "10.0.0.1"])
def test_host_templates(template: str) -> None:
    assert check_host_template(template) == template


@pytest.mark.parametrize("template", ["{hostname}", "{host}{port}", "{0}", "{host", " ", ""])
def test_a_bad_host_template_says_what_to_write(template: str) -> None:
    with pytest.raises(ValueError, match="direct_connect_host") as info:
        check_host_template(template)
    assert "{host}" in str(info.value)


class _Cluster:
    """The three fields ``direct_scheduler_address`` reads."""

    def __init__(self, address: str, status: ClusterStatus = ClusterStatus.RUNNING) -> None:
        self.username = "alice"
        self.status = status
        self.scheduler_address = address


def test_only_the_owner_of_a_running_cluster_gets_an_address() -> None:
    cluster = _Cluster("tls://127.0.0.1:40123")
    assert direct_scheduler_address(cluster, "alice", "{host}") == "tls://127.0.0.1:40123"  # type: ignore[arg-type]
    assert direct_scheduler_address(cluster, "admin", "{host}") is None  # type: ignore[arg-type]
    assert direct_scheduler_address(cluster, "alice", "") is None  # type: ignore[arg-type]
    for status in (ClusterStatus.PENDING, ClusterStatus.STOPPING, ClusterStatus.STOPPED):
        stopped = _Cluster("tls://127.0.0.1:40123", status)
        assert direct_scheduler_address(stopped, "alice", "{host}") is None  # type: ignore[arg-type]
    assert direct_scheduler_address(_Cluster(""), "alice", "{host}") is None  # type: ignore[arg-type]


def test_the_template_rewrites_only_the_host() -> None:
    node = _Cluster("tls://node17.cluster:40123")
    assert direct_scheduler_address(node, "alice", "{host}-ib") == "tls://node17.cluster-ib:40123"  # type: ignore[arg-type]
    pod = _Cluster("tls://[fd00::17]:8786")
    assert direct_scheduler_address(pod, "alice", "{host}") == "tls://[fd00::17]:8786"  # type: ignore[arg-type]
