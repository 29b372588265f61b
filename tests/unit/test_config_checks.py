"""Operator settings checked when the service starts, with messages that name the
setting, the bad key or value, the closest valid key and all of them; parsed once."""

from __future__ import annotations

import logging
import runpy
from pathlib import Path
from typing import Any

import pytest
from traitlets import TraitError
from traitlets.config import Config

from hubgate.config.demo import configure_demo
from hubgate.config_keys import closest_key, unknown_keys_message
from hubgate.hub_service.app import HubgateService
from hubgate.hub_service.cluster_config import (
    CONFIG_KEYS,
    GIB,
    ClusterConfig,
    ConfigError,
    UnknownConfigKey,
)
from hubgate.hub_service.cluster_settings import MISCONFIGURED
from hubgate.hub_service.errors import HubMisconfigured
from hubgate.hub_service.limits import LimitsPolicy, UserLimits, limits_table
from hubgate.hub_service.model import User
from hubgate.options import (
    Integer,
    OptionSet,
    Select,
    String,
    environment_variables_field,
    idle_timeout_field,
    profile_field,
    resources_per_worker_field,
    standard_handler,
    standard_handler_keys,
    worker_cores_field,
    worker_memory_field,
)
from hubgate.spawners.base import ProcessSpec
from hubgate.spawners.batch import (
    HTCondorBackend,
    LSFBackend,
    PBSBackend,
    SGEBackend,
    SlurmBackend,
)
from hubgate.spawners.kubernetes import KubernetesBackend
from hubgate.spawners.local import LocalBackend, UnsafeLocalBackend
from tests.batch_parsing.test_batch_scripts import rendered, worker_spec

# -- the message ----------------------------------------------------------------------


def test_the_message_names_the_setting_the_key_its_closest_match_and_every_valid_key() -> None:
    message = unknown_keys_message(
        "HubgateService.user_limits", ["max_cluster"], ["max_clusters", "max_cores"]
    )
    assert message == (
        "HubgateService.user_limits: unknown key 'max_cluster' (did you mean "
        "'max_clusters'?); valid keys: max_clusters, max_cores"
    )
    assert closest_key("gpus", ["max_clusters", "max_cores"]) is None
    two = unknown_keys_message("x", ["max_worker", "gpus"], ["max_workers"])
    assert "unknown keys 'max_worker' (did you mean 'max_workers'?), 'gpus';" in two


# -- limits ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"max_cluster": 2}, "unknown key 'max_cluster' (did you mean 'max_clusters'?)"),
        ({"max_clusters": "2"}, "max_clusters must be a whole number >= 0"),
        ({"max_clusters": True}, "max_clusters must be a whole number >= 0"),
        ({"max_clusters": -1}, "max_clusters must be a whole number >= 0"),
        ({"max_cores": "8"}, "max_cores must be a number >= 0"),
        ({"max_memory": "lots"}, "max_memory must be a number of bytes or a size like '2G'"),
        (["max_clusters"], "must be a mapping of max_clusters, max_cores, max_memory"),
    ],
)
def test_user_limits_refuse_unknown_keys_and_wrong_types(data: Any, expected: str) -> None:
    with pytest.raises(ConfigError) as caught:
        UserLimits.from_config(data, "HubgateService.user_limits")
    assert str(caught.value).startswith("HubgateService.user_limits")
    assert expected in str(caught.value)


def test_user_limits_parse_into_typed_values() -> None:
    limits = UserLimits.from_config({"max_clusters": 2, "max_cores": 8.5, "max_memory": "4G"})
    assert limits == UserLimits(max_clusters=2, max_cores=8.5, max_memory=4 * GIB)
    assert UserLimits.from_config({}) == UserLimits()


def test_a_limits_table_names_the_entry_with_the_typo() -> None:
    with pytest.raises(ConfigError, match=r"group_limits\['staff'\]: unknown key 'max_core' "):
        limits_table({"staff": {"max_core": 8}}, "group_limits")
    with pytest.raises(ConfigError, match=r"per_user_limits\['bob'\] must be a mapping"):
        limits_table({"bob": 3}, "per_user_limits")
    with pytest.raises(ConfigError, match="every key must be a name"):
        limits_table({1: {}}, "group_limits")


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("user_limits", {"max_cluster": 2}, "HubgateService.user_limits: unknown key"),
        (
            "group_limits",
            {"staff": {"max_memory": 12}},
            "HubgateService.group_limits['staff']: max_memory is in bytes",
        ),
        (
            "per_user_limits",
            {"alice": {"max_gpus": 1}},
            "HubgateService.per_user_limits['alice']: unknown key 'max_gpus'",
        ),
        ("max_workers_per_cluster", 0, "HubgateService.max_workers_per_cluster must be at least"),
    ],
)
def test_the_service_refuses_bad_limits_when_configured(
    setting: str, value: Any, expected: str
) -> None:
    with pytest.raises(TraitError) as caught:
        HubgateService(**{setting: value})
    assert expected in str(caught.value)


def test_limits_are_parsed_once_and_again_when_the_setting_changes() -> None:
    app = HubgateService(
        user_limits={"max_clusters": 1}, group_limits={"staff": {"max_clusters": 4}}
    )
    alice, ada = User("alice"), User("ada", groups=("staff",))
    first = app.limits_for(alice)
    # the same parsed object every time: nothing is parsed per request
    assert app.limits_for(alice) is first and first.max_clusters == 1
    assert app.limits_for(ada) is app.limits_for(ada)
    app.user_limits = {"max_clusters": 3}
    assert app.limits_for(alice).max_clusters == 3


def test_the_limits_policy_picks_own_then_most_generous_group_then_default() -> None:
    policy = LimitsPolicy.from_config(
        {"max_clusters": 1},
        {"a": {"max_clusters": 2, "max_cores": 4}, "b": {"max_clusters": 3, "max_cores": 2}},
        {"dave": {"max_clusters": 9}},
    )
    assert policy.for_user(User("x")) == UserLimits(max_clusters=1)
    assert policy.for_user(User("y", groups=("a", "b"))) == UserLimits(3, 4)
    assert policy.for_user(User("dave", groups=("a",))) == UserLimits(9)


# -- cluster_config and the backends' resources ------------------------------------------


def _settings_error(**config: Any) -> str:
    with pytest.raises(TraitError) as caught:
        HubgateService(**config).check_settings()
    return str(caught.value)


def test_cluster_config_typo_names_the_setting_the_backend_and_the_closest_key() -> None:
    message = _settings_error(cluster_config={"max_worker": 8})
    assert message.startswith("HubgateService.cluster_config (with the local backend): ")
    assert "unknown key 'max_worker' (did you mean 'max_workers'?)" in message
    assert "valid keys: worker_cores, worker_memory" in message


def test_cluster_config_wrong_value_names_the_setting() -> None:
    message = _settings_error(cluster_config={"scheduler_memory": "lots"})
    assert message.startswith("HubgateService.cluster_config: scheduler_memory must be")


def test_a_backend_key_is_accepted_by_its_backend_only() -> None:
    slurm = HubgateService(backend_class="slurm", cluster_config={"partition": "debug"})
    assert slurm.cluster_settings().defaults.resources == {"partition": "debug"}
    message = _settings_error(cluster_config={"partition": "debug"})
    assert "(with the local backend): unknown key 'partition'" in message
    kube = _settings_error(backend_class="kubernetes", cluster_config={"instance_typ": "x"})
    assert "did you mean 'instance_type'?" in kube and "instance_type" in kube.split("valid")[1]
    nested = _settings_error(backend_class="slurm", cluster_config={"resources": {"qso": "hi"}})
    assert "unknown key 'qso' (did you mean 'qos'?)" in nested


def test_cluster_config_is_parsed_once_into_the_defaults_of_every_cluster() -> None:
    app = HubgateService(
        backend_class="slurm",
        cluster_config={"max_workers": 8, "scheduler_memory": "1G", "partition": "debug"},
    )
    settings = app.cluster_settings()
    assert app.cluster_settings() is settings
    assert settings.defaults.max_workers == 8 and settings.defaults.scheduler_memory == GIB
    user = User("alice")
    config = app.cluster_config_for({"worker_cores": 2, "qos": "high", "max_workers": None}, user)
    assert config.worker_cores == 2 and config.max_workers == 8
    assert config.resources == {"partition": "debug", "qos": "high"}
    # one cluster's config never changes the defaults of the next
    config.resources["qos"] = "low"
    assert settings.defaults.resources == {"partition": "debug"}


def test_a_handler_result_with_a_key_nothing_reads_is_the_hubs_mistake(
    caplog: pytest.LogCaptureFixture,
) -> None:
    app = HubgateService(cluster_config={"max_workers": 8})
    with caplog.at_level(logging.ERROR, logger="hubgate"), pytest.raises(HubMisconfigured) as err:
        app.cluster_config_for({"worker_cores": 1, "max_worker": 100}, User("alice"))
    # the user reads that the hub is misconfigured, nothing of its configuration...
    assert err.value.status_code == 409 and err.value.message == MISCONFIGURED
    assert "max_worker" not in err.value.message
    # ...the operator reads the key, the closest valid one and the setting to fix
    [record] = [r for r in caplog.records if "max_worker" in r.getMessage()]
    text = record.getMessage()
    assert "HubgateService.cluster_options is misconfigured" in text
    assert "for alice" in text and "'max_worker' (did you mean 'max_workers'?)" in text


def test_a_wrong_value_from_a_handler_stays_a_422_for_the_user() -> None:
    app = HubgateService()
    with pytest.raises(ConfigError) as caught:
        app.cluster_config_for({"worker_memory": "lots"}, User("alice"))
    assert not isinstance(caught.value, UnknownConfigKey)


def test_from_handler_output_puts_only_declared_keys_into_resources() -> None:
    config = ClusterConfig.from_handler_output(
        {"partition": "gpu", "resources": {"qos": "high"}, "image": "x"},
        accepted_resources={"partition", "qos"},
    )
    assert config.resources == {"partition": "gpu", "qos": "high"} and config.image == "x"
    with pytest.raises(UnknownConfigKey) as caught:
        ClusterConfig.from_handler_output({"gpus": 1, "partition": "a"}, accepted_resources=())
    assert caught.value.keys == ["gpus", "partition"]
    with pytest.raises(ConfigError, match="resources must be a mapping"):
        ClusterConfig.from_handler_output({"resources": "gpu"}, accepted_resources=())


# -- cluster_options --------------------------------------------------------------------


def test_cluster_options_must_be_an_option_set_or_a_callable() -> None:
    with pytest.raises(TraitError, match="HubgateService.cluster_options must be a hubgate"):
        HubgateService(cluster_options=[worker_cores_field()])
    HubgateService(cluster_options=lambda user: OptionSet())


def test_a_static_option_set_whose_profile_has_a_typo_stops_the_service() -> None:
    options = OptionSet(
        profile_field([("small", {"worker_cores": 1}), ("big", {"max_worker": 4})]),
        handler=standard_handler,
    )
    message = _settings_error(cluster_options=options)
    assert message.startswith("HubgateService.cluster_options: its handler would give")
    assert "unknown key 'max_worker' (did you mean 'max_workers'?)" in message


def test_a_static_option_set_without_handler_is_checked_by_its_targets() -> None:
    options = OptionSet(String("queue", "short"))
    assert "unknown key 'queue'" in _settings_error(cluster_options=options)
    HubgateService(backend_class="pbs", cluster_options=options).check_settings()


def test_an_operators_own_handler_is_checked_per_request_not_at_start() -> None:
    options = OptionSet(worker_cores_field(), handler=lambda options: {"max_worker": 1})
    HubgateService(cluster_options=options).check_settings()


def test_standard_handler_keys_are_the_keys_it_returns() -> None:
    fields = [
        resources_per_worker_field(),
        profile_field([("a", {"worker_cores": 1, "image": "x"}), ("b", "plain")]),
        worker_memory_field(),
        idle_timeout_field(),
        environment_variables_field(),
        Integer("max_workers", 4),
    ]
    option_set = OptionSet(*fields, handler=standard_handler)
    returned: set[str] = set()
    for size in fields[0].options:
        for profile in fields[1].options:
            chosen = {"resources_per_worker": size, "profile": profile}
            returned |= set(standard_handler(option_set.transform(option_set.validate(chosen))))
    assert returned == standard_handler_keys(fields) == option_set.result_keys()
    assert returned == {
        "worker_cores",
        "worker_memory",
        "image",
        "profile",
        "idle_timeout",
        "environment",
        "max_workers",
    }
    assert OptionSet(Select("x", options=["a"]), handler=lambda o: {}).result_keys() is None


# -- the backends' own dict and list settings ------------------------------------------


@pytest.mark.parametrize(
    ("setting", "value", "expected"),
    [
        ("node_selector", {"pool": 1}, "node_selector"),
        (
            "tolerations",
            [{"key": "k", "efect": "NoSchedule"}],
            "KubernetesBackend.tolerations[0]: unknown key 'efect' (did you mean 'effect'?)",
        ),
        (
            "instance_types",
            {"big": {"nodeSelector": {}}},
            "KubernetesBackend.instance_types['big']: unknown key 'nodeSelector' "
            "(did you mean 'node_selector'?)",
        ),
        (
            "instance_types",
            {"big": {"tolerations": [{"operater": "Exists"}]}},
            "instance_types['big']['tolerations'][0]: unknown key 'operater'",
        ),
        (
            "instance_types",
            {"big": {"node_selector": {"pool": 2}}},
            "instance_types['big']['node_selector'] must map label names to label values",
        ),
    ],
)
def test_kubernetes_placement_settings_are_checked(setting: str, value: Any, expected: str) -> None:
    with pytest.raises(TraitError) as caught:
        KubernetesBackend(**{setting: value})
    assert expected in str(caught.value)


def test_a_backend_setting_typo_stops_the_service_at_its_check() -> None:
    c = Config()
    c.HubgateService.backend_class = "kubernetes"
    c.KubernetesBackend.tolerations = [{"key": "k", "effects": "NoSchedule"}]
    message = _settings_error(config=c)
    assert "KubernetesBackend.tolerations[0]: unknown key 'effects'" in message


# -- each backend reads what it declares ----------------------------------------------

RESOURCE_SAMPLES = {
    "account": "acct9",
    "walltime": "03:00:00",
    "partition": "part9",
    "queue": "queue9",
    "qos": "qos9",
    "project": "proj9",
}


# An extra line in each system's own syntax.
EXTRA_LINE = {SlurmBackend: "--comment=hubgate_test", HTCondorBackend: "+hubgate_test = 1"}


@pytest.mark.parametrize(
    "backend_class", [SlurmBackend, PBSBackend, SGEBackend, LSFBackend, HTCondorBackend]
)
def test_each_resource_a_batch_backend_declares_reaches_its_job(backend_class: type) -> None:
    backend = backend_class()
    plain = rendered(backend, worker_spec())
    assert set(backend_class.accepted_resources) >= {"account", "walltime", "directives"}
    for key in backend_class.accepted_resources:
        if key == "directives":
            value = [EXTRA_LINE.get(backend_class, "-l hubgate_test=1")]
            job = rendered(backend, worker_spec(resources={key: value}))
            assert "hubgate_test" in job and "hubgate_test" not in plain, key
            continue
        job = rendered(backend, worker_spec(resources={key: RESOURCE_SAMPLES[key]}))
        changed = RESOURCE_SAMPLES[key] in job or (key == "walltime" and job != plain)
        assert changed, f"{backend_class.__name__} declares {key!r} but its job ignores it"


def test_kubernetes_reads_the_instance_type_it_declares() -> None:
    assert set(KubernetesBackend.accepted_resources) == {"instance_type"}
    backend = KubernetesBackend(instance_types={"big": {"node_selector": {"pool": "big"}}})
    spec = ProcessSpec(
        "c1", "worker", "w1", "alice", ["python"], resources={"instance_type": "big"}
    )
    selector, _ = backend._placement(spec)
    assert selector == {"pool": "big"}


def test_local_backends_take_nothing_beyond_hubgates_own_settings() -> None:
    assert LocalBackend.accepted_resources == {} == UnsafeLocalBackend.accepted_resources
    # python (another environment's interpreter) is one of hubgate's own settings
    assert "python" in CONFIG_KEYS and "image" in CONFIG_KEYS


# -- the shipped examples -----------------------------------------------------------------


@pytest.mark.parametrize(
    "example", ["hubgate_config.py", "slurm/hubgate_config.py", "kubernetes/hubgate_config.py"]
)
def test_every_example_configuration_passes_the_start_checks(example: str) -> None:
    c = Config()
    path = Path(__file__).parents[2] / "config" / example
    runpy.run_path(str(path), init_globals={"get_config": lambda: c})
    app = HubgateService(config=c)
    app.check_settings()
    assert app.backend.backend_name == {"slurm": "slurm", "kubernetes": "kubernetes"}.get(
        example.split("/")[0], "local"
    )


def test_the_demo_configuration_passes_the_start_checks() -> None:
    c = Config()
    configure_demo(c)
    app = HubgateService(config=c)
    app.check_settings()
    assert app.limits_for(User("ada", groups=("staff",))).max_clusters == 10
