"""hubgate.options: fields, messages, the v1 spec and its round trip with the official
dask-gateway client and server."""

from __future__ import annotations

import json

import dask_gateway.options as official_client
import dask_gateway_server.options as official_server
import pytest

from hubgate.options import (
    Bool,
    Field,
    Float,
    GiB,
    Integer,
    Mapping,
    Options,
    OptionsError,
    OptionSet,
    Select,
    String,
    environment_variables_field,
    idle_timeout_field,
    image_field,
    profile_field,
    resolve_option_set,
    resources_per_worker_field,
    standard_handler,
    worker_cores_field,
    worker_memory_field,
    worker_setup_field,
)


def message(field: Field, value) -> str:
    with pytest.raises(ValueError) as info:
        field.validate(value)
    return str(info.value)


# -- messages -------------------------------------------------------------------------


def test_integer_messages():
    cores = Integer("worker_cores", 1, min=1, max=4)
    assert message(cores, 10) == "worker_cores must be at most 4, got 10"
    assert message(cores, 0) == "worker_cores must be at least 1, got 0"
    assert message(cores, 2.5) == "worker_cores must be an integer, got 2.5"
    assert message(cores, "2") == "worker_cores must be an integer, got '2'"
    # bool is an int subclass in Python, but never a count.
    assert message(cores, True) == "worker_cores must be an integer, got True"
    assert cores.validate(4) == 4


def test_float_messages_and_normalisation():
    memory = Float("worker_memory", 1, min=0.5, max=8)
    assert message(memory, "x") == "worker_memory must be a number, got 'x'"
    assert message(memory, 10) == "worker_memory must be at most 8, got 10"
    assert message(memory, 0.25) == "worker_memory must be at least 0.5, got 0.25"
    assert message(memory, False) == "worker_memory must be a number, got False"
    value = memory.validate(2)
    assert value == 2.0 and isinstance(value, float)
    assert memory.default == 1.0 and isinstance(memory.default, float)


def test_select_messages_and_transform():
    profile = Select(
        "profile",
        options=[("small", {"cores": 1}), ("medium", {"cores": 2}), ("large", {"cores": 4})],
    )
    assert profile.default == "small"
    assert message(profile, "huge") == (
        "'huge' is not a valid choice for profile; choose one of: small, medium, large"
    )
    assert message(profile, 3).startswith("3 is not a valid choice for profile")
    assert profile.transform("large") == {"cores": 4}
    # The handler gets a copy: mutating it cannot change the option set.
    profile.transform("large")["cores"] = 99
    assert profile.transform("large") == {"cores": 4}


def test_string_and_bool_messages():
    assert message(String("image"), 3) == "image must be a string, got 3"
    assert message(Bool("gpu"), "yes") == "gpu must be true or false, got 'yes'"
    assert message(Bool("gpu"), 1) == "gpu must be true or false, got 1"
    assert String("image").default == "" and Bool("gpu").default is False


# The billion-laughs shape (9 lines of 9 references: 9**9 strings from ~500 bytes).
ALIAS_BOMB = "a: &a [lol, lol, lol, lol, lol, lol, lol, lol, lol]\n" + "".join(
    f"{new}: &{new} [{', '.join([f'*{old}'] * 9)}]\n"
    for old, new in zip("abcdefgh", "bcdefghi", strict=True)
)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (ALIAS_BOMB, "environment: YAML anchors and aliases (& and *) are not allowed"),
        ("A: &x 1\nB: *x", "environment: YAML anchors and aliases (& and *) are not allowed"),
        ("A: !!binary aGk=", "environment: YAML tags (!...) are not allowed"),
        ("A: [1, 2]", "environment: values must be single values (text, numbers, true/false)"),
        ("A:\n  B: 1", "environment: values must be single values (text, numbers, true/false)"),
        ({"A": [1]}, "environment: the value of A must be a single value"),
        ({"A": {"B": 1}}, "environment: the value of A must be a single value"),
        ("A: 2026-01-01", "environment: the value of A must be a single value"),
        ("x: 1\n" * 300, "environment may have at most 256 entries"),
        ({f"K{i}": 1 for i in range(257)}, "environment may have at most 256 entries"),
        ({"K" * 257: 1}, "environment: the name 'KKKK"),
        ({"A": "v" * 16385}, "environment: the value of A is longer than 16384 characters"),
        ({f"K{i}": "v" * 16000 for i in range(5)}, "environment is too large: at most 64 KiB"),
        ("A: " + "v" * 70000, "environment is too large: at most 64 KiB"),
    ],
)
def test_mapping_refuses_hostile_values_quickly(value, expected):
    env = Mapping("environment")
    assert message(env, value).startswith(expected)
    # the same message from a field rebuilt from the service's rich spec (the client's
    # and the widgets' field) and from a client field given the caps
    rebuilt = Field.from_spec(env.rich_spec())
    assert (rebuilt.max_bytes, rebuilt.max_entries) == (64 * 1024, 256)
    assert message(rebuilt, value) == message(env, value)


def test_mapping_caps_are_set_per_field_and_travel_in_the_rich_spec_only():
    env = Mapping("environment", max_entries=2, max_bytes=100, max_key_length=4)
    assert env.spec()["spec"] == {"type": "mapping"}  # the official client takes no caps
    rich = env.rich_spec()["spec"]
    assert rich["max_entries"] == 2 and rich["max_bytes"] == 100
    client_side = Options._from_spec([env.rich_spec()])
    with pytest.raises(ValueError, match="environment may have at most 2 entries"):
        client_side.environment = {"A": 1, "B": 2, "C": 3}
    with pytest.raises(ValueError, match="the name 'LONGER'... is longer than 4 characters"):
        client_side.environment = "LONGER: 1"
    client_side.environment = "A: 1\nB: 2"
    assert client_side.environment == {"A": 1, "B": 2}


def test_mapping_accepts_dicts_and_yaml():
    env = Mapping("environment")
    assert env.default == {}
    assert env.validate({"A": "1"}) == {"A": "1"}
    assert env.validate("A: 1\nB: two\n") == {"A": 1, "B": "two"}
    assert env.validate('{"A": "x"}') == {"A": "x"}
    assert env.validate("   ") == {}
    assert message(env, [1]) == "environment must be a mapping of names to values, got a list"
    assert message(env, "- a\n- b") == (
        "environment must be a mapping of names to values, got a list"
    )
    assert message(env, "just text") == (
        "environment must be a mapping of names to values, got a string"
    )
    assert message(env, {1: "x"}) == "environment: every name must be a string, got 1"
    bad_yaml = message(env, "A: b: c")
    assert bad_yaml.startswith("environment is not valid YAML at line")
    assert "NAME: value" in bad_yaml


def test_bad_definitions_fail_early():
    with pytest.raises(ValueError, match="worker_cores must be at most 4, got 8"):
        Integer("worker_cores", 8, max=4)
    with pytest.raises(ValueError, match="min .* is larger than max"):
        Integer("n", 1, min=5, max=2)
    with pytest.raises(ValueError, match="at least one option"):
        Select("profile", options=[])
    with pytest.raises(TypeError, match="select keys must be strings"):
        Select("profile", options=[(1, "x")])
    with pytest.raises(ValueError, match="'medium' is not a valid choice"):
        Select("profile", "medium", options=["small"])
    with pytest.raises(ValueError, match="repeated: a"):
        OptionSet(String("a"), Integer("a"))


# -- the spec ---------------------------------------------------------------------------


ALL_FIELDS = [
    Integer("worker_cores", 1, min=1, max=4, label="Worker cores", help="Cores"),
    Float("worker_memory", 2, min=1, max=8, label="Worker memory (GiB)", help="GiB"),
    Float("unbounded", 0.5),
    String("image", "daskgateway/dask-gateway:latest", label="Image"),
    Bool("gpu", False),
    Select("profile", "medium", options=[("small", 1), ("medium", 2), "large"]),
    Mapping("environment", {"A": "1"}, label="Environment variables"),
]


def test_spec_is_exactly_the_v1_format():
    assert [f.spec() for f in ALL_FIELDS] == [
        {
            "field": "worker_cores",
            "label": "Worker cores",
            "default": 1,
            "spec": {"type": "int", "min": 1, "max": 4},
        },
        {
            "field": "worker_memory",
            "label": "Worker memory (GiB)",
            "default": 2.0,
            "spec": {"type": "float", "min": 1.0, "max": 8.0},
        },
        {
            "field": "unbounded",
            "label": "unbounded",
            "default": 0.5,
            "spec": {"type": "float", "min": None, "max": None},
        },
        {
            "field": "image",
            "label": "Image",
            "default": "daskgateway/dask-gateway:latest",
            "spec": {"type": "string"},
        },
        {"field": "gpu", "label": "gpu", "default": False, "spec": {"type": "bool"}},
        {
            "field": "profile",
            "label": "profile",
            "default": "medium",
            "spec": {"type": "select", "options": ["small", "medium", "large"]},
        },
        {
            "field": "environment",
            "label": "Environment variables",
            "default": {"A": "1"},
            "spec": {"type": "mapping"},
        },
    ]
    rich = ALL_FIELDS[0].rich_spec()
    assert rich == {**ALL_FIELDS[0].spec(), "help": "Cores", "official_type": "int"}
    # The wire is JSON.
    json.dumps(OptionSet(*ALL_FIELDS).rich_spec())


def test_spec_matches_the_official_server_for_the_same_fields():
    theirs = official_server.Options(
        official_server.Integer("worker_cores", 1, min=1, max=4, label="Worker cores"),
        official_server.Float("worker_memory", 2, min=1, max=8, label="Worker memory (GiB)"),
        official_server.String("image", "img", label="Image"),
        official_server.Bool("gpu", False, label="gpu"),
        official_server.Select("profile", [("small", 1), ("medium", 2)], label="profile"),
        official_server.Mapping("environment", {"A": "1"}, label="Environment variables"),
    ).get_specification()
    ours = OptionSet(
        Integer("worker_cores", 1, min=1, max=4, label="Worker cores"),
        Float("worker_memory", 2, min=1, max=8, label="Worker memory (GiB)"),
        String("image", "img", label="Image"),
        Bool("gpu", False),
        Select("profile", options=[("small", 1), ("medium", 2)]),
        Mapping("environment", {"A": "1"}, label="Environment variables"),
    ).spec()
    assert ours == theirs


# Values tried on both clients; each must be accepted (with the same result) or
# rejected by both.
PROBES = {
    "worker_cores": [1, 4, 0, 5, 2.5, "2", None],
    "worker_memory": [1, 2.5, 8, 0.5, 9, "x", None],
    "unbounded": [-3, 1e9, "1"],
    "image": ["other", 1, None],
    "gpu": [True, False, 0, "true"],
    "profile": ["small", "large", "huge", 1],
    "environment": [{}, {"B": "2"}, [1], None],
}


def _accepts(validate, value):
    try:
        return True, validate(value)
    except (TypeError, ValueError):
        return False, None


def test_official_client_reads_our_spec_and_validates_the_same():
    # the official client only gets the v1 spec (api/v1/options)
    spec = json.loads(json.dumps(OptionSet(*ALL_FIELDS).spec()))
    theirs = official_client.Options._from_spec(spec)
    ours = Options._from_spec(spec)
    assert dict(theirs) == dict(ours)
    for name, values in PROBES.items():
        for value in values:
            their_ok, their_value = _accepts(theirs._fields[name].validate, value)
            our_ok, our_value = _accepts(ours._fields[name].validate, value)
            assert their_ok == our_ok, (name, value)
            assert their_value == our_value, (name, value)


def test_official_client_crashes_on_extra_spec_keys_so_we_send_none():
    # Why spec() must stay exact: the official client passes spec keys as kwargs.
    entry = ALL_FIELDS[3].spec()
    entry["spec"]["help"] = "x"
    with pytest.raises(TypeError):
        official_client.Options._from_spec([entry])


def test_our_client_reads_the_official_servers_spec():
    spec = official_server.Options(
        official_server.Integer("worker_cores", 1, min=1, max=4, label="Worker Cores"),
        official_server.Float("worker_memory", 1, min=1, max=8, label="Worker Memory (GiB)"),
        official_server.Select("environment", ["basic", "pandas"], label="Environment"),
        official_server.Mapping("env", label="Env"),
        official_server.Bool("gpu", label="GPU"),
        official_server.String("image", "img", label="Image"),
    ).get_specification()
    options = Options._from_spec(json.loads(json.dumps(spec)))
    assert dict(options) == {
        "worker_cores": 1,
        "worker_memory": 1.0,
        "environment": "basic",
        "env": {},
        "gpu": False,
        "image": "img",
    }
    assert options._fields["worker_cores"].label == "Worker Cores"
    with pytest.raises(ValueError, match="worker_memory must be at most 8, got 9"):
        options.worker_memory = 9


def test_from_spec_tolerates_new_constraints_but_not_unknown_types():
    entry = {
        "field": "n",
        "label": "N",
        "default": 1,
        "spec": {"type": "int", "min": 0, "max": 3, "step": 1},
    }
    assert Options._from_spec([entry]).n == 1
    with pytest.raises(ValueError, match="does not understand"):
        Options._from_spec([{"field": "x", "label": "X", "default": 1, "spec": {"type": "date"}}])


# -- the client's Options -------------------------------------------------------------


def make_options() -> Options:
    return Options._from_spec(OptionSet(*ALL_FIELDS).rich_spec())


def test_options_mapping_and_attributes():
    options = make_options()
    assert options.worker_cores == options["worker_cores"] == 1
    options.worker_cores = 3
    options["worker_memory"] = 4
    assert options["worker_cores"] == 3 and options.worker_memory == 4.0
    options.update({"image": "x", "gpu": True})
    assert dict(options)["image"] == "x" and len(options) == len(ALL_FIELDS)
    assert "worker_cores" in dir(options)
    assert options._fields["worker_cores"].help == "Cores"

    with pytest.raises(
        AttributeError,
        match="No option 'nope' available; available options: worker_cores, worker_memory",
    ):
        options.nope = 1
    with pytest.raises(KeyError, match="No option 'nope' available"):
        options["nope"]
    with pytest.raises(TypeError, match="cannot be deleted"):
        del options["image"]
    with pytest.raises(TypeError, match="cannot be deleted"):
        del options.image
    with pytest.raises(ValueError, match="worker_cores must be at most 4, got 10"):
        options.worker_cores = 10
    assert options.worker_cores == 3  # a rejected value changes nothing


def test_options_observers_and_reprs():
    options = make_options()
    seen = []
    options._observe(lambda name, value: seen.append((name, value)))
    options.environment = "A: 1"
    assert seen == [("environment", {"A": 1})]
    assert repr(options).startswith("Options<worker_cores=1, worker_memory=2.0, ")

    options.image = "<script>alert(1)</script>"
    page = options._repr_html_()
    assert "<script>" not in page and "&lt;script&gt;" in page
    assert "Worker memory (GiB)" in page

    from IPython.lib.pretty import pretty

    assert pretty(options).startswith("Options<worker_cores=1,")


def test_options_display_prefers_the_widget(monkeypatch):
    import IPython.display

    import hubgate.widgets

    shown = []
    monkeypatch.setattr(IPython.display, "display", lambda obj, **kw: shown.append((obj, kw)))
    options = make_options()

    monkeypatch.setattr(
        hubgate.widgets, "options_widget", lambda opts: ("widget", opts), raising=False
    )
    options._ipython_display_()
    assert shown[-1][0] == ("widget", options)

    monkeypatch.delattr(hubgate.widgets, "options_widget", raising=False)
    options._ipython_display_()
    data = shown[-1][0]
    assert data["text/html"] == options._repr_html_() and shown[-1][1] == {"raw": True}


def test_options_copy_does_not_recurse():
    import copy

    options = make_options()
    clone = copy.copy(options)
    assert dict(clone) == dict(options)


# -- the service's OptionSet ------------------------------------------------------------


async def test_parse_fills_defaults_and_transforms():
    option_set = OptionSet(
        Integer("worker_cores", 1, min=1, max=4, target="cores"),
        Select("profile", options=[("small", {"mem": 1}), ("large", {"mem": 8})]),
        Mapping("environment"),
    )
    options, config = await option_set.parse({"worker_cores": 2, "environment": "A: b"})
    assert options == {"worker_cores": 2, "profile": "small", "environment": {"A": "b"}}
    assert config == {"cores": 2, "profile": {"mem": 1}, "environment": {"A": "b"}}
    assert (await option_set.parse(None))[0]["worker_cores"] == 1


async def test_parse_errors():
    option_set = OptionSet(worker_cores_field(), worker_memory_field())
    with pytest.raises(OptionsError) as info:
        await option_set.parse({"foo": 1})
    assert str(info.value) == "Unknown option 'foo'; available options: worker_cores, worker_memory"
    with pytest.raises(OptionsError, match="Unknown options 'a', 'b'; available options"):
        await option_set.parse({"a": 1, "b": 2})
    with pytest.raises(OptionsError, match="^worker_cores must be at most 4, got 10$"):
        await option_set.parse({"worker_cores": 10})
    with pytest.raises(
        OptionsError, match="must be a mapping of option names to values, got a list"
    ):
        await option_set.parse([1])
    assert issubclass(OptionsError, ValueError)


class User:
    name = "alice"
    groups = ["gpu-users"]


async def test_handlers_sync_async_one_or_two_args():
    fields = (worker_cores_field(), worker_memory_field())

    def one(options):
        return {"threads": options.worker_cores}

    def two(options, user):
        return {"owner": user.name, "memory": options["worker_memory"]}

    async def async_two(options, user):
        return {"owner": user.name}

    assert (await OptionSet(*fields, handler=one).parse({"worker_cores": 3}, User()))[1] == {
        "threads": 3
    }
    assert (await OptionSet(*fields, handler=two).parse({}, User()))[1] == {
        "owner": "alice",
        "memory": 2.0,
    }
    assert (await OptionSet(*fields, handler=async_two).parse({}, User()))[1] == {"owner": "alice"}


async def test_handler_value_errors_become_options_errors_and_bugs_propagate():
    class Nobody:
        name = "bob"
        groups: list[str] = []

    def strict(options, user):
        if options.worker_cores > 2 and "gpu-users" not in user.groups:
            raise ValueError("Only 2 cores without the gpu-users group")
        return {"cores": options.worker_cores, "quota": user.quota}  # a bug: no .quota

    option_set = OptionSet(worker_cores_field(), handler=strict)
    # a refusal, in words for the user
    with pytest.raises(OptionsError, match="^Only 2 cores without the gpu-users group$"):
        await option_set.parse({"worker_cores": 3}, Nobody())
    # a bug in the handler is not turned into a message for the user (the service logs
    # it and answers with an error id)
    with pytest.raises(AttributeError, match="quota"):
        await option_set.parse({"worker_cores": 3}, User())

    with pytest.raises(TypeError, match="must return a dict"):
        await OptionSet(worker_cores_field(), handler=lambda o: None).parse({})


async def test_resolve_option_set_per_user():
    small = OptionSet(worker_cores_field(max=2))
    big = OptionSet(worker_cores_field(max=16))

    def by_group(user):
        return big if "gpu-users" in user.groups else small

    async def async_by_group(user):
        return by_group(user)

    assert await resolve_option_set(small, User()) is small
    assert await resolve_option_set(by_group, User()) is big
    assert await resolve_option_set(async_by_group, User()) is big
    assert (await resolve_option_set(None, User())).spec() == []
    with pytest.raises(TypeError, match="must return an OptionSet"):
        await resolve_option_set(lambda user: {"x": 1}, User())


# -- ready-made fields ---------------------------------------------------------------------


async def test_ready_made_fields_and_standard_handler():
    option_set = OptionSet(
        worker_cores_field(default=2, max=8),
        worker_memory_field(default=4),
        resources_per_worker_field(),
        profile_field([("cpu", {"queue": "short"}), ("gpu", {"queue": "gpu"})]),
        image_field("pangeo/base-notebook:2024.01.01"),
        environment_variables_field(),
        idle_timeout_field(),
        worker_setup_field(),
        handler=standard_handler,
    )
    spec = {entry["field"]: entry for entry in option_set.rich_spec()}
    assert spec["resources_per_worker"]["spec"]["options"] == [
        "1 CPU, 4 GiB",
        "2 CPU, 8 GiB",
        "4 CPU, 16 GiB",
        "8 CPU, 32 GiB",
        "16 CPU, 64 GiB",
    ]
    assert spec["idle_timeout_minutes"]["default"] == 30
    assert spec["environment"]["label"] == "Environment variables (YAML)"
    assert all(entry["help"] for entry in spec.values())
    # Every ready-made spec is readable by the official client.
    official_client.Options._from_spec(option_set.spec())

    options, config = await option_set.parse(
        {
            "resources_per_worker": "4 CPU, 16 GiB",
            "profile": "gpu",
            "environment": "OMP_NUM_THREADS: '1'",
            "idle_timeout_minutes": 10,
            "worker_setup": "source activate myenv",
        }
    )
    assert config == {
        "worker_cores": 4,
        "worker_memory": 16 * GiB,
        "queue": "gpu",
        "image": "pangeo/base-notebook:2024.01.01",
        "environment": {"OMP_NUM_THREADS": "1"},
        "idle_timeout": 600,
        "worker_setup": "source activate myenv",
    }
    assert options["resources_per_worker"] == "4 CPU, 16 GiB"
