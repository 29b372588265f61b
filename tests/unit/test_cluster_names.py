"""Cluster display names: the rule (hubgate/cluster_names.py), default names
(hub_service/name_picker.py), and the manager's uniqueness among a user's unfinished
clusters, with the real manager and store (stand-in backend, tests/fixtures/standin.py)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from cryptography.fernet import Fernet

from hubgate.cluster_names import (
    DISPLAY_NAME_OPTION,
    MAX_DISPLAY_NAME,
    check_display_name,
    is_cluster_id,
)
from hubgate.hub_service import name_picker
from hubgate.hub_service.cluster_config import ClusterConfig
from hubgate.hub_service.errors import Conflict
from hubgate.hub_service.model import ClusterStatus, User, to_rich_json, to_v1_json
from hubgate.hub_service.name_picker import ADJECTIVES, NOUNS, pick_display_name
from hubgate.hub_service.secrets import SecretBox
from hubgate.options import Integer, OptionSet
from tests.fixtures.standin import standin_service

BOX = SecretBox([Fernet.generate_key()])


@pytest.mark.parametrize(
    "name", ["a", "my-analysis", "run-2", "x9", "a" * MAX_DISPLAY_NAME, "etl--nightly"]
)
def test_valid_display_names_are_kept(name: str) -> None:
    assert check_display_name(name) == name


@pytest.mark.parametrize("given", [None, ""])
def test_no_display_name_means_a_default(given: Any) -> None:
    assert check_display_name(given) is None


@pytest.mark.parametrize(
    ("given", "example"),
    [
        ("My Analysis", "my-analysis"),
        ("2nd-run", "my-analysis"),  # must start with a letter
        ("analysis-", "analysis"),
        ("-analysis", "analysis"),
        ("ünïcode", "n-code"),
        ("a" * (MAX_DISPLAY_NAME + 1), "a" * MAX_DISPLAY_NAME),
        (" padded ", "padded"),
        ("<script>", "script"),
    ],
)
def test_bad_display_names_say_the_rule_and_an_example(given: str, example: str) -> None:
    with pytest.raises(ValueError) as refused:
        check_display_name(given)
    text = str(refused.value)
    assert text.startswith(f"display_name {given!r} is not allowed: use 1-30 characters")
    assert text.endswith(f"(for example {example!r})")
    assert check_display_name(example) == example


@pytest.mark.parametrize(
    ("given", "kind"), [(7, "a number"), (True, "a boolean"), (["x"], "a list")]
)
def test_display_names_that_are_no_strings_are_refused(given: Any, kind: str) -> None:
    with pytest.raises(ValueError, match=f"must be a string like 'my-analysis', got {kind}$"):
        check_display_name(given)


def test_no_display_name_has_the_shape_of_an_id() -> None:
    assert is_cluster_id("0123456789abcdef0123456789abcdef")
    with pytest.raises(ValueError):
        check_display_name("abcdef0123456789abcdef0123456789")  # 32 characters


def test_an_option_set_cannot_define_the_display_name_key() -> None:
    with pytest.raises(ValueError, match="cannot be an option name"):
        OptionSet(Integer(DISPLAY_NAME_OPTION, 1))


def test_default_names_are_valid_and_leave_room_for_a_number() -> None:
    longest = max(map(len, ADJECTIVES)) + 1 + max(map(len, NOUNS))
    assert longest + len("-99999") <= MAX_DISPLAY_NAME
    assert len(set(ADJECTIVES)) == len(ADJECTIVES) and len(set(NOUNS)) == len(NOUNS)
    for _ in range(200):
        assert check_display_name(pick_display_name(set())) is not None


def test_a_default_name_is_never_one_already_taken(monkeypatch: pytest.MonkeyPatch) -> None:
    # one word of each kind: the only pair is taken, so a number is added
    monkeypatch.setattr(name_picker, "ADJECTIVES", ["brisk"])
    monkeypatch.setattr(name_picker, "NOUNS", ["otter"])
    assert pick_display_name(set()) == "brisk-otter"
    assert pick_display_name({"brisk-otter"}) == "brisk-otter-2"
    assert pick_display_name({"brisk-otter", "brisk-otter-2"}) == "brisk-otter-3"


async def test_names_are_unique_among_a_users_unfinished_clusters(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'hubgate.sqlite'}"
    alice, bob = User("alice"), User("bob")
    async with standin_service(url, BOX) as service:
        manager = service.manager
        first = await manager.create_cluster(alice, {}, ClusterConfig(), "my-analysis")
        assert first.display_name == "my-analysis"
        with pytest.raises(Conflict) as clash:
            await manager.create_cluster(alice, {}, ClusterConfig(), "my-analysis")
        assert str(clash.value) == (
            f"You already have a cluster named 'my-analysis' ({first.name}, PENDING): "
            "choose another name, or stop that cluster first"
        )
        assert len(manager.clusters) == 1  # the refused create left nothing behind
        # another user's names do not count
        bobs = await manager.create_cluster(bob, {}, ClusterConfig(), "my-analysis")
        assert bobs.display_name == "my-analysis"

        # a finished cluster's name may be used again
        await manager.stop_cluster(first, "done")
        await service.settled()
        assert first.status is ClusterStatus.STOPPED
        again = await manager.create_cluster(alice, {}, ClusterConfig(), "my-analysis")
        assert again.display_name == "my-analysis"

        generated = await manager.create_cluster(alice, {}, ClusterConfig())
        assert check_display_name(generated.display_name) == generated.display_name
        assert generated.display_name != "my-analysis"
        await service.settled()

        rich = to_rich_json(again, service_prefix="/services/dask-gateway/", proxy_address=None)
        assert rich["name"] == again.name and rich["display_name"] == "my-analysis"
        v1 = to_v1_json(again)
        assert v1["name"] == again.name
        assert v1["options"] == {DISPLAY_NAME_OPTION: "my-analysis"}
        names = {c.name: c.display_name for c in manager.clusters.values()}

    # kept in the database across a restart
    async with standin_service(url, BOX) as service:
        assert {c.name: c.display_name for c in service.manager.clusters.values()} == names
        for cluster in list(service.manager.clusters.values()):
            if not cluster.status.final:
                await service.manager.stop_cluster(cluster, "test over")
        await service.settled()
